"""CPU-sized DeDUCE ResNet-18 (width 8, soft spectral norm c = 2) on MNIST: about 4.5 min on
2 cores, ~99.5% test accuracy. (The demo's classifier; see explain/deduce/configs/demo.py for why c
= 2.)

    jaxcf train train/configs/resnet_cpu.py --workdir workdir/resnet_cpu
"""

from jaxcf.models import ResNetConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(model=ResNetConfig(base_width=8, coeff=2.0), epochs=5, lr_boundaries=(3.75,))
