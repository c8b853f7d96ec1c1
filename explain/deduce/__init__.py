"""The DeDUCE paper's MNIST protocol (Höltgen, Schut, Brauner & Gal, 2021): sets of test images,
each
explained towards all 9 other classes by DeDUCE and its baselines, with the paper's Table 1 beside
ours.

Config files in ``configs/`` run with ``jaxcf explain explain/deduce/configs/<name>.py --workdir W``
from the repository root."""

from explain.deduce.protocol import (
    BASELINE,
    DEFAULT_METHODS,
    PUBLISHED,
    ProtocolConfig,
    protocol_pairs,
    run_protocol,
)

__all__ = [
    "BASELINE",
    "DEFAULT_METHODS",
    "PUBLISHED",
    "ProtocolConfig",
    "protocol_pairs",
    "run_protocol",
]
