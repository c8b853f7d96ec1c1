"""The conditional counterfactual generator of Van Looveren et al. (2021) end to end: the classifier
and its generator trained, then test queries explained by the generator and its peers (Wachter,
DiCE), with the paper's Adult and ECG numbers beside ours.

Config files in ``configs/`` run with ``jaxcf explain explain/amortised/configs/<name>.py --workdir
W``
from the repository root."""

from explain.amortised.config import DICE_METHODS, PEERS, TARGET_RULES, ExplainConfig
from explain.amortised.evaluation import encoded_box
from explain.amortised.job import (
    CLASSIFIER_DIR,
    GENERATOR_DIR,
    GeneratorJob,
    load_models,
    train_models,
)
from explain.amortised.protocol import REPORT_DIR, run_protocol
from explain.amortised.published import PUBLISHED

__all__ = [
    "CLASSIFIER_DIR",
    "DICE_METHODS",
    "GENERATOR_DIR",
    "PEERS",
    "PUBLISHED",
    "REPORT_DIR",
    "TARGET_RULES",
    "ExplainConfig",
    "GeneratorJob",
    "encoded_box",
    "load_models",
    "run_protocol",
    "train_models",
]
