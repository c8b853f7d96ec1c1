"""Runs the DeDUCE protocol described by a config file.

    python -m explain.main --config explain/configs/demo.py --workdir workdir/demo

The config file defines ``get_config() -> jaxcf.protocols.deduce.ProtocolConfig``. Re-running
with the same workdir reuses the trained classifiers and every finished chunk of counterfactuals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import load_config
from jaxcf.protocols.deduce import run_protocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config file with get_config()")
    parser.add_argument("--workdir", required=True, type=Path, help="outputs and model go here")
    args = parser.parse_args(argv)
    run_protocol(load_config(args.config), args.workdir)


if __name__ == "__main__":
    main()
