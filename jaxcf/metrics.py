"""Metrics for counterfactuals: proximity, sparsity, validity, realism, and per-method summaries.

Conventions:

* Images are float32 NHWC in ``[0, 1]``; every metric also accepts any ``[B, ...]`` layout and
  reduces over all non-batch axes, so an "element" is one channel value of one pixel (for MNIST,
  ``H * W * C = 784`` elements).
* An element counts as *changed* when ``|x_cf - x| > atol`` (default ``1e-6``).
* Distances are computed in float64 on the host, in the units of the inputs (pixel intensity).
* Per-query functions return numpy arrays with the batch as leading axis; :func:`summarize` turns
  a dict of them into plain, JSON-serialisable numbers.

Classifier-based metrics (:func:`validity`, :func:`density_nll`) run one jitted, batched forward
pass per chunk of ``batch_size`` queries; the last chunk is padded to the same size, so a data set
of any length compiles once.

:data:`PUBLISHED` holds the MNIST results of the DeDUCE paper (Höltgen, Schut, Brauner & Gal,
"DeDUCE: Generating Counterfactual Explanations Efficiently", 2021) for comparison.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.classifier import as_pure

Array = jax.Array

# Keys of per-query metrics averaged by :func:`summarize`, in report order.
AVERAGED = ("l0", "l1", "l2", "n_iter", "nll")

# The DeDUCE paper's MNIST results (5 sets of 100 test images x 9 other targets = 4,500 pairs).
# ``l0``: changed pixels, ``l1``: summed absolute change. The paper's evaluation notebooks take
# both means over the pairs that *all four* of its methods solved (DeDUCE, JSMA, CFProto and
# REVISE, which fails on 27%), then average the five per-set means: compare them with a
# "pairs every method solved" mean, not with a method's own successes.
# ``failure_rate``: fraction of a method's own pairs without a counterfactual (None: not
# reported), ``seconds_per_cf``: time per single counterfactual on an NVIDIA T4. DeDUCE ran on
# the spectrally normalised ResNet-18 (c = 4), the baselines on a plain ResNet-18.
# Wachter et al. has no published number in that paper and is absent.
PUBLISHED: dict[str, dict[str, float | None]] = {
    "deduce": {"l0": 21.16, "l1": 10.72, "failure_rate": 0.0, "seconds_per_cf": 2.99},
    "jsma": {"l0": 25.59, "l1": 12.63, "failure_rate": 0.0309, "seconds_per_cf": 1.01},
    "cfproto": {"l0": 155.4, "l1": 38.95, "failure_rate": 0.0009, "seconds_per_cf": 109.9},
    "revise": {"l0": 752.0, "l1": 53.9, "failure_rate": 0.268, "seconds_per_cf": 46.7},
}

_ALIASES = {"proto": "cfproto", "alibicfproto": "cfproto", "prototype": "cfproto"}


def published_for(method: str, published: Mapping[str, Any] | None = None) -> dict | None:
    """The published numbers for ``method`` (matched ignoring case and punctuation), or None.

    ``"DeDUCE"``, ``"deduce"`` and ``"De-DUCE"`` all find ``PUBLISHED["deduce"]``.
    """
    published = PUBLISHED if published is None else published
    key = _normalise(method)
    key = _ALIASES.get(key, key)
    for name, value in published.items():
        if _ALIASES.get(_normalise(name), _normalise(name)) == key:
            return value
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


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


def _targets(target: Any, batch: int) -> np.ndarray:
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"target must be integer class indices, got dtype {t.dtype}")
    if t.ndim == 0:  # one target for the whole batch
        t = np.full((batch,), int(t))
    if t.shape != (batch,):
        raise ValueError(f"target must be a scalar or have shape ({batch},), got {t.shape}")
    if np.any(t < 0):
        raise ValueError("target contains negative class indices")
    return t.astype(np.int32)


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


def _is_array_leaf(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float | bool | complex)


def _is_pytree_of_arrays(obj: Any) -> bool:
    leaves = jax.tree.leaves(obj)
    return all(_is_array_leaf(leaf) for leaf in leaves) and not (
        len(leaves) == 1 and leaves[0] is obj
    )


@jax.jit
def _argmax_logits(clf: Any, x: Array) -> Array:
    return jnp.argmax(clf.logits(x), axis=-1).astype(jnp.int32)


@jax.jit
def _target_nll(clf: Any, density: Any, x: Array, target: Array) -> Array:
    log_p = density.log_prob(clf.features(x))  # [B, C]
    return -jnp.take_along_axis(log_p, target[:, None], axis=1)[:, 0]


def _bind(fn: Callable, *objs: Any) -> Callable:
    """``fn`` with ``objs`` as leading arguments: passed as pytrees when they are pytrees of
    arrays (one compilation per architecture), else closed over (one compilation per call)."""
    if all(_is_pytree_of_arrays(o) for o in objs):
        return lambda *args: fn(*objs, *args)
    raw = getattr(fn, "__wrapped__", fn)
    return jax.jit(lambda *args: raw(*objs, *args))


def _chunked(fn: Callable, batch_size: int, *arrays: np.ndarray) -> np.ndarray:
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


def _num_classes(fn: Callable, *arrays: np.ndarray) -> int:
    shape = jax.eval_shape(fn, *(jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype) for a in arrays))
    return int(shape.shape[-1])


def predict(classifier: Any, x: Any, batch_size: int = 512) -> np.ndarray:
    """Predicted classes ``[B]`` int32 (argmax of ``classifier.logits``) for ``x [B, ...]``."""
    x = _as_batch(x, "x").astype(np.float32)
    fn = _bind(_argmax_logits, as_pure(classifier))
    return _chunked(fn, batch_size, x)


def validity(classifier: Any, x_cf: Any, target: Any, batch_size: int = 512) -> np.ndarray:
    """Whether the classifier assigns each counterfactual to its target.

    Args:
      classifier: any object offering ``logits(x) -> [B, C]`` (see :mod:`jaxcf.classifier`).
      x_cf: ``[B, H, W, C]`` counterfactuals.
      target: ``[B]`` int target classes (or one int for the whole batch).
      batch_size: queries per jitted forward pass.

    Returns:
      ``[B]`` bool, ``argmax logits(x_cf) == target``.
    """
    x_cf = _as_batch(x_cf, "x_cf").astype(np.float32)
    target = _targets(target, x_cf.shape[0])
    pure = as_pure(classifier)
    num_classes = _num_classes(lambda x: pure.logits(x), x_cf)
    if np.any(target >= num_classes):
        raise ValueError(f"target out of range for a classifier with {num_classes} classes")
    return predict(pure, x_cf, batch_size) == target


def density_nll(
    classifier: Any, density: Any, x_cf: Any, target: Any, batch_size: int = 512
) -> np.ndarray:
    """Realism: negative log density of each counterfactual's features under its target class.

    Args:
      classifier: offers ``features(x) -> [B, D]`` (and ``logits``, ``head``).
      density: offers ``log_prob(features [B, D]) -> [B, C]``, e.g.
        :class:`jaxcf.density.GaussianDensity`.
      x_cf: ``[B, H, W, C]`` counterfactuals.
      target: ``[B]`` int target classes (or one int).
      batch_size: queries per jitted forward pass.

    Returns:
      ``[B]`` float32, ``-log p_target(features(x_cf))`` in nats; lower is more realistic.
    """
    x_cf = _as_batch(x_cf, "x_cf").astype(np.float32)
    target = _targets(target, x_cf.shape[0])
    pure = as_pure(classifier, need_features=True)
    if not callable(getattr(density, "log_prob", None)):
        raise TypeError(f"density {type(density).__name__} lacks log_prob(features) -> [B, C]")
    num_classes = _num_classes(lambda x: density.log_prob(pure.features(x)), x_cf)
    if np.any(target >= num_classes):
        raise ValueError(f"target out of range for a density with {num_classes} classes")
    fn = _bind(_target_nll, pure, density)
    return _chunked(fn, batch_size, x_cf, target)


# --------------------------------------------------------------------------------------------
# Per-query table and summaries


def _field(result_like: Any, name: str) -> np.ndarray:
    if isinstance(result_like, Mapping) or hasattr(result_like, "files"):  # dict or NpzFile
        if name not in result_like:
            raise KeyError(f"result has no {name!r}")
        return np.asarray(result_like[name])
    if not hasattr(result_like, name):
        raise TypeError(f"{type(result_like).__name__} has no field {name!r}")
    return np.asarray(getattr(result_like, name))


def per_query_metrics(
    result_like: Any,
    x: Any,
    target: Any,
    *,
    classifier: Any = None,
    density: Any = None,
    atol: float = 1e-6,
    batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Every per-query metric of one method's results.

    Args:
      result_like: a :class:`jaxcf.methods.search.CFResult`, or a dict / ``np.load``-ed npz with
        keys ``x_cf``, ``success``, ``n_iter``, ``target_prob``.
      x: ``[B, H, W, C]`` the queries.
      target: ``[B]`` int targets (or one int).
      classifier: if given, adds ``valid``.
      density: if given (needs ``classifier``), adds ``nll``.

    Returns:
      dict of ``[B]`` arrays: ``l0`` (int64), ``l1``, ``l2`` (float64), ``success`` (bool),
      ``n_iter`` (int64), ``target_prob`` (float64), and ``valid`` (bool), ``nll`` (float32).
    """
    x_cf = _field(result_like, "x_cf")
    x, x_cf = _pair(x, x_cf)
    b = x.shape[0]
    target = _targets(target, b)
    out = {
        "l0": l0(x, x_cf, atol),
        "l1": l1(x, x_cf),
        "l2": l2(x, x_cf),
        "success": _field(result_like, "success").astype(bool),
        "n_iter": _field(result_like, "n_iter").astype(np.int64),
        "target_prob": _field(result_like, "target_prob").astype(np.float64),
    }
    for key in ("success", "n_iter", "target_prob"):
        if out[key].shape != (b,):
            raise ValueError(f"result {key} has shape {out[key].shape}, expected ({b},)")
    if density is not None and classifier is None:
        raise ValueError("density_nll needs the classifier's features: pass classifier too")
    if classifier is not None:
        out["valid"] = validity(classifier, x_cf, target, batch_size)
    if density is not None:
        out["nll"] = density_nll(classifier, density, x_cf, target, batch_size)
    return out


