"""The tabular generator of train/configs/generator_adult.py on 1,000 Adult test rows, 3
counterfactuals each towards the other income class, race and sex immutable and age only
increasing (enforced exactly), against DiCE ("random", the first 100 rows, 3 counterfactuals
each, the same constraints) and Wachter's per-query Adam search on the encoding (the first 200
rows; its rows are projected back to valid rows by decode -> encode before evaluation); then
soft targets on all 1,000 rows.

    jaxcf train train/configs/generator_adult.py \
        --workdir workdir/generator_adult                                   # once
    jaxcf explain explain/amortised/configs/generator_adult.py \
        --workdir workdir/generator_adult

MMD^2 is measured on the 85-d encoding of valid rows; L1 on the numeric columns in units of
their training standard deviations; L0 counts changed features (of 12).
"""

from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.methods import WachterConfig
from jaxcf.runner import RunnerConfig

TRAIN_CONFIG = Path(__file__).resolve().parents[3] / "train" / "configs" / "generator_adult.py"


def get_config() -> ExplainConfig:
    return ExplainConfig(
        job=str(TRAIN_CONFIG),
        queries=1000,
        num_cfs=3,
        peers=("wachter", "dice"),
        wachter=WachterConfig(learning_rate=0.01, l1_weight=0.005, max_iter=500),
        wachter_queries=200,
        dice_method="random",
        dice_queries=100,
        soft_queries=1000,
        runner=RunnerConfig(chunk_size=500),
        wachter_runner=RunnerConfig(chunk_size=64, slots=32),
    )
