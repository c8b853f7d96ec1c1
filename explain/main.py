"""Runs a batch explanation job described by a config file.

    python -m explain.main --config explain/configs/demo.py --workdir workdir/demo

The config file defines ``get_config() -> ExplainConfig``. Re-running with the same workdir
reuses the trained classifier and every finished chunk of counterfactuals.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from explain.deduce_protocol import run_protocol


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("explain_config", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no config file at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config file with get_config()")
    parser.add_argument("--workdir", required=True, type=Path, help="outputs and model go here")
    args = parser.parse_args(argv)
    run_protocol(load_config(args.config), args.workdir)


if __name__ == "__main__":
    main()
