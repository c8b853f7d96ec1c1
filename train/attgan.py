"""Trains the attribute-informed encoder-decoder (AttGAN-like; the AIP method's generative model)
from a config file.

    python -m train.attgan --config train/configs/attgan_celeba.py --workdir workdir/attgan_celeba

The config file defines ``get_config() -> jaxcf.training.attgan.AttGANTrainConfig``. The model
goes to ``<workdir>/checkpoint`` (load it with :func:`jaxcf.training.attgan.load_attgan`), edit
grids (input, reconstruction, one row per flipped attribute) to ``<workdir>/samples/`` (one per
evaluation) and ``<workdir>/edits.png`` (the final model); an interrupted run resumes where it
stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.training.attgan import train_attgan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path)
    args, config = parse_args(parser, argv)
    _, meta = train_attgan(config, args.workdir)
    last = meta["history"][-1]
    flips = ", ".join(
        f"{name} {last[f'flip_acc_{name}']:.2f} (unflipped {last[f'flip_base_{name}']:.2f})"
        for name in config.flip_attributes
    )
    print(
        f"attgan: held-out reconstruction L1 {last['val_l1']:.4f} (mean image "
        f"{last['mean_image_l1']:.4f}), MSE {last['val_mse']:.4f} (mean image "
        f"{last['mean_image_mse']:.4f}); attribute classifier accuracy {last['val_attr_acc']:.3f} "
        f"(majority {last['majority_attr_acc']:.3f}); flipped attribute decided as flipped: "
        f"{flips} after {last['step']} steps ({meta['train_seconds'] / 60:.1f} min); grids in "
        f"{args.workdir}"
    )


if __name__ == "__main__":
    main()
