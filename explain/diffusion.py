"""Classifier-guided diffusion counterfactuals of a data set's test images.

    python -m train.diffusion --config train/configs/ddpm_mnist.py --workdir workdir/ddpm_mnist
    python -m explain.diffusion --config explain/configs/guided_mnist.py \
        --workdir workdir/ddpm_mnist

The config file defines ``get_config() -> jaxcf.protocols.guided.GuidedExplainConfig``; the
workdir holds the diffusion model (``checkpoint/``); the classifier is trained into
``<workdir>/classifier`` when missing. Writes ``<workdir>/report/guided.{md,json}`` and
``guided_grid.png`` and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.protocols.guided import run_guided_protocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path, help="the diffusion model's workdir")
    args, config = parse_args(parser, argv)
    run_guided_protocol(config, args.workdir)
    print((args.workdir / "report" / "guided.md").read_text())


if __name__ == "__main__":
    main()
