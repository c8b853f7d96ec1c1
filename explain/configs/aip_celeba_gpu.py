"""The AIP protocol of aip_celeba.py with the GPU-sized generative models: the VAE of
train/configs/vae_celeba_gpu.py (twice the CPU widths) and the AttGAN-like encoder-decoder of
attgan_celeba_gpu.py (the paper's widths, 64 to 1024 channels, 50,000 steps). The two CNNs, the
methods, queries, attribute analysis and augmentation experiment are the CPU config's, so the two
reports differ only in the generative models.

    python -m explain.aip --config explain/configs/aip_celeba_gpu.py \\
        --workdir workdir/aip_celeba_gpu

Each model is trained into the workdir when missing; to train them side by side first:
``python -m train.vae --config train/configs/vae_celeba_gpu.py --workdir <workdir>/vae`` and
``python -m train.attgan --config train/configs/attgan_celeba_gpu.py --workdir <workdir>/attgan``.
"""

import dataclasses
from pathlib import Path

from jaxcf.config_file import load_config
from jaxcf.protocols.aip import AIPJob

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"


def get_config() -> AIPJob:
    return dataclasses.replace(
        load_config(Path(__file__).with_name("aip_celeba.py")),
        vae=load_config(CONFIGS / "vae_celeba_gpu.py"),
        attgan=load_config(CONFIGS / "attgan_celeba_gpu.py"),
    )
