"""The DeDUCE paper's baseline classifier at full width: the plain ResNet-18 its JSMA and
REVISE baselines explained (7x7 stride-2 stem, max-pool, ReLU, projection shortcuts, no
spectral norm), 50 epochs of SGD as in the paper. GPU-sized; see resnet_standard_cpu.py.

jaxcf train train/configs/resnet_baseline.py --workdir workdir/resnet_base
"""

from jaxcf.models import StandardResNetConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(model=StandardResNetConfig(base_width=64))
