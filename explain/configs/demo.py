"""The demo: one set of 100 MNIST test images x 9 targets on CPU-sized networks.

    python -m explain.main --config explain/configs/demo.py --workdir workdir/demo

As in the paper, DeDUCE explains a ResNet-18 with soft spectral norm and the baselines (JSMA,
Wachter) a plain ResNet-18 (:class:`~jaxcf.models.StandardResNetConfig`). On the first run both
are trained at width 8 for 5 epochs (about 3.5 + 1 minutes on 2 cores; reused afterwards).

The short schedule keeps the demo near 10 minutes; ``explain/configs/cpu_paper.py`` trains the
same widths with the paper's 50-epoch schedule and runs all 4,500 pairs. Spectral-norm
coefficient c = 2 rather than the paper's 4: after 5 epochs at width 8, c = 4 left 1.1% of
DeDUCE's pairs unsolved and c = 2 0.4% (the 50-epoch network reaches 0.6% at c = 4).
"""

from jaxcf.protocols.deduce import ProtocolConfig
from jaxcf.models import ResNetConfig, StandardResNetConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig


def get_config() -> ProtocolConfig:
    return ProtocolConfig(
        train=TrainConfig(
            model=ResNetConfig(base_width=8, coeff=2.0),
            epochs=5,
            lr_boundaries=(3.75,),
        ),
        baseline_train=TrainConfig(
            model=StandardResNetConfig(base_width=8), epochs=5, lr_boundaries=(3.75,)
        ),
        n_sets=1,
        set_size=100,
        runner=RunnerConfig(chunk_size=900, slots=128, segment=4),
    )
