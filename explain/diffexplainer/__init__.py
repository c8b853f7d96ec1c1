"""DiffExplainer on PneumoniaMNIST: a teacher classifier, a diffusion autoencoder and a distilled
agent; the agent's agreement with its teacher, reconstructions and graded counterfactual
sequences.

Config files in ``configs/`` run with ``jaxcf explain explain/diffexplainer/configs/<name>.py
--workdir W``
from the repository root."""

from explain.diffexplainer.protocol import (
    DiffExplainerJob,
    run_diffexplainer_protocol,
)
from explain.diffexplainer.published import PUBLISHED

__all__ = [
    "PUBLISHED",
    "DiffExplainerJob",
    "run_diffexplainer_protocol",
]
