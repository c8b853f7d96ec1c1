"""The conditional generator of train/configs/generator_ecg.py on all 500 ECG5000 test beats, 3
counterfactuals each towards the other class (normal <-> abnormal), against Wachter's per-query
Adam search on the first 200 (one counterfactual each; learning rate 0.05 in the standardised
units of the series, whose spread is about 3x that of MNIST's [0, 1] pixels) and CFProto on the
first 32 (one round of its search, see below); then soft targets on all 500 beats.

    jaxcf train train/configs/generator_ecg.py \
        --workdir workdir/generator_ecg                                     # once
    jaxcf explain explain/amortised/configs/generator_ecg.py \
        --workdir workdir/generator_ecg

MMD^2 is measured on the raw (standardised) 140-step series.
"""

from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.methods import CFProtoConfig, WachterConfig
from jaxcf.runner import RunnerConfig

TRAIN_CONFIG = Path(__file__).resolve().parents[3] / "train" / "configs" / "generator_ecg.py"


def get_config() -> ExplainConfig:
    return ExplainConfig(
        job=str(TRAIN_CONFIG),
        queries=None,  # all 500
        num_cfs=3,
        peers=("wachter", "cfproto"),
        wachter=WachterConfig(learning_rate=0.05, l1_weight=0.005, max_iter=200),
        wachter_queries=200,
        # CFProto with alibi's constructor weights and theta 10, prototypes in input space from
        # the 4,500 training beats labelled by the classifier, cut to fit 2 CPU cores: one round
        # of c (c_steps 1: c stays at 10) on the first 32 beats. A FISTA step through the
        # BiLSTM costs 0.38 s for 32 beats here, so the default 10 rounds (up to 10,000 steps)
        # would take up to an hour per 32 beats.
        cfproto=CFProtoConfig(theta=10.0, c_steps=1),
        cfproto_queries=32,
        cfproto_runner=RunnerConfig(chunk_size=32, slots=32),
        soft_queries=500,
        runner=RunnerConfig(chunk_size=300),
        wachter_runner=RunnerConfig(chunk_size=32, slots=32),
    )
