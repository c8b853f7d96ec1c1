"""The paper's full protocol (5 sets x 100 test images x 9 targets = 4,500 pairs) on width-32
networks: the narrowest at which DeDUCE's sparsity advantage over JSMA appears on CPU.

DeDUCE explains a width-32 ResNet-18 with soft spectral norm c = 4, JSMA and Wachter a
width-32 plain ResNet-18; both are trained for 5 epochs (learning rate cut x0.1 after 3.75).

    jaxcf explain explain/deduce/configs/cpu_w32.py --workdir workdir/cpu_w32

On 2 CPU cores: about 33 + 9 minutes of training (once), then 28 + 13 + 3 minutes of search.
Results are recorded in docs/results/cpu_w32.md.
"""

from explain.deduce import ProtocolConfig
from jaxcf.experiment import ModelSpec
from jaxcf.models import ResNetConfig, StandardResNetConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig


def get_config() -> ProtocolConfig:
    return ProtocolConfig(
        classifier=ModelSpec(
            train=TrainConfig(
                model=ResNetConfig(base_width=32, coeff=4.0), epochs=5, lr_boundaries=(3.75,)
            )
        ),
        baseline=ModelSpec(
            train=TrainConfig(
                model=StandardResNetConfig(base_width=32), epochs=5, lr_boundaries=(3.75,)
            )
        ),
        n_sets=5,
        set_size=100,
        runner=RunnerConfig(chunk_size=900, slots=128, segment=4),
    )
