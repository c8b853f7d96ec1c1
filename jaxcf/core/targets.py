"""Targets of every kind: what a counterfactual should make the model output, and how success is
scored.

A target batch is a plain array; its kind follows from its dtype and rank, which are static
under ``jit``, so one method body serves every kind without a flag:

==============  =================  ==========================================================
kind            array              success (``score`` is what :class:`CFResult` reports)
==============  =================  ==========================================================
``"class"``     ``[B]`` integer    ``score`` = softmax probability of the target class;
                                   success when ``score >= threshold``
``"soft"``      ``[B, C]`` float   ``score`` = total variation distance
                (rows sum to 1)    ``0.5 * sum_c |softmax(logits)_c - target_c|`` (in [0, 1]);
                                   success when ``score <= tolerance``
``"regression"``  ``[B]`` float    ``score`` = ``|output - target|`` in the output's units
                                   (the model returns ``[B, 1]``); success when
                                   ``score <= tolerance``
==============  =================  ==========================================================

The differentiable objective a method descends, :func:`target_loss`, is the cross-entropy to the
target class or distribution, or the squared error for regression.

Nothing here casts a target to another kind: a float ``[B]`` array is a regression target even
if its values are whole numbers, and methods that only handle classes reject it with a
``TypeError``.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Kind = Literal["class", "soft", "regression"]
KINDS: tuple[Kind, ...] = ("class", "soft", "regression")

# Rows of a soft target must sum to 1 within this (float32 rounding of user data).
SUM_ATOL = 1e-3


def kind_of(target: Any) -> Kind:
    """The kind of a target batch, from its dtype and rank (see the module docstring).

    Raises:
      TypeError: a dtype that is neither integer nor floating (bool, strings, ...).
      ValueError: a rank that fits no kind.
    """
    dtype, ndim = np.dtype(target.dtype), len(target.shape)
    if dtype == np.bool_ or not (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    ):
        raise TypeError(
            f"target must hold integer class indices [B], class distributions [B, C] or "
            f"regression values [B] (floats), got dtype {dtype}"
        )
    if np.issubdtype(dtype, np.integer):
        if ndim != 1:
            raise ValueError(f"integer (class) targets must be [B], got shape {target.shape}")
        return "class"
    if ndim == 2:
        return "soft"
    if ndim == 1:
        return "regression"
    raise ValueError(
        f"float targets must be [B, C] (class distributions) or [B] (regression values), got "
        f"shape {target.shape}"
    )


def check_target(
    target: Any, batch: int, num_outputs: int, kinds: tuple[Kind, ...] = KINDS
) -> Array:
    """Validates a target batch against a batch size and a model's output width.

    Args:
      target: ``[B]`` int, ``[B, C]`` float or ``[B]`` float; a scalar int (or float) is
        broadcast to the whole batch as a class (or regression) target.
      batch: the number of queries ``B``.
      num_outputs: the model's output width ``C`` (1 for a regressor).
      kinds: the kinds the caller accepts.

    Returns:
      The target as a JAX array: int32 for classes, float32 otherwise.

    Raises:
      TypeError: a dtype that is no kind, or a kind the caller does not accept.
      ValueError: wrong shape, class index out of range, NaN/inf, negative or unnormalised
        distributions, regression target for a model with several outputs.
    """
    if not hasattr(target, "shape") or not hasattr(target, "dtype"):
        target = np.asarray(target)
    if len(target.shape) == 0:
        target = jnp.full((batch,), target)
    kind = kind_of(target)
    if kind not in kinds:
        raise TypeError(
            f"this method takes {' or '.join(kinds)} targets, got a {kind} target "
            f"(dtype {target.dtype}, shape {tuple(target.shape)})"
        )
    if target.shape[0] != batch:
        raise ValueError(
            f"target must have one entry per query (B = {batch}), got shape {tuple(target.shape)}"
        )
    t = np.asarray(jax.device_get(target))
    if kind == "class":
        if t.size and (t.min() < 0 or t.max() >= num_outputs):
            bad = t.min() if t.min() < 0 else t.max()
            raise ValueError(f"target {int(bad)} is outside [0, {num_outputs}) for this model")
        return jnp.asarray(t, jnp.int32)
    if not np.all(np.isfinite(t)):
        raise ValueError("target contains NaN or inf")
    if kind == "soft":
        if t.shape[1] != num_outputs:
            raise ValueError(
                f"soft targets must be [B, {num_outputs}] for this model, got shape {t.shape}"
            )
        if np.any(t < 0) or not np.allclose(t.sum(axis=1), 1.0, atol=SUM_ATOL):
            raise ValueError("soft targets must be distributions: non-negative rows summing to 1")
    elif num_outputs != 1:
        raise ValueError(
            f"regression targets need a model with one output, this one has {num_outputs}"
        )
    return jnp.asarray(t, jnp.float32)


def target_loss(outputs: Array, target: Array) -> Array:
    """Per-query objective to minimise, ``[B, C], target -> [B]`` (float32).

    Cross-entropy ``-log p_t`` (class), ``-sum_c q_c log p_c`` (soft; its gradient equals that of
    ``KL(q || p)``), or ``(output - t)^2`` (regression).
    """
    kind = kind_of(target)
    outputs = outputs.astype(jnp.float32)
    if kind == "regression":
        return jnp.square(outputs[:, 0] - target)
    logp = jax.nn.log_softmax(outputs, axis=-1)
    if kind == "class":
        return -jnp.take_along_axis(logp, target[:, None], axis=-1)[:, 0]
    return -jnp.sum(target * logp, axis=-1)


def target_score(outputs: Array, target: Array) -> Array:
    """Per-query score ``[B]`` (float32): target probability, total variation, or absolute
    error (see the module docstring)."""
    kind = kind_of(target)
    outputs = outputs.astype(jnp.float32)
    if kind == "regression":
        return jnp.abs(outputs[:, 0] - target)
    # exp(log_softmax) rather than softmax: the probability the pixel searches have always
    # compared with their threshold, to the last bit.
    logp = jax.nn.log_softmax(outputs, axis=-1)
    if kind == "class":
        return jnp.exp(jnp.take_along_axis(logp, target[:, None], axis=-1)[:, 0])
    return 0.5 * jnp.sum(jnp.abs(jnp.exp(logp) - target), axis=-1)


def reached(score: Array, target: Array, *, threshold: float, tolerance: float) -> Array:
    """Per-query success ``[B]`` bool for a score of :func:`target_score`."""
    if kind_of(target) == "class":
        return score >= threshold
    return score <= tolerance


def score_outputs(
    outputs: Array, target: Array, *, threshold: float, tolerance: float
) -> tuple[Array, Array]:
    """``(score, success)`` of model outputs ``[B, C]`` for a target batch."""
    score = target_score(outputs, target)
    return score, reached(score, target, threshold=threshold, tolerance=tolerance)


def check_criteria(threshold: float, tolerance: float) -> None:
    """Raises ValueError unless ``threshold`` lies in (0, 1] and ``tolerance`` is positive
    (shared by every method config)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is a probability in (0, 1], got {threshold}")
    if not tolerance > 0.0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
