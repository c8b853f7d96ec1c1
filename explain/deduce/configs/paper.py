"""The DeDUCE paper's protocol: 5 sets of 100 test images x 9 targets = 4,500 pairs. DeDUCE runs
on the paper's ResNet-18 (full width, soft spectral norm c = 4, 50 epochs of SGD); JSMA and
Wachter on the plain ResNet-18 the paper's baselines used (its published code trains that
"c0" model from a torchvision-style ResNet: 7x7 stride-2 stem, max-pool, projection shortcuts).
GPU-sized.

    jaxcf explain explain/deduce/configs/paper.py --workdir workdir/paper
"""

from explain.deduce import ProtocolConfig
from jaxcf.experiment import ModelSpec
from jaxcf.models import ResNetConfig, StandardResNetConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig


def get_config() -> ProtocolConfig:
    return ProtocolConfig(
        classifier=ModelSpec(train=TrainConfig(model=ResNetConfig(base_width=64, coeff=4.0))),
        baseline=ModelSpec(train=TrainConfig(model=StandardResNetConfig(base_width=64))),
        n_sets=5,
        set_size=100,
        runner=RunnerConfig(chunk_size=4500, slots=1024, segment=4),
    )
