"""Metrics for counterfactuals: proximity, sparsity, validity, realism, diversity, summaries.

Every function reads the one results record, :class:`jaxcf.core.Results` (what the runner
writes), or plain arrays.

Conventions:

* Inputs are any ``[B, ...]`` layout (images, series, rows); distances reduce over all non-batch
  axes, so an "element" is one input value (for MNIST, ``H * W * C = 784`` pixels).
* An element counts as *changed* when ``|x_cf - x| > atol`` (default ``1e-6``).
* Distances are computed in float64 on the host, in the units of the inputs.
* Row metrics (:func:`row_metrics`) have one entry per counterfactual; with several
  counterfactuals per query, :func:`query_metrics` aggregates them per query (best, mean) and
  measures diversity (mean pairwise L1 distance among a query's successful counterfactuals).
* :func:`summarize` turns row metrics into plain, JSON-serialisable numbers.

Validity re-scores a counterfactual with a classifier, by the kind of its target (see
:mod:`jaxcf.core.targets`): class targets are valid when the argmax is the target; soft targets when
the total variation distance to the target distribution is at most ``tolerance``; regression
targets when the absolute error is at most ``tolerance``.

Classifier-based metrics run one jitted, batched forward pass per chunk of ``batch_size``
queries; the last chunk is padded to the same size, so a data set of any length compiles once.
No paper's numbers live here: protocols keep their published results (e.g.
:mod:`explain.deduce`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.core import Results, as_pure, to_jsonable
from jaxcf.core import targets as targets_lib
from jaxcf.models import as_density

Array = jax.Array

# Keys of row metrics averaged by :func:`summarize`, in report order.
AVERAGED = ("l0", "l1", "l2", "n_iter", "nll")


# --------------------------------------------------------------------------------------------
# Input checks


def _as_batch(a: Any, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 1:
        raise ValueError(f"{name} must have a leading batch axis, got a scalar")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _pair(x: Any, x_cf: Any) -> tuple[np.ndarray, np.ndarray]:
    x = _as_batch(x, "x")
    x_cf = _as_batch(x_cf, "x_cf")
    if x.shape != x_cf.shape:
        raise ValueError(f"x {x.shape} and x_cf {x_cf.shape} must have the same shape")
    return x, x_cf


# --------------------------------------------------------------------------------------------
# Distances


def _flat_diff(x: Any, x_cf: Any) -> np.ndarray:
    x, x_cf = _pair(x, x_cf)
    d = x_cf.astype(np.float64) - x.astype(np.float64)
    return d.reshape(d.shape[0], -1)


def l0(x: Any, x_cf: Any, atol: float = 1e-6) -> np.ndarray:
    """Number of changed elements per query.

    Args:
      x: ``[B, H, W, C]`` originals (any ``[B, ...]`` works).
      x_cf: counterfactuals, same shape.
      atol: an element is changed when ``|x_cf - x| > atol``.

    Returns:
      ``[B]`` int64, count over ``H * W * C`` elements (pixels, for one channel).
    """
    return np.sum(np.abs(_flat_diff(x, x_cf)) > atol, axis=1).astype(np.int64)


def l1(x: Any, x_cf: Any) -> np.ndarray:
    """``[B]`` float64: sum of ``|x_cf - x|`` over all elements (intensity units)."""
    return np.sum(np.abs(_flat_diff(x, x_cf)), axis=1)


def l2(x: Any, x_cf: Any) -> np.ndarray:
    """``[B]`` float64: Euclidean norm of ``x_cf - x`` over all elements (intensity units)."""
    return np.sqrt(np.sum(np.square(_flat_diff(x, x_cf)), axis=1))


# --------------------------------------------------------------------------------------------
# Classifier-based metrics


@jax.jit
def _outputs(clf: Any, x: Array) -> Array:
    return clf.logits(x).astype(jnp.float32)


@jax.jit
def _target_nll(clf: Any, density: Any, x: Array, target: Array) -> Array:
    log_p = density.log_prob(clf.features(x))  # [B, C]
    return -jnp.take_along_axis(log_p, target[:, None], axis=1)[:, 0]


def chunked(fn: Callable, batch_size: int, *arrays: np.ndarray) -> np.ndarray:
    """Applies ``fn`` to equal-sized chunks of ``arrays`` (the last edge-padded); concatenates."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = arrays[0].shape[0]
    size = min(batch_size, n)
    out = []
    for start in range(0, n, size):
        stop = min(start + size, n)
        chunk = []
        for a in arrays:
            part = a[start:stop]
            if stop - start < size:
                pad = [(0, size - (stop - start))] + [(0, 0)] * (a.ndim - 1)
                part = np.pad(part, pad, mode="edge")
            chunk.append(part)
        out.append(np.asarray(jax.device_get(fn(*chunk)))[: stop - start])
    return np.concatenate(out, axis=0)


