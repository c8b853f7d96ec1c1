"""Input checks at the public boundary of every explainer: clear errors before any compilation.

Everything here runs on the host or traces with ``jax.eval_shape``; nothing compiles.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.core import targets as targets_lib

Array = jax.Array
Box = tuple[float, float]


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def classifier_io(classifier: Any, input_shape: tuple[int, ...]) -> int:
    """Traces (does not compile) ``classifier.logits`` on one input; returns the output width.

    Raises:
      ValueError: if the classifier declares another ``input_shape``, cannot take inputs of this
        shape, or its output is not ``[1, C]``.
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


def domain_of(classifier: Any, override: Box | None = None) -> Box | None:
    """The box queries and counterfactuals live in: ``override`` (a method config's ``domain``)
    if given, else the classifier's declared ``domain`` (our image models: ``(0.0, 1.0)``),
    else ``None`` (unbounded)."""
    if override is not None:
        return tuple(override)
    declared = getattr(classifier, "domain", None)
    return None if declared is None else (float(declared[0]), float(declared[1]))


def check_queries(x: Any, *, domain: Box | None = None, min_rank: int = 2) -> Array:
    """Validates a batch of queries; returns it as a float32 JAX array.

    Args:
      x: ``[B, ...]`` numeric queries: images ``[B, H, W, C]``, time series ``[B, T, C]`` or
        tabular rows ``[B, F]``.
      domain: closed box ``(lo, hi)`` the values of ``x`` must lie in, or ``None``.
      min_rank: least rank ``x`` must have (2: a batch axis and at least one feature axis).

    Raises:
      ValueError: empty batch, too low a rank, NaN/inf, values outside ``domain``.
      TypeError: non-numeric ``x``.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.dtype == bool or not (
        jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
    ):
        raise TypeError(f"x must be a numeric array, got dtype {x.dtype}")
    if x.ndim < min_rank:
        raise ValueError(
            f"x must have rank >= {min_rank} (a batch axis first, e.g. [B, H, W, C] images, "
            f"[B, T, C] series or [B, F] rows), got shape {_shape_str(x.shape)}"
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
    return x


def check_inputs(
    classifier: Any,
    x: Any,
    target: Any,
    *,
    domain: Box | None,
    kinds: tuple[targets_lib.Kind, ...],
) -> tuple[Array, Array]:
    """Queries and targets checked against each other and the classifier's input and output
    shapes (the common part of every explainer's ``check``)."""
    x = check_queries(x, domain=domain)
    num_outputs = classifier_io(classifier, tuple(x.shape[1:]))
    target = targets_lib.check_target(target, x.shape[0], num_outputs, kinds)
    return x, target


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
