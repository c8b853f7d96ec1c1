"""Pixel-wise helpers shared by the input-space pixel searches (DeDUCE, JSMA)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def select_pixels(score: Array, m: int) -> Array:
    """Boolean mask ``[B, D]`` of each row's ``m`` largest entries of ``score [B, D]``.

    Ties go to the lower index (``lax.top_k`` is stable), a deterministic stand-in for the
    published code's "all pixels tied for the maximum" rule; exact float ties are rare.
    """
    _, idx = jax.lax.top_k(score, m)
    rows = jnp.arange(score.shape[0])[:, None]
    return jnp.zeros(score.shape, bool).at[rows, idx].set(True)


def target_log_softmax(logits: Array, target: Array) -> Array:
    """``log p_t`` per query: ``[B, C], [B] -> [B]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, target[:, None], axis=-1)[:, 0]


def safe_abs(v: Array, floor: float = 1e-12) -> Array:
    """``|v|`` bounded away from zero, for normalisers treated as constants."""
    return jnp.maximum(jnp.abs(v), floor)
