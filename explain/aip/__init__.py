"""The AIP paper's CelebA protocol: a gender classifier explained by AIP, xGEMs, REVISE, FGSM and
AIP_R on held-out faces, the attribute analysis with an age classifier, and counterfactual data
augmentation.

Config files in ``configs/`` run with ``jaxcf explain explain/aip/configs/<name>.py --workdir W``
from the repository root."""

from explain.aip.job import DEFAULT_METHODS, AIPJob, AugmentConfig
from explain.aip.protocol import run_aip_protocol
from explain.aip.published import PUBLISHED_AUGMENTATION
from explain.aip.scores import PAPER_ORDERING

__all__ = [
    "DEFAULT_METHODS",
    "PAPER_ORDERING",
    "PUBLISHED_AUGMENTATION",
    "AIPJob",
    "AugmentConfig",
    "run_aip_protocol",
]
