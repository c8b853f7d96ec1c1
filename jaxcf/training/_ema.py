"""Exponential moving averages of weights (EMA), for diffusion models and GAN generators.

After each optimiser step ``t`` the average becomes

    ema_t = decay * ema_{t-1} + (1 - decay) * theta_t,       ema_0 = theta_0 (a copy),

so ``ema_t`` weighs the weights of ``k`` steps ago by ``(1 - decay) * decay**k``. Both functions
are pure over pytrees (nested dicts, ``nnx.State``) or update an NNX module in place, and are
meant to run inside the task's jitted train step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def ema_update(average: Any, new: Any, decay: float | jax.Array) -> Any:
    """One EMA step over matching pytrees: ``decay * average + (1 - decay) * new``.

    Args:
      average: the running average (a pytree of arrays, e.g. an ``nnx.State``).
      new: the current values, same structure, shapes and dtypes.
      decay: in ``[0, 1]``; a Python float or a traced scalar (e.g. a warm-up schedule).

    Returns:
      The new average, with ``average``'s structure. Floating leaves are averaged in their own
      dtype; other leaves (step counters, integer buffers) take ``new``'s value.
    """

    def one(a: jax.Array, b: jax.Array) -> jax.Array:
        if not jnp.issubdtype(jnp.result_type(a), jnp.inexact):
            return b
        d = jnp.asarray(decay, dtype=jnp.result_type(a))
        return d * a + (1 - d) * b

    return jax.tree.map(one, average, new)


def update_ema(
    ema_module: nnx.Module,
    module: nnx.Module,
    decay: float | jax.Array,
    *,
    wrt: Any = nnx.Param,
) -> None:
    """Moves the ``wrt`` variables of ``ema_module`` one EMA step towards ``module``'s.

    ``ema_module`` is typically ``nnx.clone(module)`` taken before training. Variables outside
    ``wrt`` are left alone: pass ``wrt=nnx.Not(nnx.RngState)`` to also average batch statistics
    and other buffers.
    """
    average = nnx.state(ema_module, wrt)
    nnx.update(ema_module, ema_update(average, nnx.state(module, wrt), decay))
