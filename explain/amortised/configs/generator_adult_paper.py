"""The Adult table like for like with the paper: the generator of
train/configs/generator_adult_paper.py (the paper's recipe and budget, no constraints) on 1,000
Adult test rows, 3 counterfactuals each towards the other income class, against DiCE ("random",
the same 1,000 rows, 3 each, no constraints either) and, as an extra row, the constrained
generator of train/configs/generator_adult.py (3,000 steps; race and sex immutable, age only
increasing), which explains the same classifier. Scored in our units and in the paper's (L1 in
min-max units, L0 over categorical features, MMD² on min-max scaled, one-hot rows).

    jaxcf train train/configs/generator_adult_paper.py \\
        --workdir workdir/generator_adult_paper                              # ~35 min
    jaxcf explain explain/amortised/configs/generator_adult_paper.py \\
        --workdir workdir/generator_adult_paper --config.train_missing=True

``train_missing`` trains the constrained generator into ``models/generator_constrained`` (a few
minutes) when it is not there; the classifier is shared (the two jobs name the same config).
"""

from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.runner import RunnerConfig

CONFIGS = Path(__file__).resolve().parents[3] / "train" / "configs"


def get_config() -> ExplainConfig:
    return ExplainConfig(
        job=str(CONFIGS / "generator_adult_paper.py"),
        queries=1000,
        num_cfs=3,
        peers=("dice", "cfproto"),
        dice_method="random",
        dice_queries=1000,
        # CFProto with alibi's constructor weights and theta 10 (ExplainConfig's default),
        # prototypes in input space from every training row, labelled by the classifier.
        cfproto_queries=1000,
        extra_generators=(("constrained", str(CONFIGS / "generator_adult.py")),),
        soft_queries=0,
        runner=RunnerConfig(chunk_size=500),
    )
