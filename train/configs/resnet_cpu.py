"""CPU-sized DeDUCE ResNet-18 (width 8, soft spectral norm c = 4) on MNIST: about 3.5 min on
2 cores, ~99.4% test accuracy.

    python -m train.main --config train/configs/resnet_cpu.py --workdir workdir/resnet_cpu
"""

from jaxcf.models import ResNetConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(model=ResNetConfig(base_width=8, coeff=4.0), epochs=5, lr_boundaries=(3.75,))
