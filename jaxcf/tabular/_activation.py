"""Generator outputs as valid encodings, in pure JAX: :func:`activate` maps a generator's
unconstrained outputs to valid encodings inside jitted code (tanh for alphas; Gumbel-softmax or a
hard argmax for each block), driven by the static :class:`~jaxcf.tabular.Layout` of blocks;
:func:`numeric_value` reads a numeric column's value from an encoding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcf.tabular._schema import Block, Layout

Array = jax.Array


def activate(
    layout: Layout,
    raw: Array,
    key: Array | None = None,
    *,
    temperature: float = 0.5,
    straight_through: bool = False,
) -> Array:
    """Maps unconstrained generator outputs ``[B, D]`` to valid encodings ``[B, D]``.

    ``alpha`` entries go through ``tanh`` (the in-mode range ``(-1, 1)``). Every one-hot block
    (a categorical column, a numeric column's modes):

    * ``key`` given (training): Gumbel-softmax at ``temperature``, soft and differentiable,
      each block summing to 1; with ``straight_through`` the forward value is the hard
      one-hot of the soft sample and the gradient the soft one's.
    * ``key`` None (explaining): the hard one-hot of the block's argmax.

    Pure and jittable; ``layout`` is static (hashable), so pass it through a closure or
    ``static_argnums``.
    """
    if raw.ndim != 2 or raw.shape[1] != layout.dim:
        raise ValueError(f"raw outputs must be [B, {layout.dim}], got {list(raw.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    # One Gumbel draw for the whole row (entries under alphas unused): a single random op
    # compiles once, where a draw per block of a different width compiled one kernel each.
    noisy = None if key is None else raw + jax.random.gumbel(key, raw.shape, raw.dtype)
    pieces = []
    for block, (lo, hi) in zip(layout.blocks, layout.groups(), strict=True):
        if block.kind == "numeric":
            pieces.append(jnp.tanh(raw[:, block.scalar : block.scalar + 1]))
        if noisy is None:
            pieces.append(_hard(raw[:, lo:hi]))
            continue
        soft = jax.nn.softmax(noisy[:, lo:hi] / temperature, axis=1)
        if straight_through:
            soft = soft + jax.lax.stop_gradient(_hard(soft) - soft)
        pieces.append(soft)
    return jnp.concatenate(pieces, axis=1)


def _hard(logits: Array) -> Array:
    """The one-hot of each row's argmax, ``[B, m]``."""
    return jax.nn.one_hot(jnp.argmax(logits, axis=1), logits.shape[1], dtype=logits.dtype)


def numeric_value(block: Block, enc: Array) -> Array:
    """The value ``mu_k + 4 sigma_k alpha`` of a numeric block, ``k`` the argmax mode, before
    :meth:`TabularTransform.decode`'s clipping and rounding; ``float32 [B]`` (pure JAX).

    Computed in float32 whatever ``enc``'s dtype: in bfloat16 a capital gain near 10^5 would
    be off by hundreds, and callers compare it with what ``decode`` reads."""
    if block.kind != "numeric":
        raise ValueError(f"column {block.name!r} is not numeric")
    k = jnp.argmax(enc[:, block.modes[0] : block.modes[1]], axis=1)
    means = jnp.asarray(block.means, jnp.float32)[k]
    stds = jnp.asarray(block.stds, jnp.float32)[k]
    return means + 4.0 * stds * enc[:, block.scalar].astype(jnp.float32)
