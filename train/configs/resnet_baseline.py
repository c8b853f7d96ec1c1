"""Baseline ResNet-18 without spectral normalisation (as the DeDUCE paper's baselines), CPU-sized.

python -m train.main --config train/configs/resnet_baseline.py --workdir workdir/resnet_base
"""

from jaxcf.models import ResNetConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=ResNetConfig(base_width=8, coeff=None), epochs=5, lr_boundaries=(3.75,)
    )
