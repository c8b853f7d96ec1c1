"""Scoring counterfactuals: per-row metrics, summaries and paired comparisons
(:mod:`~jaxcf.evaluation.metrics`), distribution distances (MMD, FID-style:
:mod:`~jaxcf.evaluation.distribution`), agreement between a model and its surrogate
(:mod:`~jaxcf.evaluation.agreement`), attribution maps to compare with
(:mod:`~jaxcf.evaluation.attribution`) and the AnoGAN realism score of DeDUCE's table
(:func:`agan_score`).
"""

from jaxcf.evaluation import agreement, attribution, distribution, metrics
from jaxcf.evaluation._anogan import (
    AGANConfig,
    AGANScores,
    agan_loss,
    agan_score,
    initial_codes,
)

__all__ = [
    "AGANConfig",
    "AGANScores",
    "agan_loss",
    "agan_score",
    "agreement",
    "attribution",
    "distribution",
    "initial_codes",
    "metrics",
]
