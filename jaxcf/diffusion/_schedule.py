"""Noise schedules of denoising diffusion models (DDPM, Ho et al. 2020; cosine: Nichol &
Dhariwal 2021) and their respacing to fewer steps.

The forward process noises a clean ``x_0`` in ``T`` steps,
``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with ``abar_t = prod_{s <= t} (1 - beta_s)``
(steps indexed ``0 .. T-1`` here, as in the public code). A schedule stores the per-step arrays a
sampler needs; it is a pytree, so it passes through ``jit`` as data.

Respacing (Nichol & Dhariwal, section 4) keeps a subset ``S`` of the original steps and
redefines ``beta_i = 1 - abar_{S_i} / abar_{S_{i-1}}`` so that the kept steps have exactly the
original marginals; the network is still called with the *original* step numbers
(:attr:`NoiseSchedule.timesteps`), which is what it was trained on.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxcf.core import validation

Array = jax.Array

__all__ = ["NoiseSchedule", "ScheduleConfig", "cosine_betas", "linear_betas", "make_schedule"]


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Attributes:
    kind: ``"linear"`` (Ho et al.: betas from 1e-4 to 0.02, rescaled by ``1000 / T`` so that
      other lengths keep the same overall noise) or ``"cosine"`` (Nichol & Dhariwal, offset
      ``s = 0.008``, betas capped at 0.999).
    num_steps: ``T``, the training steps of the forward process.
    """

    kind: Literal["linear", "cosine"] = "linear"
    num_steps: int = 1000

    def __post_init__(self):
        validation.one_of(self, "kind", ("linear", "cosine"))
        validation.at_least(self, 2, "num_steps")


def linear_betas(num_steps: int, max_beta: float = 0.999) -> np.ndarray:
    """``float64 [T]``: Ho et al.'s linear betas, 1e-4 .. 0.02 at ``T = 1000``, scaled by
    ``1000 / T`` for other ``T`` and capped at ``max_beta`` as the cosine ones are: from
    ``T <= 20`` the scaled last beta reaches 1, where ``abar`` would hit 0 (an infinite clean
    estimate) or go negative."""
    scale = 1000.0 / num_steps
    betas = np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
    return np.minimum(betas, max_beta)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """``float64 [T]``: betas of ``abar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2)``,
    ``beta_t = min(1 - abar(t + 1) / abar(t), max_beta)``."""

    def abar(t):
        return math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2

    return np.array(
        [min(1 - abar(i + 1) / abar(i), max_beta) for i in range(num_steps)], dtype=np.float64
    )


class NoiseSchedule(struct.PyTreeNode):
    """Per-step arrays of a (possibly respaced) schedule, all ``float32 [S]`` except
    ``timesteps``.

    Attributes:
      betas: ``beta_i`` of the kept steps.
      alphas_cumprod: ``abar_i``.
      alphas_cumprod_prev: ``abar_{i-1}`` (1 for the first step).
      timesteps: ``int32 [S]``: the original step number of each kept step, what the network
        is called with.
      num_train_steps: ``T`` of the schedule the network was trained on (static).
    """

    betas: Array
    alphas_cumprod: Array
    alphas_cumprod_prev: Array
    timesteps: Array
    num_train_steps: int = struct.field(pytree_node=False)

    @property
    def num_steps(self) -> int:
        """``S``, the steps a sampler on this schedule takes."""
        return int(self.betas.shape[0])

    def respace(self, num_steps: int) -> NoiseSchedule:
        """The schedule keeping ``num_steps`` evenly spaced steps of this one (the last step is
        always kept; ``num_steps == S`` returns the schedule unchanged).

        Raises:
          ValueError: ``num_steps`` outside ``[1, S]``.
        """
        s = self.num_steps
        if not isinstance(num_steps, int) or not 1 <= num_steps <= s:
            raise ValueError(f"num_steps must be an integer in [1, {s}], got {num_steps!r}")
        if num_steps == s:
            return self
        # Evenly spaced, ending on the last step: e.g. 1000 -> 50 keeps 19, 39, ..., 999.
        keep = np.round(np.linspace(s - 1, 0, num_steps, endpoint=False)[::-1]).astype(np.int64)
        keep = np.unique(keep)
        abar = np.asarray(self.alphas_cumprod, np.float64)[keep]
        return _from_abar(abar, np.asarray(self.timesteps)[keep], self.num_train_steps)

    def index_of(self, step: int) -> int:
        """Index ``i`` of the kept step nearest to original step ``step`` (e.g. a start step
        ``t0`` given in the training schedule's units)."""
        return int(np.argmin(np.abs(np.asarray(self.timesteps) - step)))


def _from_abar(abar: np.ndarray, timesteps: np.ndarray, num_train_steps: int) -> NoiseSchedule:
    prev = np.concatenate([[1.0], abar[:-1]])
    betas = 1.0 - abar / prev
    return NoiseSchedule(
        betas=jnp.asarray(betas, jnp.float32),
        alphas_cumprod=jnp.asarray(abar, jnp.float32),
        alphas_cumprod_prev=jnp.asarray(prev, jnp.float32),
        timesteps=jnp.asarray(timesteps, jnp.int32),
        num_train_steps=num_train_steps,
    )


def make_schedule(config: ScheduleConfig) -> NoiseSchedule:
    """The full ``T``-step schedule a config describes (computed in float64, stored float32)."""
    betas = (
        linear_betas(config.num_steps)
        if config.kind == "linear"
        else cosine_betas(config.num_steps)
    )
    abar = np.cumprod(1.0 - betas)
    return _from_abar(abar, np.arange(config.num_steps), config.num_steps)