def outputs(classifier: Any, x: Any, batch_size: int = 512) -> np.ndarray:
    """``classifier.logits(x)`` as float32 ``[B, C]``, in jitted chunks."""
    x = _as_batch(x, "x").astype(np.float32)
    pure = as_pure(classifier)
    return chunked(lambda xb: _outputs(pure, xb), batch_size, x)


def predict(classifier: Any, x: Any, batch_size: int = 512) -> np.ndarray:
    """Predicted classes ``[B]`` int32 (argmax of ``classifier.logits``) for ``x [B, ...]``."""
    return np.argmax(outputs(classifier, x, batch_size), axis=-1).astype(np.int32)


def validity(
    classifier: Any,
    x_cf: Any,
    target: Any,
    *,
    tolerance: float = 0.1,
    batch_size: int = 512,
) -> np.ndarray:
    """Whether the classifier puts each counterfactual at its target (see the module docstring).

    Args:
      classifier: any object offering ``logits(x) -> [B, C]`` (see :mod:`jaxcf.core`).
      x_cf: ``[B, ...]`` counterfactuals.
      target: ``[B]`` int classes (or one int), ``[B, C]`` distributions or ``[B]`` float
        regression values.
      tolerance: for soft and regression targets.
      batch_size: queries per jitted forward pass.

    Returns:
      ``[B]`` bool.
    """
    x_cf = _as_batch(x_cf, "x_cf").astype(np.float32)
    out = outputs(classifier, x_cf, batch_size)
    target = np.asarray(targets_lib.check_target(target, len(x_cf), out.shape[1]))
    kind = targets_lib.kind_of(target)
    if kind == "class":
        return np.argmax(out, axis=-1) == target
    score = np.asarray(targets_lib.target_score(jnp.asarray(out), jnp.asarray(target)))
    return score <= tolerance


def density_nll(
    classifier: Any, density: Any, x_cf: Any, target: Any, batch_size: int = 512
) -> np.ndarray:
    """Realism: negative log density of each counterfactual's features under its target class.

    Args:
      classifier: offers ``features(x) -> [B, D]`` (and ``logits``, ``head``).
      density: offers ``log_prob(features [B, D]) -> [B, C]``, e.g.
        :class:`jaxcf.models.GaussianDensity`.
      x_cf: ``[B, ...]`` counterfactuals.
      target: ``[B]`` int target classes (or one int).
      batch_size: queries per jitted forward pass.

    Returns:
      ``[B]`` float32, ``-log p_target(features(x_cf))`` in nats; lower is more realistic.
    """
    x_cf = _as_batch(x_cf, "x_cf").astype(np.float32)
    pure = as_pure(classifier, need_features=True)
    density = as_density(density)
    probe = jax.ShapeDtypeStruct((1, *x_cf.shape[1:]), np.float32)
    num_classes = jax.eval_shape(lambda x: density.log_prob(pure.features(x)), probe).shape[-1]
    target = np.asarray(targets_lib.check_target(target, len(x_cf), num_classes, ("class",)))
    return chunked(lambda xb, tb: _target_nll(pure, density, xb, tb), batch_size, x_cf, target)


# --------------------------------------------------------------------------------------------
# Row and query tables


