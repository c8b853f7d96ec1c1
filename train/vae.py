"""Trains a convolutional VAE (the latent-space counterfactual methods' generative model) from a
config file.

    python -m train.vae --config train/configs/vae_mnist.py --workdir workdir/vae_mnist

The config file defines ``get_config() -> jaxcf.training.vae.VAETrainConfig``. The VAE goes to
``<workdir>/checkpoint`` (load it with :func:`jaxcf.training.vae.load_vae`), reconstruction and
sample grids to ``<workdir>/samples/`` (one pair per evaluation) and ``<workdir>/recon.png`` and
``<workdir>/samples.png`` (the final model); an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.training.vae import train_vae


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path)
    args, config = parse_args(parser, argv)
    _, meta = train_vae(config, args.workdir)
    last = meta["history"][-1]
    print(
        f"vae: held-out reconstruction MSE {last['val_mse']:.4f} (mean image "
        f"{last['mean_image_mse']:.4f}), L1 {last['val_l1']:.4f} (mean image "
        f"{last['mean_image_l1']:.4f}), ELBO {last['val_elbo']:.1f} nats after {last['step']} "
        f"steps ({meta['train_seconds'] / 60:.1f} min); grids in {args.workdir}"
    )


if __name__ == "__main__":
    main()
