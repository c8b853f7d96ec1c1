"""DiffExplainer: a diffusion autoencoder and an agent distilled from a teacher classifier
explain the teacher's decisions with counterfactuals and difference heatmaps.

    python -m explain.diffexplainer --config explain/configs/diffexplainer_pneumonia.py \
        --workdir workdir/diffae_pneumonia

The config file defines ``get_config() -> jaxcf.protocols.diffexplainer.DiffExplainerJob``.
Whatever is missing from the workdir is trained first (teacher, diffusion autoencoder — about
an hour on 2 CPU cores — and agent); an interrupted run resumes. Writes
``<workdir>/report/diffexplainer.{md,json}`` and figures and prints the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.protocols.diffexplainer import run_diffexplainer_protocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path)
    args, config = parse_args(parser, argv)
    run_diffexplainer_protocol(config, args.workdir)
    print((args.workdir / "report" / "diffexplainer.md").read_text())


if __name__ == "__main__":
    main()
