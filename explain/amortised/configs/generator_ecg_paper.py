"""The paper-sized ECG generator of train/configs/generator_ecg_paper.py under the protocol of
explain/amortised/configs/generator_ecg.py: all 500 ECG5000 test beats, 3 counterfactuals each
towards the other class, Wachter's search on the first 200, soft targets on all 500.

    jaxcf train train/configs/generator_ecg_paper.py \
        --workdir workdir/generator_ecg_paper                               # once
    jaxcf explain explain/amortised/configs/generator_ecg_paper.py \
        --workdir workdir/generator_ecg_paper

Its learning curve (class MMD^2 of the kept generators against training steps):
python -m explain.amortised.curve --workdir workdir/generator_ecg_paper.
"""

from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.methods import WachterConfig
from jaxcf.runner import RunnerConfig

TRAIN_CONFIG = Path(__file__).resolve().parents[3] / "train" / "configs" / "generator_ecg_paper.py"


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
