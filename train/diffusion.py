"""Trains a denoising diffusion model (DDPM) from a config file.

    python -m train.diffusion --config train/configs/ddpm_mnist.py --workdir workdir/ddpm_mnist

The config file defines ``get_config() -> jaxcf.training.diffusion.DiffusionTrainConfig``. The
EMA model goes to ``<workdir>/checkpoint``, sample grids to ``<workdir>/samples/`` (one per
evaluation) and ``<workdir>/samples.png`` (the final model); an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.training.diffusion import train_diffusion


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path)
    args, config = parse_args(parser, argv)
    _, meta = train_diffusion(config, args.workdir)
    last = meta["history"][-1]
    print(
        f"diffusion: held-out noise loss {last['val_loss']:.4f} after {last['step']} steps "
        f"({meta['train_seconds'] / 60:.1f} min); samples in {args.workdir / 'samples.png'}"
    )


if __name__ == "__main__":
    main()
