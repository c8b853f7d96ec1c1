"""JSMA-style pixel search, the DeDUCE paper's baseline (after Papernot et al.).

Per query and iteration: gradient of ``CE(f(x), t)``; choose the ``pixels`` pixels with the
largest |gradient| among those not frozen; ``x -= step * sign(g)`` there, clip to [0, 1]; a chosen
pixel that the update brought to 0 or 1 is frozen from then on (untouched pixels at 0 or 1 stay
selectable). No momentum and no cap on changes. A query stops when its target softmax reaches
``threshold``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.classifier import as_pure
from jaxcf.methods.pixels import select_pixels, target_log_softmax
from jaxcf.methods.search import CFResult, SearchBase, solve_jit

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class JSMAConfig:
    """JSMA hyper-parameters (the DeDUCE paper's settings by default)."""

    step: float = 0.2
    pixels: int = 1
    threshold: float = 0.5
    max_iter: int = 700


class JSMAState(struct.PyTreeNode):
    x: Array  # [B, H, W, C]
    frozen: Array  # [B, H*W*C] bool


class JSMASearch(SearchBase):
    """JSMA as an :class:`~jaxcf.methods.search.IterativeSearch` (a pytree)."""

    classifier: Any
    config: JSMAConfig = struct.field(pytree_node=False)

    def init(self, x: Array, target: Array) -> JSMAState:
        return JSMAState(x=x, frozen=jnp.zeros((x.shape[0], x[0].size), bool))

    def loss(self, x: Array, target: Array) -> tuple[Array, Array]:
        log_pt = target_log_softmax(self.classifier.logits(x), target)
        return -jnp.sum(log_pt), jnp.exp(log_pt)

    def step(self, s: JSMAState, target: Array) -> tuple[Array, JSMAState]:
        cfg = self.config
        grad, prob = jax.grad(self.loss, has_aux=True)(s.x, target)
        g = jnp.where(s.frozen, 0.0, grad.reshape(s.frozen.shape))
        chosen = select_pixels(jnp.abs(g), cfg.pixels)
        flat = s.x.reshape(g.shape)
        flat = jnp.where(chosen, jnp.clip(flat - cfg.step * jnp.sign(g), 0.0, 1.0), flat)
        frozen = s.frozen | (chosen & ((flat == 0.0) | (flat == 1.0)))
        return prob, JSMAState(x=flat.reshape(s.x.shape), frozen=frozen)


def jsma_search(classifier: Any, config: JSMAConfig) -> JSMASearch:
    """The jittable JSMA search for a classifier (no input checks)."""
    return JSMASearch(classifier=as_pure(classifier), config=config)


def jsma(classifier: Any, x: Any, target: Any, config: JSMAConfig = JSMAConfig()) -> CFResult:
    """Counterfactuals for a batch of images by JSMA-style pixel search.

    Args:
      classifier: offers ``logits(x) -> [B, C]``.
      x: ``[B, H, W, C]`` float images in [0, 1].
      target: ``[B]`` int target classes (or one int for the whole batch).
      config: hyper-parameters (static).
    """
    search = jsma_search(classifier, config)
    x, target = search.check(x, target)
    return solve_jit(search, x, target)
