"""Wachter et al.'s input-space counterfactual search, a dense baseline.

Minimise ``loss(f(x'), t) + lam * |x' - x|_1`` over ``x'`` (clipped to the domain when there is
one) by gradient steps (Adam or plain gradient descent, per query); ``loss`` is the target loss
of :mod:`jaxcf.core.targets` (cross-entropy for classes and distributions, squared error for
regression values). Every input element may move, so expect large L0 next to DeDUCE and JSMA.

Two schedules:

* ``rounds=0`` (default): ``lam`` is ``l1_weight`` and the query stops at the first iterate that
  reaches its target -- the cheapest valid counterfactual, lying just past the decision
  boundary.
* ``rounds=R > 0``: Wachter et al.'s search over ``lam``, in the form per-instance libraries run
  it (alibi's ``CounterFactual``): ``R`` rounds of at most ``max_iter`` steps each, a round
  ending early after ``patience`` consecutive iterates that all reach the target or all miss
  it. Every iterate that reaches the target is a candidate; the query returns the candidate
  closest to it in L1. Between rounds ``lam`` is bisected: a round with at least ``min_found``
  candidates raises its lower bound to ``lam`` (more weight on distance; ``lam * 10`` while no
  upper bound is known), any other round lowers the upper bound to ``lam`` (``lam / 10`` while
  no lower bound is known). Each round continues from the last iterate with a fresh optimiser
  state. Unlike alibi there is no initial sweep over orders of magnitude of ``lam``: the search
  starts at ``l1_weight``. A query succeeds if any iterate reached the target. With a bfloat16
  classifier a candidate is kept only if the float32 classifier confirms it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxcf.core import CFResult, as_pure, tree_where, validation
from jaxcf.core.targets import target_loss
from jaxcf.methods._search import SearchBase, solve_jit

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class WachterConfig:
    """Attributes:
    optimizer: ``"adam"`` or ``"sgd"`` (plain gradient steps).
    learning_rate: step size (input units).
    l1_weight: weight of the L1 distance to the query (summed over input elements).
    threshold: target probability at which a query with a class target stops.
    tolerance: score at or below which a soft or regression target counts as reached.
    max_iter: updates per query at most (with ``rounds > 0``: per round).
    rounds: rounds of the search over ``lam``; 0 stops at the first valid iterate.
    patience: with ``rounds > 0``, consecutive valid (or invalid) iterates that end a round
      (alibi's ``early_stop``).
    min_found: with ``rounds > 0``, valid iterates a round needs for ``lam`` to go up.
    domain: box ``(lo, hi)`` the iterate is clipped to; ``None`` takes the classifier's
      (unbounded if it declares none).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 0.01
    l1_weight: float = 0.005
    threshold: float = 0.5
    tolerance: float = 0.1
    max_iter: int = 500
    rounds: int = 0
    patience: int = 50
    min_found: int = 5
    domain: tuple[float, float] | None = None

    def __post_init__(self):
        validation.one_of(self, "optimizer", ("adam", "sgd"))
        validation.positive(self, "learning_rate", "tolerance")
        validation.non_negative(self, "l1_weight")
        validation.probability(self, "threshold")
        validation.at_least(self, 1, "max_iter", "patience", "min_found")
        validation.at_least(self, 0, "rounds")
        validation.box(self, "domain")


class WachterState(struct.PyTreeNode):
    x: Array  # [B, ...] current iterate
    x0: Array  # [B, ...] the query
    opt_state: Any  # per-query optimiser state (leading batch axis)


class WachterSearch(SearchBase):
    """Wachter's search as an :class:`~jaxcf.methods.IterativeSearch`."""

    classifier: Any
    config: WachterConfig = struct.field(pytree_node=False)

    def _tx(self) -> optax.GradientTransformation:
        lr = self.config.learning_rate
        return optax.adam(lr) if self.config.optimizer == "adam" else optax.sgd(lr)

    def init(self, x: Array, target: Array, key: Array) -> WachterState:
        # vmap gives each query its own optimiser state (Adam's step count included), so a
        # query's trajectory does not depend on when it entered a batch.
        return WachterState(x=x, x0=x, opt_state=jax.vmap(self._tx().init)(x))

    def target_grad(self, x: Array, target: Array) -> tuple[Array, Array]:
        """Gradient of the summed target loss at ``x`` and the logits there."""

        def loss(x):
            logits = self.classifier.logits(x)
            return jnp.sum(target_loss(logits, target)), logits

        return jax.grad(loss, has_aux=True)(x)

    def move(self, x: Array, x0: Array, grad: Array, lam: Array | float, opt_state: Any):
        """One optimiser step on ``loss + lam * |x - x0|_1``; ``lam`` scalar or ``[B]``."""
        # The L1 term's gradient is sign(x - x0), taken as 0 at x = x0 (jnp.abs has gradient 1
        # there, which would push every untouched element down).
        lam = jnp.reshape(jnp.asarray(lam, x.dtype), (-1,) + (1,) * (x.ndim - 1))
        grad = grad + lam * jnp.sign(x - x0)
        updates, opt_state = jax.vmap(self._tx().update)(grad, opt_state)
        return self.clip(x + updates), opt_state

    def step(self, s: WachterState, target: Array) -> tuple[Array, Array, WachterState]:
        grad, logits = self.target_grad(s.x, target)
        x, opt_state = self.move(s.x, s.x0, grad, self.config.l1_weight, s.opt_state)
        return *self.score(logits, target), WachterState(x=x, x0=s.x0, opt_state=opt_state)


class WachterLambdaState(struct.PyTreeNode):
    x: Array  # [B, ...] current iterate
    x0: Array  # [B, ...] the query
    opt_state: Any  # per-query optimiser state, fresh each round
    lam: Array  # [B] weight of the L1 term this round
    lower: Array  # [B] largest lam of a round with enough candidates (0: none yet)
    upper: Array  # [B] smallest lam of a round without (inf: none yet)
    round: Array  # [B] int32, rounds finished
    checks: Array  # [B] int32, iterates checked this round
    found: Array  # [B] int32, candidates this round
    run_valid: Array  # [B] int32, consecutive valid iterates (ends the round at patience)
    run_invalid: Array  # [B] int32, consecutive invalid iterates
    best_x: Array  # [B, ...] closest candidate so far
    best_dist: Array  # [B] its L1 distance to the query (inf: none yet)
    best_score: Array  # [B] its score


class WachterLambdaSearch(WachterSearch):
    """Wachter's search over the distance weight ``lam`` (``config.rounds > 0``); see the
    module docstring for the schedule. ``max_iter`` is the total budget, ``rounds`` rounds of
    ``config.max_iter``."""

    @property
    def max_iter(self) -> int:
        return self.config.rounds * self.config.max_iter

    def init(self, x: Array, target: Array, key: Array) -> WachterLambdaState:
        b = x.shape[0]
        zeros = jnp.zeros(b, jnp.int32)
        return WachterLambdaState(
            x=x,
            x0=x,
            opt_state=jax.vmap(self._tx().init)(x),
            lam=jnp.full(b, self.config.l1_weight, jnp.float32),
            lower=jnp.zeros(b, jnp.float32),
            upper=jnp.full(b, jnp.inf, jnp.float32),
            round=zeros,
            checks=zeros,
            found=zeros,
            run_valid=zeros,
            run_invalid=zeros,
            best_x=x,
            best_dist=jnp.full(b, jnp.inf, jnp.float32),
            best_score=jnp.zeros(b, jnp.float32),
        )

    def step(self, s: WachterLambdaState, target: Array) -> tuple[Array, Array, WachterLambdaState]:
        cfg = self.config
        grad, logits = self.target_grad(s.x, target)
        score, valid = self.score(logits, target)
        score = score.astype(jnp.float32)
        over = s.round >= cfg.rounds  # the schedule has ended: report, change nothing
        has_best = jnp.isfinite(s.best_dist)
        reported = jnp.where(over & has_best, s.best_score, score)
        valid = valid & ~over

        # Record the iterate: the closest valid one is the candidate kept. Under a bfloat16
        # classifier, the float32 one must confirm a candidate before it replaces the kept one
        # (the round's counts stay with the bfloat16 verdicts that steer the search).
        flat = jnp.abs(s.x - s.x0).reshape(s.x.shape[0], -1)
        dist = jnp.sum(flat, axis=-1).astype(jnp.float32)
        better, kept_score = self.confirm(
            lambda x: x, s.x, target, valid & (dist < s.best_dist), score
        )
        best_x = tree_where(better, s.x, s.best_x)
        best_dist = jnp.where(better, dist, s.best_dist)
        best_score = jnp.where(better, kept_score, s.best_score)
        found = s.found + valid
        run_valid = jnp.where(valid, s.run_valid + 1, 0)
        run_invalid = jnp.where(valid, 0, s.run_invalid + 1)
        checks = s.checks + 1

        # End of a round: bisect lam, reset the round's counters and the optimiser.
        ends = ~over & (
            (checks >= cfg.max_iter) | (run_valid >= cfg.patience) | (run_invalid >= cfg.patience)
        )
        enough = found >= cfg.min_found
        lower = jnp.where(ends & enough, jnp.maximum(s.lower, s.lam), s.lower)
        upper = jnp.where(ends & ~enough, jnp.minimum(s.upper, s.lam), s.upper)
        mid = 0.5 * (lower + upper)
        bisected = jnp.where(
            enough,
            jnp.where(jnp.isfinite(upper), mid, s.lam * 10.0),
            jnp.where(lower > 0, mid, s.lam / 10.0),
        )
        lam = jnp.where(ends, bisected, s.lam)
        rnd = s.round + ends
        zero = jnp.zeros_like(checks)
        opt_state = tree_where(ends, jax.vmap(self._tx().init)(s.x), s.opt_state)

        # The step itself, with this round's lam (the next round's, if this one just ended).
        x, opt_state = self.move(s.x, s.x0, grad, lam, opt_state)
        moving = rnd < cfg.rounds
        new = WachterLambdaState(
            x=tree_where(moving, x, s.x),
            x0=s.x0,
            opt_state=opt_state,
            lam=lam,
            lower=lower,
            upper=upper,
            round=rnd,
            checks=jnp.where(ends, zero, checks),
            found=jnp.where(ends, zero, found),
            run_valid=jnp.where(ends, zero, run_valid),
            run_invalid=jnp.where(ends, zero, run_invalid),
            best_x=best_x,
            best_dist=best_dist,
            best_score=best_score,
        )
        return reported, over & has_best, new

    def given_up(self, s: WachterLambdaState) -> Array:
        """Queries whose rounds are over without any iterate reaching the target."""
        return (s.round >= self.config.rounds) & ~jnp.isfinite(s.best_dist)

    def current(self, s: WachterLambdaState) -> Array:
        return tree_where(jnp.isfinite(s.best_dist), s.best_x, s.x)

    def extras(self, s: WachterLambdaState) -> dict[str, Array]:
        return {"l1_weight": s.lam}


def wachter_search(classifier: Any, config: WachterConfig) -> WachterSearch:
    """The jittable Wachter search for a classifier (no input checks): the first-valid search,
    or the search over ``lam`` when ``config.rounds > 0``."""
    cls = WachterLambdaSearch if config.rounds else WachterSearch
    return cls(classifier=as_pure(classifier), config=config)


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
