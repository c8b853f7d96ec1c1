"""Input checks at the public boundary of every method: clear errors before any compilation."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def classifier_io(classifier: Any, input_shape: tuple[int, ...]) -> int:
    """Traces (does not compile) ``classifier.logits`` on one input; returns the class count.

    Raises:
      ValueError: if the classifier cannot take inputs of this shape or its output is not
        ``[1, C]``.
    """
    declared = getattr(classifier, "input_shape", None)
    if declared is not None and tuple(declared) != tuple(input_shape):
        raise ValueError(
            f"x has per-query shape {_shape_str(input_shape)} but the classifier expects "
            f"{_shape_str(declared)}"
        )
    probe = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    try:
        out = jax.eval_shape(classifier.logits, probe)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"the classifier cannot take inputs of per-query shape {_shape_str(input_shape)}: {e}"
        ) from e
    if len(out.shape) != 2 or out.shape[0] != 1:
        raise ValueError(f"classifier.logits must return [B, C], got {_shape_str(out.shape)}")
    return int(out.shape[1])


def check_queries(
    x: Any,
    target: Any,
    *,
    rank: int = 4,
    domain: tuple[float, float] | None = (0.0, 1.0),
) -> tuple[Array, Array]:
    """Validates a batch of queries and per-query targets; returns them as jax arrays.

    Args:
      x: ``[B, H, W, C]`` (for ``rank=4``) float queries.
      target: ``[B]`` integer target classes, or a scalar applied to the whole batch.
      rank: the rank ``x`` must have.
      domain: closed interval the values of ``x`` must lie in, or ``None``.

    Returns:
      ``x`` as float32 and ``target`` as int32 ``[B]``.

    Raises:
      ValueError: empty batch, wrong rank, NaN/inf, values outside ``domain``, length mismatch.
      TypeError: non-numeric ``x`` or non-integer targets.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"x must be a numeric array, got dtype {x.dtype}")
    if x.ndim != rank:
        raise ValueError(
            f"x must have rank {rank} ([B, H, W, C] images), got shape {_shape_str(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("empty batch: x has no queries")
    x = jnp.asarray(x, jnp.float32)
    finite, lo, hi = jax.device_get((jnp.all(jnp.isfinite(x)), jnp.min(x), jnp.max(x)))
    if not finite:
        raise ValueError("x contains NaN or inf")
    if domain is not None and (lo < domain[0] or hi > domain[1]):
        raise ValueError(
            f"x values must lie in [{domain[0]}, {domain[1]}], found range [{lo:.4g}, {hi:.4g}]"
        )
    target = np.asarray(jax.device_get(target)) if not isinstance(target, jax.Array) else target
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.ndim == 0:
        target = jnp.full((x.shape[0],), target, jnp.int32)
    if target.ndim != 1 or target.shape[0] != x.shape[0]:
        raise ValueError(
            f"target must be [B] with B = {x.shape[0]} (one per query), got shape "
            f"{_shape_str(target.shape)}"
        )
    return x, jnp.asarray(target, jnp.int32)


def check_targets(target: Array, num_classes: int) -> None:
    """Raises ValueError unless every target lies in ``[0, num_classes)``."""
    lo, hi = jax.device_get((jnp.min(target), jnp.max(target)))
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"target {int(bad)} is outside [0, {num_classes}) for this classifier")


def check_density(density: Any, num_classes: int, feature_dim: int) -> None:
    """Checks a density's protocol and that it has one component per classifier class."""
    if not callable(getattr(density, "log_prob", None)):
        raise TypeError("density must offer log_prob(features [B, D]) -> [B, C]")
    try:
        out = jax.eval_shape(density.log_prob, jax.ShapeDtypeStruct((1, feature_dim), jnp.float32))
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"density.log_prob cannot take the classifier's {feature_dim}-d features: {e}"
        ) from e
    if out.shape != (1, num_classes):
        raise ValueError(
            f"density gives log_prob of shape {_shape_str(out.shape[1:])} per query, but the "
            f"classifier has {num_classes} classes: fit the density on this classifier's features"
        )


def feature_dim(classifier: Any, input_shape: tuple[int, ...]) -> int:
    """Traces ``classifier.features`` on one input; returns the feature dimension ``D``."""
    probe = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    out = jax.eval_shape(classifier.features, probe)
    if len(out.shape) != 2:
        raise ValueError(f"classifier.features must return [B, D], got {_shape_str(out.shape)}")
    return int(out.shape[1])
