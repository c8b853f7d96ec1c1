"""The conditional generator of train/configs/generator_mnist.py on 1,000 MNIST test images, 3
counterfactuals each towards a seeded random class other than the prediction, against
Wachter's per-query Adam search on the first 200 (one counterfactual each).

    jaxcf train train/configs/generator_mnist.py \
        --workdir workdir/generator_mnist                                   # once
    jaxcf explain explain/amortised/configs/generator_mnist.py \
        --workdir workdir/generator_mnist

MMD^2 is measured on the paper's fixed random encoder (32 features per image).
"""

from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.methods import WachterConfig
from jaxcf.runner import RunnerConfig

TRAIN_CONFIG = Path(__file__).resolve().parents[3] / "train" / "configs" / "generator_mnist.py"


def get_config() -> ExplainConfig:
    return ExplainConfig(
        job=str(TRAIN_CONFIG),
        queries=1000,
        num_cfs=3,
        peers=("wachter",),
        wachter=WachterConfig(learning_rate=0.01, l1_weight=0.005, max_iter=500),
        wachter_queries=200,
        runner=RunnerConfig(chunk_size=500),
        wachter_runner=RunnerConfig(chunk_size=64, slots=32),
    )
