"""Trains a classifier (and its feature density) described by a config file.

    python -m train.main --config train/configs/resnet_cpu.py --workdir workdir/resnet_cpu

The config file defines ``get_config() -> TrainConfig``; the checkpoint (Orbax + metadata.json,
density included) is written to ``<workdir>/checkpoint``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.training import train_and_evaluate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    args, config = parse_args(parser, argv)
    _, _, metadata = train_and_evaluate(config, args.workdir, overwrite=args.overwrite)
    print(f"test accuracy {metadata['test_accuracy']:.4f}; saved {args.workdir / 'checkpoint'}")


if __name__ == "__main__":
    main()
