"""The AIP paper's CelebA protocol: a gender classifier explained by AIP, xGEMs, REVISE, FGSM and
AIP_R on held-out faces, the attribute analysis (with an age classifier) and counterfactual data
augmentation.

    python -m explain.aip --config explain/configs/aip_celeba.py --workdir workdir/aip_celeba

The config file defines ``get_config() -> jaxcf.protocols.aip.AIPJob``. Whatever model is
missing from the workdir is trained first (the two classifiers, the VAE and the AttGAN-like
encoder-decoder: some 2 1/4 hours on 2 CPU cores); an interrupted run resumes. Writes
``<workdir>/report/aip.{md,json}`` and figures and prints the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.protocols.aip import run_aip_protocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path)
    args, config = parse_args(parser, argv)
    run_aip_protocol(config, args.workdir)
    print((args.workdir / "report" / "aip.md").read_text())


if __name__ == "__main__":
    main()
