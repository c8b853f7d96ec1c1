"""The conditional generator of train/configs/generator_ecg.py on all 500 ECG5000 test beats, 3
counterfactuals each towards the other class (normal <-> abnormal), against Wachter's per-query
Adam search on the first 200 (one counterfactual each; learning rate 0.05 in the standardised
units of the series, whose spread is about 3x that of MNIST's [0, 1] pixels); then soft targets
on all 500 beats.

    jaxcf train train/configs/generator_ecg.py \
        --workdir workdir/generator_ecg                                     # once
    jaxcf explain explain/amortised/configs/generator_ecg.py \
        --workdir workdir/generator_ecg

MMD^2 is measured on the raw (standardised) 140-step series.
"""

from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.methods import WachterConfig
from jaxcf.runner import RunnerConfig

TRAIN_CONFIG = Path(__file__).resolve().parents[3] / "train" / "configs" / "generator_ecg.py"


def get_config() -> ExplainConfig:
    return ExplainConfig(
        job=str(TRAIN_CONFIG),
        queries=None,  # all 500
        num_cfs=3,
        peers=("wachter",),
        wachter=WachterConfig(learning_rate=0.05, l1_weight=0.005, max_iter=200),
        wachter_queries=200,
        soft_queries=500,
        runner=RunnerConfig(chunk_size=300),
        wachter_runner=RunnerConfig(chunk_size=32, slots=32),
    )
