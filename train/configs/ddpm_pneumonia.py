"""An unconditional DDPM on PneumoniaMNIST (28x28 chest X-rays padded to 32x32), the MNIST
model's architecture and budget: 0.7M-parameter UNet, cosine schedule of 1,000 steps, batch 64,
5,000 steps (about 68 epochs of the 4,708 training images; about an hour on 2 cores).

    jaxcf train train/configs/ddpm_pneumonia.py \
        --workdir workdir/ddpm_pneumonia
"""

import dataclasses
from pathlib import Path

from jaxcf.core import load_config
from jaxcf.training import DiffusionTrainConfig

MNIST = Path(__file__).resolve().parent / "ddpm_mnist.py"


def get_config() -> DiffusionTrainConfig:
    return dataclasses.replace(load_config(MNIST), dataset="pneumoniamnist")
