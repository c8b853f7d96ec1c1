"""Scoring counterfactuals: per-row metrics, summaries and paired comparisons
(:mod:`~jaxcf.evaluation.metrics`), distribution distances (MMD, FID-style:
:mod:`~jaxcf.evaluation.distribution`), agreement between a model and its surrogate
(:mod:`~jaxcf.evaluation.agreement`) and attribution maps to compare with
(:mod:`~jaxcf.evaluation.attribution`).
"""

from jaxcf.evaluation import agreement, attribution, distribution, metrics

__all__ = ["agreement", "attribution", "distribution", "metrics"]
