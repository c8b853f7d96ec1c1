"""The DeDUCE paper's baseline classifier, CPU-sized: a plain ResNet-18 (7x7 stride-2 stem,
max-pool, ReLU, projection shortcuts, no spectral norm) at width 8. JSMA runs on it in the demo.

    jaxcf train train/configs/resnet_standard_cpu.py --workdir workdir/std_cpu
"""

from jaxcf.models import StandardResNetConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(model=StandardResNetConfig(base_width=8), epochs=5, lr_boundaries=(3.75,))
