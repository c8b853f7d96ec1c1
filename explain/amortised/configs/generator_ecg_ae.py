"""The autoencoder variant of train/configs/generator_ecg_ae.py (no discriminator, class MMD
loss) on all 500 ECG5000 test beats. It has no noise input, so one counterfactual per query
(more would coincide); Wachter on the first 200 beats as in generator_ecg.py.

    jaxcf train train/configs/generator_ecg_ae.py \
        --workdir workdir/generator_ecg_ae                                  # once
    jaxcf explain explain/amortised/configs/generator_ecg_ae.py \
        --workdir workdir/generator_ecg_ae
"""

import dataclasses
from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.core import load_config

HERE = Path(__file__).resolve().parent
TRAIN_CONFIG = HERE.parents[2] / "train" / "configs" / "generator_ecg_ae.py"


def get_config() -> ExplainConfig:
    base = load_config(HERE / "generator_ecg.py")
    return dataclasses.replace(base, job=str(TRAIN_CONFIG), num_cfs=1)
