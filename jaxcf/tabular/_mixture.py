"""The 1-D Gaussian mixture behind the encoding of numeric columns (CTGAN's *mode-specific
normalisation*, Xu et al. 2019): :func:`fit_mixture_1d` fits ``K`` modes to a column's
training values by deterministic EM, and :class:`NumericFit` holds the fitted weights, means,
standard deviations and the range of the values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class NumericFit:
    """A numeric column's fitted mixture and range (float64 values, modes sorted by mean).

    Attributes:
      weights, means, stds: ``K`` mixture weights (sum 1), means and standard deviations.
      low, high: the smallest and largest training value.
    """

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    low: float
    high: float

    def __post_init__(self) -> None:
        for field in ("weights", "means", "stds"):
            object.__setattr__(self, field, tuple(float(v) for v in getattr(self, field)))
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        k = len(self.means)
        if k < 1 or len(self.weights) != k or len(self.stds) != k:
            raise ValueError(
                f"a NumericFit needs K >= 1 weights, means and stds, got "
                f"{len(self.weights)}, {k}, {len(self.stds)}"
            )
        values = (*self.weights, *self.means, *self.stds, self.low, self.high)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("NumericFit values must be finite")
        if min(self.stds) <= 0 or min(self.weights) < 0 or self.low > self.high:
            raise ValueError("NumericFit needs stds > 0, weights >= 0 and low <= high")

    @property
    def n_modes(self) -> int:
        return len(self.means)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "means": list(self.means),
            "stds": list(self.stds),
            "low": self.low,
            "high": self.high,
        }


def fit_mixture_1d(
    values: np.ndarray,
    n_modes: int,
    *,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> NumericFit:
    """Fits a ``n_modes``-component 1-D Gaussian mixture by EM; deterministic for a seed.

    EM runs on the distinct values weighted by their counts, which is the same likelihood as
    on the raw values but much cheaper for integer-valued columns. Means start from k-means++
    seeding over the distinct values (``seed``), so isolated spikes (Adult's capital-gain
    values) get a mode of their own. Standard deviations are floored at ``1e-3`` times the
    column's standard deviation: point masses are common (zero capital gain) and an unfloored
    mode would collapse to zero width. A mode can end up a copy of another (Adult's capital
    gain and loss put two on the zero spike) or dominated everywhere: it keeps its slot, so
    the width stays ``1 + K``, but ``encode`` never picks it (``decode`` still reads it).

    Args:
      values: ``[N]`` finite numbers.
      n_modes: ``K``; columns with fewer distinct values get duplicate modes.
      seed: seeds the k-means++ initialisation.
      max_iter: EM iterations at most; ``tol``: stop when the mean log-likelihood improves by
        less than this.

    Returns:
      A :class:`NumericFit`, modes sorted by mean.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("fit_mixture_1d needs a non-empty array of finite values")
    if isinstance(n_modes, bool) or not isinstance(n_modes, int) or n_modes < 1:
        raise ValueError(f"n_modes must be an integer >= 1, got {n_modes!r}")
    uniq, counts = np.unique(x, return_counts=True)
    counts = counts.astype(np.float64)
    total = counts.sum()
    scale = float(np.std(x)) or 1.0
    floor = 1e-3 * scale

    rng = np.random.default_rng(seed)
    centers = [uniq[rng.integers(uniq.size)]]
    while len(centers) < min(n_modes, uniq.size):
        d2 = np.min((uniq[:, None] - np.asarray(centers)[None, :]) ** 2, axis=1)
        centers.append(uniq[rng.choice(uniq.size, p=d2 / d2.sum())])
    centers += [centers[-1]] * (n_modes - len(centers))
    means = np.sort(np.asarray(centers))
    stds = np.full(n_modes, scale)
    weights = np.full(n_modes, 1.0 / n_modes)

    prev = -np.inf
    for _ in range(max_iter):
        log_p = log_joint(uniq, weights, means, stds)  # [U, K]
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(log_p - top).sum(axis=1))
        resp = np.exp(log_p - log_norm[:, None]) * counts[:, None]
        nk = resp.sum(axis=0)
        alive = nk > 1e-12 * total
        # A mode that lost all its points keeps its mean and width with weight 0 (never the
        # most responsible mode when encoding, but still a valid mode to decode).
        safe_nk = np.where(alive, nk, 1.0)
        new_means = np.where(alive, (resp * uniq[:, None]).sum(axis=0) / safe_nk, means)
        var = (resp * (uniq[:, None] - new_means[None, :]) ** 2).sum(axis=0) / safe_nk
        stds = np.where(alive, np.sqrt(np.maximum(var, floor**2)), stds)
        means, weights = new_means, nk / total
        ll = float((log_norm * counts).sum() / total)
        if ll - prev < tol:
            break
        prev = ll
    order = np.argsort(means, kind="stable")
    return NumericFit(
        weights=weights[order],
        means=means[order],
        stds=stds[order],
        low=float(x.min()),
        high=float(x.max()),
    )


def log_joint(x: np.ndarray, weights: np.ndarray, means: np.ndarray, stds: np.ndarray):
    """``log w_k + log N(x; mu_k, sigma_k)``, ``[N, K]`` (weight 0 gives -inf)."""
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    z = (x[:, None] - means[None, :]) / stds[None, :]
    return log_w[None, :] - 0.5 * z * z - np.log(stds)[None, :] - 0.5 * math.log(2 * math.pi)
