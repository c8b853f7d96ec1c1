"""The attribute analysis (AIP section 4.6.1): for each flipped AIP query the attributes ranked
by ``|a* - a0|``, and over all of them the mean change per attribute: which attributes the
classifier leans on. For the age classifier the question is where ``Male`` ranks (the paper's
gender-bias example), pooled and split by the direction of the flip (towards young, towards
old), where the signed mean change says which way each attribute is pushed."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxcf.core import Results


def attribute_changes(r: Results) -> np.ndarray:
    """``[N, t]`` signed attribute changes ``a* - a0`` of AIP's (or AIP_R's) results."""
    return np.asarray(r.extras["a"], np.float64) - np.asarray(r.extras["a0"], np.float64)


def attribute_ranking(delta: np.ndarray, ok: np.ndarray, names: tuple[str, ...]) -> list[dict]:
    """Attributes by mean ``|a* - a0|`` over the flipped queries, largest first, with how often
    each is the most changed one."""
    d = np.abs(delta[ok])
    if not len(d):
        return []
    top = np.bincount(d.argmax(axis=1), minlength=len(names)) / len(d)
    order = np.argsort(-d.mean(axis=0), kind="stable")
    return [
        {
            "attribute": names[i],
            "mean_abs_change": float(d[:, i].mean()),
            "mean_change": float(delta[ok][:, i].mean()),
            "top_share": float(top[i]),
        }
        for i in order
    ]


def rank_of(ranking: list[dict], attribute: str) -> int | None:
    """1-based rank of ``attribute`` in a ranking, or None when it is empty."""
    return next((i + 1 for i, r in enumerate(ranking) if r["attribute"] == attribute), None)


def direction_ranking(delta: np.ndarray, ok: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """The ranking over the flipped queries ``ok`` of one direction, their count and Male's
    rank in it."""
    ranking = attribute_ranking(delta, ok, names)
    return {"flipped": int(ok.sum()), "ranking": ranking, "male_rank": rank_of(ranking, "Male")}
