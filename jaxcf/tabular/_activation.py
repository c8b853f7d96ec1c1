"""Valid encodings in pure JAX, driven by the static :class:`~jaxcf.tabular.Layout` of blocks:
:func:`activate` maps a generator's unconstrained outputs to valid encodings inside jitted code
(tanh for alphas; Gumbel-softmax or a hard argmax for each block); :func:`project` snaps any
encoding (a search's iterate) to the encoding of the row it decodes to, and :class:`Projection`
is that map as a hashable callable a search can hold; :func:`numeric_value` reads a numeric
column's value from an encoding.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.tabular._mixture import log_joint
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


def project(layout: Layout, enc: Array) -> Array:
    """Encodings ``[B, D]`` snapped to the encodings of the rows they decode to: what
    :meth:`TabularTransform.decode` then :meth:`TabularTransform.encode` give, in pure JAX.

    Every categorical block becomes the one-hot of its argmax. A numeric column's value (see
    :func:`numeric_value`) is clipped to the training range, rounded for integer columns, and
    encoded again: its most probable mode (mixture weight times density, as encoding picks it)
    and ``alpha`` in that mode. Computed in float32 (decoding runs in float64, so a value
    within float32 rounding of a rounding boundary may land one unit apart), returned in
    ``enc``'s dtype. Not meant to be differentiated (argmaxes have zero gradient).
    """
    if enc.ndim != 2 or enc.shape[1] != layout.dim:
        raise ValueError(f"encodings must be [B, {layout.dim}], got {list(enc.shape)}")
    pieces = []
    for block in layout.blocks:
        if block.kind == "categorical":
            pieces.append(_hard(enc[:, block.start : block.stop]))
            continue
        v = jnp.clip(numeric_value(block, enc), block.low, block.high)
        if block.integer:
            v = jnp.round(v)  # half to even, as np.rint in decode
        means, stds = (np.asarray(a, np.float32) for a in (block.means, block.stds))
        weights = np.asarray(block.weights, np.float32)
        k = jnp.argmax(log_joint(v, weights, means, stds), axis=1)  # encode's choice of mode
        alpha = (v - jnp.asarray(means)[k]) / (4.0 * jnp.asarray(stds)[k])
        pieces.append(alpha[:, None])
        pieces.append(jax.nn.one_hot(k, len(block.means), dtype=jnp.float32))
    return jnp.concatenate([p.astype(enc.dtype) for p in pieces], axis=1)


@dataclasses.dataclass(frozen=True)
class Projection:
    """:func:`project` with a fixed layout, as a callable ``enc [B, D] -> [B, D]`` that hashes
    by value (a search keeps it as a static field: equal layouts share a compiled program).
    ``TabularTransform.projection()`` builds one."""

    layout: Layout

    def __call__(self, enc: Array) -> Array:
        return project(self.layout, enc)
