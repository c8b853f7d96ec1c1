"""Wachter et al.'s input-space counterfactual search, a dense baseline.

Minimise ``loss(f(x'), t) + l1_weight * |x' - x|_1`` over ``x'`` (clipped to the domain when
there is one) by gradient steps (Adam or plain gradient descent, per query) until the target is
reached; ``loss`` is the target loss of :mod:`jaxcf.targets` (cross-entropy for classes and
distributions, squared error for regression values). Every input element may move, so expect
large L0 next to DeDUCE and JSMA.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxcf import validation
from jaxcf.classifier import as_pure
from jaxcf.explainer import CFResult
from jaxcf.methods.search import SearchBase, solve_jit
from jaxcf.targets import target_loss

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class WachterConfig:
    """Attributes:
    optimizer: ``"adam"`` or ``"sgd"`` (plain gradient steps).
    learning_rate: step size (input units).
    l1_weight: weight of the L1 distance to the query (summed over input elements).
    threshold: target probability at which a query with a class target stops.
    tolerance: score at or below which a soft or regression target counts as reached.
    max_iter: updates per query at most.
    domain: box ``(lo, hi)`` the iterate is clipped to; ``None`` takes the classifier's
      (unbounded if it declares none).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 0.01
    l1_weight: float = 0.005
    threshold: float = 0.5
    tolerance: float = 0.1
    max_iter: int = 500
    domain: tuple[float, float] | None = None

    def __post_init__(self):
        validation.one_of(self, "optimizer", ("adam", "sgd"))
        validation.positive(self, "learning_rate", "tolerance")
        validation.non_negative(self, "l1_weight")
        validation.probability(self, "threshold")
        validation.at_least(self, 1, "max_iter")
        validation.box(self, "domain")


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

    def init(self, x: Array, target: Array, key: Array) -> WachterState:
        # vmap gives each query its own optimiser state (Adam's step count included), so a
        # query's trajectory does not depend on when it entered a batch.
        return WachterState(x=x, x0=x, opt_state=jax.vmap(self._tx().init)(x))

    def loss(self, x: Array, x0: Array, target: Array) -> tuple[Array, Array]:
        logits = self.classifier.logits(x)
        # |x - x0| written so that its gradient is sign(x - x0), 0 at x = x0 (jnp.abs has
        # gradient 1 there, which would push every untouched element down).
        d = x - x0
        l1 = jnp.sum((jax.lax.stop_gradient(jnp.sign(d)) * d).reshape(x.shape[0], -1), axis=-1)
        return jnp.sum(target_loss(logits, target) + self.config.l1_weight * l1), logits

    def step(self, s: WachterState, target: Array) -> tuple[Array, Array, WachterState]:
        grad, logits = jax.grad(self.loss, has_aux=True)(s.x, s.x0, target)
        updates, opt_state = jax.vmap(self._tx().update)(grad, s.opt_state)
        x = self.clip(s.x + updates)
        return *self.score(logits, target), WachterState(x=x, x0=s.x0, opt_state=opt_state)


def wachter_search(classifier: Any, config: WachterConfig) -> WachterSearch:
    """The jittable Wachter search for a classifier (no input checks)."""
    return WachterSearch(classifier=as_pure(classifier), config=config)


def wachter(
    classifier: Any, x: Any, target: Any, config: WachterConfig = WachterConfig()
) -> CFResult:
    """Counterfactuals for a batch by Wachter's L1-regularised gradient search.

    Args:
      classifier: offers ``logits(x) -> [B, C]``.
      x: ``[B, ...]`` float queries (images, series or rows) in the classifier's domain.
      target: ``[B]`` int classes, ``[B, C]`` class distributions or ``[B]`` float regression
        values.
      config: hyper-parameters (static).
    """
    search = wachter_search(classifier, config)
    x, target = search.check(x, target)
    return solve_jit(search, x, target)
