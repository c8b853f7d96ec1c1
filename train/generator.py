"""Trains a counterfactual generator (and, first, the classifier it explains) from a config file.

    python -m train.generator --config train/configs/generator_mnist.py \
        --workdir workdir/generator_mnist

The config file defines ``get_config() -> jaxcf.protocols.amortised.GeneratorJob``. The
classifier goes to ``<workdir>/classifier/checkpoint`` and the generator to
``<workdir>/generator/checkpoint``; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.protocols.amortised import train_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path)
    args, config = parse_args(parser, argv)
    _, _, meta = train_models(config, args.workdir)
    last = meta["history"][-1]
    print(
        f"generator: validation validity {last['val_validity']:.4f}, L1 {last['val_l1']:.4f}; "
        f"saved {args.workdir / 'generator' / 'checkpoint'}"
    )


if __name__ == "__main__":
    main()