def row_metrics(
    results: Results,
    *,
    classifier: Any = None,
    density: Any = None,
    tolerance: float = 0.1,
    atol: float = 1e-6,
    batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Every per-row metric of one method's results.

    Args:
      results: a :class:`~jaxcf.core.Results` (what the runner returns and writes).
      classifier: if given, adds ``valid`` (re-scored by this classifier).
      density: if given (needs ``classifier``), adds ``nll`` (class targets only).
      tolerance: validity tolerance for soft and regression targets.
      atol: an element is changed when ``|x_cf - x| > atol``.

    Returns:
      dict of ``[R]`` arrays: ``l0`` (int64), ``l1``, ``l2`` (float64), ``success`` (bool),
      ``n_iter`` (int64), ``score`` (float64), and ``valid`` (bool), ``nll`` (float32).
    """
    if not isinstance(results, Results):
        raise TypeError(
            f"row_metrics reads a jaxcf.core.Results, got {type(results).__name__}; "
            "wrap a CFResult with Results.from_batch(result, x, target)"
        )
    x, x_cf = _pair(results.x, results.x_cf)
    out = {
        "l0": l0(x, x_cf, atol),
        "l1": l1(x, x_cf),
        "l2": l2(x, x_cf),
        "success": results.success.astype(bool),
        "n_iter": results.n_iter.astype(np.int64),
        "score": results.score.astype(np.float64),
    }
    if density is not None and classifier is None:
        raise ValueError("density_nll needs the classifier's features: pass classifier too")
    if classifier is not None:
        out["valid"] = validity(
            classifier, x_cf, results.target, tolerance=tolerance, batch_size=batch_size
        )
    if density is not None:
        out["nll"] = density_nll(classifier, density, x_cf, results.target, batch_size)
    return out


def query_metrics(
    results: Results, rows: Mapping[str, Any], keys: tuple[str, ...] = ("l0", "l1")
) -> dict[str, np.ndarray]:
    """Aggregates row metrics per query, for runs with several counterfactuals per query.

    Args:
      results: the record (for ``query`` and ``x_cf``).
      rows: output of :func:`row_metrics` on it.
      keys: row metrics to aggregate.

    Returns:
      dict of ``[N]`` arrays, queries in ascending index order: ``query`` (its index),
      ``success`` (any row succeeded), ``n_success`` (successful rows), and per key ``k``:
      ``k_best`` (minimum over successful rows) and ``k_mean`` (mean over them), NaN for a
      query without successes; ``diversity``: mean pairwise L1 distance (input units) among the
      query's successful counterfactuals, NaN with fewer than two.
    """
    ids, inverse = np.unique(results.query, return_inverse=True)
    ok = np.asarray(rows["success"], bool)
    flat = results.x_cf.reshape(len(results), -1).astype(np.float64)
    out: dict[str, np.ndarray] = {
        "query": ids,
        "success": np.zeros(len(ids), bool),
        "n_success": np.zeros(len(ids), np.int64),
        "diversity": np.full(len(ids), np.nan),
    }
    for k in keys:
        out[f"{k}_best"] = np.full(len(ids), np.nan)
        out[f"{k}_mean"] = np.full(len(ids), np.nan)
    for i in range(len(ids)):
        mine = (inverse == i) & ok
        m = int(mine.sum())
        out["n_success"][i] = m
        out["success"][i] = m > 0
        if not m:
            continue
        for k in keys:
            v = np.asarray(rows[k], np.float64)[mine]
            out[f"{k}_best"][i], out[f"{k}_mean"][i] = v.min(), v.mean()
        if m > 1:
            cfs = flat[mine]
            d = np.abs(cfs[:, None, :] - cfs[None, :, :]).sum(-1)
            out["diversity"][i] = d[np.triu_indices(m, 1)].mean()
    return out


def _mean(a: np.ndarray) -> float | None:
    return float(np.mean(a)) if a.size else None


def summarize(per_query: Mapping[str, Any], sets: Any = None) -> dict[str, Any]:
    """Summary of one method's per-query metrics, as plain Python numbers.

    Distances are reported on *found* counterfactuals, as in the DeDUCE paper.

    Args:
      per_query: output of :func:`row_metrics` (``success`` plus any of ``l0``, ``l1``,
        ``l2``, ``n_iter``, ``nll``, ``valid``, ``score``).
      sets: optional ``[B]`` int set id per row (e.g. DeDUCE's 5 sets of 100 images; a
        results record's ``group``).

    Returns:
      dict with ``n``, ``n_success``, ``failure_rate`` (fraction in [0, 1]); for each averaged
      metric ``k`` present: ``k`` (mean over successful queries, None if there are none) and
      ``k_all`` (mean over all queries); ``valid_rate`` and ``score_all`` when present.
      With ``sets``: ``n_sets`` and ``k_std_over_sets`` (std of the per-set means of ``k``,
      ddof=1 with more than one set, else 0.0) for each averaged metric and ``failure_rate``.
    """
    if "success" not in per_query:
        raise KeyError("per_query needs 'success'")
    success = np.asarray(per_query["success"]).astype(bool)
    if success.ndim != 1 or success.size == 0:
        raise ValueError(f"success must be a non-empty [B] array, got shape {success.shape}")
    n = success.size
    present = [k for k in AVERAGED if k in per_query]
    values = {k: np.asarray(per_query[k], np.float64) for k in present}
    for k, v in values.items():
        if v.shape != (n,):
            raise ValueError(f"{k} has shape {v.shape}, expected ({n},)")

    out: dict[str, Any] = {
        "n": int(n),
        "n_success": int(success.sum()),
        "failure_rate": float(1.0 - success.mean()),
    }
    for k in present:
        out[k] = _mean(values[k][success])
        out[f"{k}_all"] = _mean(values[k])
    if "valid" in per_query:
        out["valid_rate"] = float(np.mean(np.asarray(per_query["valid"]).astype(bool)))
    if "score" in per_query:
        out["score_all"] = float(np.mean(np.asarray(per_query["score"], np.float64)))

    if sets is not None:
        sets = np.asarray(sets)
        if sets.shape != (n,):
            raise ValueError(f"sets must have shape ({n},), got {sets.shape}")
        ids = np.unique(sets)
        out["n_sets"] = int(ids.size)
        per_set: dict[str, list[float]] = {k: [] for k in (*present, "failure_rate")}
        for s in ids:
            in_set = sets == s
            found = in_set & success
            per_set["failure_rate"].append(1.0 - success[in_set].mean())
            for k in present:
                if found.any():  # a set without successes has no mean distance
                    per_set[k].append(values[k][found].mean())
        for k, means in per_set.items():
            m = np.asarray(means, np.float64)
            out[f"{k}_std_over_sets"] = float(np.std(m, ddof=1)) if m.size > 1 else 0.0
    return to_jsonable(out)


def set_means(values: Mapping[str, Any], mask: Any, sets: Any) -> list[dict[str, Any]]:
    """Means per set over the masked queries.

    Args:
      values: name -> ``[B]`` per-query values.
      mask: ``[B]`` bool, the queries that count.
      sets: ``[B]`` set id per query.

    Returns:
      one dict per set id (ascending): ``set``, ``n`` (masked queries in it) and each name's mean
      over them (None when there are none).
    """
    mask, sets = np.asarray(mask, bool), np.asarray(sets)
    rows = []
    for s in np.unique(sets):
        m = mask & (sets == s)
        means = {k: _mean(np.asarray(v, np.float64)[m]) for k, v in values.items()}
        rows.append({"set": int(s), "n": int(m.sum()), **means})
    return rows


def paired_comparison(
    a: Mapping[str, Any], b: Mapping[str, Any], keys: tuple[str, ...] = ("l0", "l1"), sets=None
) -> dict[str, Any]:
    """Compares two methods on the queries *both* solved, pair by pair.

    The DeDUCE paper reports L0/L1 on the pairs every method solved; the paired difference
    (one value per query) is what says whether one method is sparser than the other, since the
    spread between queries is much larger than the gap between methods.

    Args:
      a, b: per-query metrics of two methods on the same queries (``success`` and ``keys``).
      keys: metrics to compare.
      sets: optional ``[B]`` set id per query.

    Returns:
      dict with ``n`` (queries both solved) and, per key ``k``: ``k`` = {``a``, ``b``: means on
      the shared queries; ``diff``: mean of a - b; ``stderr``: its standard error (ddof=1);
      ``a_lower``/``b_lower``: fractions of shared queries where a (b) is strictly lower}; with
      ``sets`` also ``per_set``: [{``set``, ``n``, ``k_a``, ``k_b``...}] for each set id.
    """
    for name, pq in (("a", a), ("b", b)):
        missing = [k for k in ("success", *keys) if k not in pq]
        if missing:
            raise KeyError(f"{name} lacks per-query metrics {missing}")
    both = np.asarray(a["success"], bool) & np.asarray(b["success"], bool)
    out: dict[str, Any] = {"n": int(both.sum())}
    for k in keys:
        va = np.asarray(a[k], np.float64)[both]
        vb = np.asarray(b[k], np.float64)[both]
        d = va - vb
        out[k] = {
            "a": _mean(va),
            "b": _mean(vb),
            "diff": _mean(d),
            "stderr": float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else None,
            "a_lower": _mean(d < 0),
            "b_lower": _mean(d > 0),
        }
    if sets is not None:
        sets = np.asarray(sets)
        if sets.shape != both.shape:
            raise ValueError(f"sets must have shape {both.shape}, got {sets.shape}")
        rows_a = set_means({f"{k}_a": a[k] for k in keys}, both, sets)
        rows_b = set_means({f"{k}_b": b[k] for k in keys}, both, sets)
        out["per_set"] = [{**ra, **rb} for ra, rb in zip(rows_a, rows_b, strict=True)]
    return to_jsonable(out)
