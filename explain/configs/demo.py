"""The demo: one set of 100 MNIST test images x 9 targets, CPU-sized spectrally normalised ResNet.

    python -m explain.main --config explain/configs/demo.py --workdir workdir/demo

Trains the classifier into ``<workdir>/model`` on the first run (about 3.5 minutes on 2 cores;
reused afterwards), then runs DeDUCE, JSMA and Wachter on the 900 pairs.

The CPU-sized network uses spectral-norm coefficient c = 2 rather than the paper's 4: at width 8,
c = 4 left 1.1% of DeDUCE's pairs unsolved and c = 2 0.3% (same pairs, same training otherwise);
``explain/configs/paper.py`` keeps c = 4 for the full-width network.
"""

from explain.deduce_protocol import ExplainConfig
from jaxcf.models import ResNetConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig


def get_config() -> ExplainConfig:
    return ExplainConfig(
        train=TrainConfig(
            model=ResNetConfig(base_width=8, coeff=2.0),
            epochs=5,
            lr_boundaries=(3.75,),
        ),
        n_sets=1,
        set_size=100,
        runner=RunnerConfig(chunk_size=900, slots=128, segment=4),
    )
