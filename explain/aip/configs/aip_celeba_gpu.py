"""The AIP protocol of aip_celeba.py with the GPU-sized generative models: the VAE of
train/configs/vae_celeba_gpu.py (twice the CPU widths) and the AttGAN-like encoder-decoder of
attgan_celeba_gpu.py (the paper's widths, 64 to 1024 channels, 50,000 steps). The two CNNs, the
methods, queries, attribute analysis and augmentation experiment are the CPU config's, so the two
reports differ only in the generative models.

    jaxcf explain explain/aip/configs/aip_celeba_gpu.py \\
        --workdir workdir/aip_celeba_gpu

Each model is trained into the workdir when missing; to train them side by side first:
``jaxcf train train/configs/vae_celeba_gpu.py --workdir <workdir>/models/vae`` and
``jaxcf train train/configs/attgan_celeba_gpu.py --workdir <workdir>/models/attgan``.
"""

import dataclasses
from pathlib import Path

from explain.aip import AIPJob
from jaxcf.core import load_config
from jaxcf.experiment import ModelSpec

CONFIGS = Path(__file__).resolve().parents[3] / "train" / "configs"


def get_config() -> AIPJob:
    return dataclasses.replace(
        load_config(Path(__file__).with_name("aip_celeba.py")),
        vae=ModelSpec(train=load_config(CONFIGS / "vae_celeba_gpu.py")),
        attgan=ModelSpec(train=load_config(CONFIGS / "attgan_celeba_gpu.py")),
    )
