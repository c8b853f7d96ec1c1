"""Classifier-guided diffusion counterfactuals (DVCE- and DiME-style samplers) on MNIST, beside the
unguided sample from the same start.

Config files in ``configs/`` run with ``jaxcf explain explain/guided/configs/<name>.py --workdir W``
from the repository root."""

from explain.guided.protocol import (
    GuidedExplainConfig,
    run_guided_protocol,
)

__all__ = [
    "GuidedExplainConfig",
    "run_guided_protocol",
]
