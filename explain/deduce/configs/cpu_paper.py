"""The paper's full protocol (5 sets x 100 test images x 9 targets = 4,500 pairs) on CPU-sized
networks trained with the paper's schedule: DeDUCE on a width-8 ResNet-18 with soft spectral
norm c = 4, JSMA and Wachter on a width-8 plain ResNet-18 (the paper's baseline architecture),
both 50 epochs of SGD (lr 0.1, cut x0.1 at epochs 25 and 40).

    jaxcf explain explain/deduce/configs/cpu_paper.py --workdir workdir/cpu_paper

On 2 CPU cores: about 42 + 8 minutes of training (once), then about 15 minutes of search.
Results are recorded in docs/results/cpu_paper.md.
"""

from explain.deduce import ProtocolConfig
from jaxcf.experiment import ModelSpec
from jaxcf.models import ResNetConfig, StandardResNetConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig


def get_config() -> ProtocolConfig:
    return ProtocolConfig(
        classifier=ModelSpec(train=TrainConfig(model=ResNetConfig(base_width=8, coeff=4.0))),
        baseline=ModelSpec(train=TrainConfig(model=StandardResNetConfig(base_width=8))),
        n_sets=5,
        set_size=100,
        runner=RunnerConfig(chunk_size=900, slots=128, segment=4),
    )
