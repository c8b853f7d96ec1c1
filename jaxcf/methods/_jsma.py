"""JSMA-style pixel search, the DeDUCE paper's baseline (after Papernot et al.).

Per query and iteration: gradient of the target loss (cross-entropy for a class or a class
distribution, squared error for a regression value; see :mod:`jaxcf.core.targets`); choose the
``pixels`` pixels with the largest |gradient| among those not frozen; ``x -= step * sign(g)``
there, clip to the domain ``[lo, hi]``; a chosen pixel that the update brought to ``lo`` or
``hi`` is frozen from then on (untouched pixels at the bounds stay selectable). No momentum and
no cap on changes. A query stops when its target is reached.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.core import CFResult, as_pure, validation
from jaxcf.core.targets import target_loss
from jaxcf.methods._pixels import PixelSearch, select_pixels
from jaxcf.methods._search import solve_jit_eigen

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class JSMAConfig:
    """JSMA hyper-parameters (the DeDUCE paper's settings by default).

    Attributes:
      step: size of the sign step on a chosen pixel (input units).
      pixels: pixels changed per iteration.
      threshold: target probability at which a query with a class target stops.
      tolerance: score at or below which a soft or regression target counts as reached.
      max_iter: updates per query at most.
      domain: box ``(lo, hi)`` the pixels are clipped to; ``None`` takes the classifier's.
    """

    step: float = 0.2
    pixels: int = 1
    threshold: float = 0.5
    tolerance: float = 0.1
    max_iter: int = 700
    domain: tuple[float, float] | None = None

    def __post_init__(self):
        validation.positive(self, "step", "tolerance")
        validation.at_least(self, 1, "pixels", "max_iter")
        validation.probability(self, "threshold")
        validation.box(self, "domain")


class JSMAState(struct.PyTreeNode):
    x: Array  # [B, H, W, C]
    frozen: Array  # [B, H*W*C] bool


class JSMASearch(PixelSearch):
    """JSMA as an :class:`~jaxcf.methods.IterativeSearch` (a pytree)."""

    classifier: Any
    config: JSMAConfig = struct.field(pytree_node=False)

    def init(self, x: Array, target: Array, key: Array) -> JSMAState:
        return JSMAState(x=x, frozen=jnp.zeros((x.shape[0], x[0].size), bool))

    def loss(self, x: Array, target: Array) -> tuple[Array, Array]:
        logits = self.classifier.logits(x)
        return jnp.sum(target_loss(logits, target)), logits

    def step(self, s: JSMAState, target: Array) -> tuple[Array, Array, JSMAState]:
        cfg = self.config
        lo, hi = self.domain
        grad, logits = jax.grad(self.loss, has_aux=True)(s.x, target)
        g = jnp.where(s.frozen, 0.0, grad.reshape(s.frozen.shape))
        chosen = select_pixels(jnp.abs(g), cfg.pixels)
        flat = s.x.reshape(g.shape)
        flat = jnp.where(chosen, self.clip(flat - cfg.step * jnp.sign(g)), flat)
        frozen = s.frozen | (chosen & ((flat == lo) | (flat == hi)))
        return *self.score(logits, target), JSMAState(x=flat.reshape(s.x.shape), frozen=frozen)


def jsma_search(classifier: Any, config: JSMAConfig) -> JSMASearch:
    """The jittable JSMA search for a classifier (no input checks)."""
    return JSMASearch(classifier=as_pure(classifier), config=config)


def jsma(classifier: Any, x: Any, target: Any, config: JSMAConfig = JSMAConfig()) -> CFResult:
    """Counterfactuals for a batch of images by JSMA-style pixel search.

    Args:
      classifier: offers ``logits(x) -> [B, C]``.
      x: ``[B, H, W, C]`` float images in the classifier's domain ([0, 1] for our models).
      target: ``[B]`` int classes, ``[B, C]`` class distributions or ``[B]`` float regression
        values (one int for the whole batch works too).
      config: hyper-parameters (static).
    """
    search = jsma_search(classifier, config)
    x, target = search.check(x, target)
    return solve_jit_eigen(search, x, target)
