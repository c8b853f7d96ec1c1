"""Explains a data set's test split with a trained counterfactual generator and its peers.

    python -m explain.generator --config explain/configs/generator_adult.py \
        --workdir workdir/generator_adult

The config file defines ``get_config() -> jaxcf.protocols.amortised.ExplainConfig``; its job
names the train config the generator was trained with (``python -m train.generator``, same
workdir). Writes ``<workdir>/report/{report.md, report.json}`` and figures and prints the
table. Re-running with the same workdir reuses every finished chunk of counterfactuals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.protocols.amortised import run_protocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path, help="the trained models' workdir")
    args, config = parse_args(parser, argv)
    run_protocol(config, args.workdir)
    print(f"wrote {args.workdir / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
