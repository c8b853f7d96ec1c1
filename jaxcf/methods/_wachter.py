"""Wachter et al.'s input-space counterfactual search, a dense baseline.

Minimise ``CE(f(x'), t) + l1_weight * |x' - x|_1`` over ``x'`` in [0, 1] by gradient steps (Adam
or plain gradient descent, per query) until the target softmax reaches ``threshold``. Every
pixel may move, so expect large L0 next to DeDUCE and JSMA.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxcf.classifier import as_pure
from jaxcf.methods.pixels import target_log_softmax
from jaxcf.methods.search import CFResult, SearchBase, solve_jit

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class WachterConfig:
    """Attributes:
    optimizer: ``"adam"`` or ``"sgd"`` (plain gradient steps).
    learning_rate: step size (pixel units).
    l1_weight: weight of the L1 distance to the query (summed over pixels).
    threshold: target softmax at which a query stops.
    max_iter: updates per query at most.
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 0.01
    l1_weight: float = 0.005
    threshold: float = 0.5
    max_iter: int = 500


class WachterState(struct.PyTreeNode):
    x: Array  # [B, ...] current iterate
    x0: Array  # [B, ...] the query
    opt_state: Any  # per-query optimiser state (leading batch axis)


class WachterSearch(SearchBase):
    """Wachter's search as an :class:`~jaxcf.methods.search.IterativeSearch`."""

    classifier: Any
    config: WachterConfig = struct.field(pytree_node=False)

    def _tx(self) -> optax.GradientTransformation:
        lr = self.config.learning_rate
        return optax.adam(lr) if self.config.optimizer == "adam" else optax.sgd(lr)

    def init(self, x: Array, target: Array) -> WachterState:
        # vmap gives each query its own optimiser state (Adam's step count included), so a
        # query's trajectory does not depend on when it entered a batch.
        return WachterState(x=x, x0=x, opt_state=jax.vmap(self._tx().init)(x))

    def loss(self, x: Array, x0: Array, target: Array) -> tuple[Array, Array]:
        log_pt = target_log_softmax(self.classifier.logits(x), target)
        # |x - x0| written so that its gradient is sign(x - x0), 0 at x = x0 (jnp.abs has
        # gradient 1 there, which would push every untouched pixel down).
        d = x - x0
        l1 = jnp.sum((jax.lax.stop_gradient(jnp.sign(d)) * d).reshape(x.shape[0], -1), axis=-1)
        return jnp.sum(-log_pt + self.config.l1_weight * l1), jnp.exp(log_pt)

    def step(self, s: WachterState, target: Array) -> tuple[Array, WachterState]:
        grad, prob = jax.grad(self.loss, has_aux=True)(s.x, s.x0, target)
        updates, opt_state = jax.vmap(self._tx().update)(grad, s.opt_state)
        x = jnp.clip(s.x + updates, 0.0, 1.0)
        return prob, WachterState(x=x, x0=s.x0, opt_state=opt_state)


def wachter_search(classifier: Any, config: WachterConfig) -> WachterSearch:
    """The jittable Wachter search for a classifier (no input checks)."""
    return WachterSearch(classifier=as_pure(classifier), config=config)


def wachter(
    classifier: Any, x: Any, target: Any, config: WachterConfig = WachterConfig()
) -> CFResult:
    """Counterfactuals for a batch of images by Wachter's L1-regularised gradient search.

    Args:
      classifier: offers ``logits(x) -> [B, C]``.
      x: ``[B, H, W, C]`` float images in [0, 1].
      target: ``[B]`` int target classes (or one int for the whole batch).
      config: hyper-parameters (static).
    """
    search = wachter_search(classifier, config)
    x, target = search.check(x, target)
    return solve_jit(search, x, target)
