"""Forward noising, the noise-prediction loss, DDPM and DDIM steps, and DDIM inversion.

Conventions. Images are in the model's units (``[-1, 1]``), ``float32 [B, H, W, C]``. A
*denoiser* is a function ``eps = denoise(x_t, t)`` with ``t`` the ``int32 [B]`` original step
numbers (:attr:`NoiseSchedule.timesteps`), e.g. a closure over a pure UNet. Steps are indexed
by ``i`` into a (possibly respaced) schedule; the states of a sampler are ``x_{S-1}, ...,
x_0`` (noisy, ``abar_i``) and finally the clean image ("``x_{-1}``", ``abar = 1``). Randomness
comes from one PRNG key per query, folded with the step index, so a query's sample never
depends on the rest of its batch. Every loop is a ``lax.scan`` over steps: one compiled
program, batched and shardable like any jitted function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.diffusion._schedule import NoiseSchedule

Array = jax.Array
Denoiser = Callable[[Array, Array], Array]
"""``eps = denoise(x_t [B, ...], t int32 [B])``."""

Method = Literal["ddpm", "ddim"]

__all__ = [
    "Denoiser",
    "ddim_invert",
    "ddim_step",
    "ddpm_step",
    "denoise_step",
    "epsilon_loss",
    "inversion_end",
    "predict_x0",
    "q_sample",
    "sample",
    "step_noise",
]


def _bcast(v: Array, x: Array) -> Array:
    """``[B]`` -> ``[B, 1, ..., 1]`` against ``x``."""
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def _at(a: Array, i: Array, x: Array) -> Array:
    """Per-query schedule values ``a[i]`` shaped against ``x``; ``i`` is an int or ``[B]``."""
    i = jnp.broadcast_to(jnp.asarray(i, jnp.int32), x.shape[:1])
    return _bcast(a[i], x)


def q_sample(schedule: NoiseSchedule, x0: Array, i: Array, noise: Array) -> Array:
    """``x_i = sqrt(abar_i) x0 + sqrt(1 - abar_i) noise``: ``x0`` noised to step ``i``."""
    abar = _at(schedule.alphas_cumprod, i, x0)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def predict_x0(
    schedule: NoiseSchedule, x_t: Array, i: Array, eps: Array, clip: bool = True
) -> Array:
    """The one-step clean estimate ``x0_hat = (x_t - sqrt(1 - abar_i) eps) / sqrt(abar_i)``,
    clipped to ``[-1, 1]`` unless ``clip`` is False."""
    abar = _at(schedule.alphas_cumprod, i, x_t)
    x0 = (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)
    return jnp.clip(x0, -1.0, 1.0) if clip else x0


def epsilon_loss(
    denoise: Denoiser,
    schedule: NoiseSchedule,
    x0: Array,
    key: Array,
    kind: Literal["mse", "l1"] = "mse",
) -> Array:
    """The per-example noise-prediction loss ``[B]`` at uniformly drawn steps (Ho et al.'s
    simple loss; ``"l1"`` is the diffusion autoencoder's), averaged over pixels."""
    k_t, k_noise = jax.random.split(key)
    i = jax.random.randint(k_t, x0.shape[:1], 0, schedule.num_steps)
    noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
    x_t = q_sample(schedule, x0, i, noise)
    err = denoise(x_t, schedule.timesteps[i]) - noise
    err = err * err if kind == "mse" else jnp.abs(err)
    return jnp.mean(err.reshape(err.shape[0], -1), axis=1)


def step_noise(keys: Array, i: Array, like: Array) -> Array:
    """Standard normal noise for step ``i`` of each query, ``[B, ...]`` like ``like``: drawn
    from ``fold_in(keys[b], i)``, so a query's noise depends only on its key."""
    i = jnp.asarray(i, jnp.uint32)
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), like.shape[1:]))(keys)


def ddpm_step(
    schedule: NoiseSchedule, x_t: Array, i: Array, eps: Array, noise: Array, clip: bool = True
) -> Array:
    """One ancestral step ``x_i -> x_{i-1}``: the posterior ``q(x_{i-1} | x_i, x0_hat)`` mean
    plus ``sqrt(beta_tilde_i)`` noise (no noise at ``i = 0``)."""
    beta = _at(schedule.betas, i, x_t)
    abar = _at(schedule.alphas_cumprod, i, x_t)
    abar_prev = _at(schedule.alphas_cumprod_prev, i, x_t)
    x0 = predict_x0(schedule, x_t, i, eps, clip)
    coef0 = beta * jnp.sqrt(abar_prev) / (1.0 - abar)
    coef_t = (1.0 - abar_prev) * jnp.sqrt(1.0 - beta) / (1.0 - abar)
    var = beta * (1.0 - abar_prev) / (1.0 - abar)
    return coef0 * x0 + coef_t * x_t + jnp.sqrt(var) * noise


