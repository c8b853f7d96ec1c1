"""The DeDUCE paper's classifier: ResNet-18 (full width), soft spectral norm c = 4, 50 epochs of
SGD 0.1 with momentum 0.9, learning rate x0.1 at epochs 25 and 40, batch 128, first 50k images.
GPU-sized.

    jaxcf train train/configs/resnet_paper.py --workdir workdir/resnet_paper
"""

from jaxcf.models import ResNetConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(model=ResNetConfig(base_width=64, coeff=4.0))