def _mean(a: np.ndarray) -> float | None:
    return float(np.mean(a)) if a.size else None


def summarize(per_query: Mapping[str, Any], sets: Any = None) -> dict[str, Any]:
    """Summary of one method's per-query metrics, as plain Python numbers.

    Distances are reported on *found* counterfactuals, as in the DeDUCE paper.

    Args:
      per_query: output of :func:`per_query_metrics` (``success`` plus any of ``l0``, ``l1``,
        ``l2``, ``n_iter``, ``nll``, ``valid``, ``target_prob``).
      sets: optional ``[B]`` int set id per query (e.g. DeDUCE's 5 sets of 100 images).

    Returns:
      dict with ``n``, ``n_success``, ``failure_rate`` (fraction in [0, 1]); for each averaged
      metric ``k`` present: ``k`` (mean over successful queries, None if there are none) and
      ``k_all`` (mean over all queries); ``valid_rate`` and ``target_prob_all`` when present.
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
    if "target_prob" in per_query:
        out["target_prob_all"] = float(np.mean(np.asarray(per_query["target_prob"], np.float64)))

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


def to_jsonable(obj: Any) -> Any:
    """Converts numpy/jax scalars and arrays, tuples and non-finite floats (to None) into plain
    JSON-serialisable Python objects, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, jax.Array | np.ndarray):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