def ddim_step(
    schedule: NoiseSchedule,
    x_t: Array,
    i: Array,
    eps: Array,
    noise: Array,
    eta: float = 0.0,
    clip: bool = True,
) -> Array:
    """One DDIM step ``x_i -> x_{i-1}`` (Song et al. 2021, eq. 12): deterministic at
    ``eta = 0``, DDPM-like noise at ``eta = 1``. With ``clip`` the noise direction is
    recomputed from the clipped ``x0_hat`` so the step stays consistent."""
    abar = _at(schedule.alphas_cumprod, i, x_t)
    abar_prev = _at(schedule.alphas_cumprod_prev, i, x_t)
    x0 = predict_x0(schedule, x_t, i, eps, clip)
    if clip:
        eps = (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
    sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
    direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma * sigma, 0.0)) * eps
    return jnp.sqrt(abar_prev) * x0 + direction + sigma * noise


def denoise_step(
    schedule: NoiseSchedule,
    x_t: Array,
    i: Array,
    eps: Array,
    noise: Array,
    method: Method,
    eta: float = 0.0,
    clip: bool = True,
) -> Array:
    """:func:`ddpm_step` or :func:`ddim_step` as ``method`` says."""
    if method == "ddpm":
        return ddpm_step(schedule, x_t, i, eps, noise, clip)
    return ddim_step(schedule, x_t, i, eps, noise, eta, clip)


def sample(
    denoise: Denoiser,
    schedule: NoiseSchedule,
    x_start: Array,
    keys: Array,
    *,
    start: int | None = None,
    method: Method = "ddim",
    eta: float = 0.0,
    clip: bool = True,
) -> Array:
    """Runs the reverse process from ``x_start`` at step index ``start`` (default the last,
    ``S - 1``: pure noise) down to a clean image.

    Args:
      denoise: the noise predictor.
      schedule: the (respaced) schedule to step along.
      x_start: ``[B, ...]`` the state at ``start``.
      keys: ``[B]`` per-query keys (the step noise of DDPM / DDIM with ``eta > 0``).
      start: static step index in ``[0, S)`` to start from.
      method: ``"ddpm"`` (ancestral) or ``"ddim"``.
      eta: DDIM's noise level.
      clip: clip each ``x0_hat`` to ``[-1, 1]``.

    Returns:
      ``[B, ...]`` the clean samples.
    """
    start = schedule.num_steps - 1 if start is None else start
    if not 0 <= start < schedule.num_steps:
        raise ValueError(f"start must be a step index in [0, {schedule.num_steps}), got {start}")

    def body(x, i):
        eps = denoise(x, jnp.broadcast_to(schedule.timesteps[i], x.shape[:1]))
        noise = step_noise(keys, i, x) if (method == "ddpm" or eta > 0) else jnp.zeros_like(x)
        return denoise_step(schedule, x, i, eps, noise, method, eta, clip), None

    x, _ = jax.lax.scan(body, x_start, jnp.arange(start, -1, -1, dtype=jnp.int32))
    return x


def inversion_end(schedule: NoiseSchedule, min_abar: float = 1e-3) -> int:
    """The last step index whose ``abar`` is at least ``min_abar`` (see :func:`ddim_invert`)."""
    ok = np.nonzero(np.asarray(schedule.alphas_cumprod) >= min_abar)[0]
    return int(ok[-1]) if len(ok) else 0


def ddim_invert(
    denoise: Denoiser, schedule: NoiseSchedule, x0: Array, *, end: int | None = None
) -> Array:
    """Deterministic DDIM inversion: the state at step index ``end`` from which :func:`sample`
    with ``method="ddim", eta=0, clip=False`` (and ``start=end``) decodes approximately back to
    ``x0``.

    Each step runs the DDIM update backwards, ``x_i = sqrt(abar_i) x0_hat + sqrt(1 - abar_i)
    eps``, with the noise predicted at the previous, less noisy state (the usual first-order
    approximation; exact as the steps get small). Unclipped, so that decoding can retrace it.

    ``end`` defaults to :func:`inversion_end`: the last step with ``abar >= 1e-3``. Beyond it
    the clean estimate divides by ``sqrt(abar) < 0.03`` and the first decoding step amplifies
    the approximation's error: the cosine schedule's last step has ``abar ~ 1e-7``, and a small
    MNIST model inverted to it decoded to garbage (mean error ~90 per pixel in [0, 1]) where
    stopping a few steps earlier gave 0.003.
    """
    end = inversion_end(schedule) if end is None else end
    if not 0 <= end < schedule.num_steps:
        raise ValueError(f"end must be a step index in [0, {schedule.num_steps}), got {end}")

    def body(x, i):
        prev = jnp.maximum(i - 1, 0)
        # The state before step i has abar_{i-1} (1: the clean image, at i = 0).
        abar_cur = _at(schedule.alphas_cumprod_prev, i, x)
        eps = denoise(x, jnp.broadcast_to(schedule.timesteps[prev], x.shape[:1]))
        x0 = (x - jnp.sqrt(1.0 - abar_cur) * eps) / jnp.sqrt(abar_cur)
        abar = _at(schedule.alphas_cumprod, i, x)
        return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * eps, None

    x, _ = jax.lax.scan(body, x0, jnp.arange(0, end + 1, dtype=jnp.int32))
    return x
