"""CFProto (Van Looveren & Klaise 2019, "Interpretable counterfactual explanations guided by
prototypes"; DeDUCE's "VLK" baseline; alibi's ``CounterfactualProto``), batched.

Per query ``x0`` with target class ``t``, over the perturbation ``delta`` (``x = x0 + delta``
kept in the domain box), minimise

    c * max(max_{i != t} f_i(x) - f_t(x), -kappa) + beta * |delta|_1 + |delta|_2^2
      + gamma * |x - AE(x)|_2^2 + theta * |ENC(x) - proto_t|_2^2

where ``f`` are the classifier's softmax probabilities (``margin="probabilities"``, the paper's
and alibi's choice) or its logits (``margin="logits"``), ``AE(x) = decode(encode(x))`` and
``proto_t`` is the query's prototype of its target class (:mod:`jaxcf.methods` ``PrototypeBank``:
the mean code of the ``k`` training instances of class ``t`` nearest to ``ENC(x0)``, computed
once per query). Without an encoder the codes are the inputs themselves (the paper's k-d-tree
fallback: a prototype in input space).

The optimiser is FISTA as alibi runs it, per query: a gradient step (gradient clipped
elementwise to ``[-clip, clip]``) with learning rate ``learning_rate * sqrt(1 - i / max_iter)``
(polynomial decay to 0, ``i`` the step within the round) on the smooth terms, taken at the
momentum ("slack") point ``y``; then the elastic-net shrinkage of that point towards ``x0``
(soft-thresholding by ``beta``, clipped to the box) gives the new iterate ``x``; then
``y = x + (i + 1) / (i + 4) * (x - x_prev)``, clipped to the box.

Every iterate ``x`` is checked: a *candidate* is one the classifier puts at its target
(probability ``>= threshold``, the criterion every method shares) with margin
``f_t - max_{i != t} f_i >= kappa``; the query keeps the candidate of least elastic-net distance
``|delta|_2^2 + beta * |delta|_1`` over all rounds.

``c`` is searched per query over ``c_steps`` rounds of at most ``max_iter`` steps, each from the
query with fresh momentum, bisected as alibi does: a round with a candidate lowers the upper
bound to ``c``, any other raises the lower bound; the next ``c`` is the midpoint once an upper
bound is known, else ``10 c``. Unlike alibi, a round stops early once it has a candidate and
``patience`` further steps bring none closer (``patience >= max_iter`` runs every round in full,
as alibi does); with ``c_steps=1, patience=0`` a query stops at its first counterfactual.

With a ``project`` (a pure map of inputs to valid inputs, e.g. encoded table rows to the
encodings of the rows they decode to: :meth:`jaxcf.tabular.TabularTransform.projection`), the
iterates still move freely, but every check is made on the projected iterate: it must be a
candidate, its distance is measured, and it is what the query keeps. So the counterfactual
returned is a valid input, as alibi's CFProto judges categorical variables on the categories
its continuous iterate maps to.

Only class targets are accepted (the prototype is a class's); soft and regression targets are
refused with a TypeError.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxcf.core import CFResult, as_pure, as_pytree, checks, tree_where, validation
from jaxcf.methods._prototypes import (
    PrototypeBank,
    autoencoder_code_dim,
    check_fingerprint,
)
from jaxcf.methods._search import SearchBase, solve_jit

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CFProtoConfig:
    """Attributes:
    kappa: margin the target must lead the other classes by (in ``margin`` units).
    beta: weight of the L1 distance (the shrinkage threshold, in input units).
    gamma: weight of the autoencoder's reconstruction error; > 0 needs an autoencoder.
    theta: weight of the squared distance of the code to the target class's prototype; > 0
      needs prototypes.
    c_init: the first weight ``c`` of the prediction term.
    c_steps: rounds of the bisection over ``c``.
    max_iter: FISTA steps per round at most (also the learning rate's decay length).
    learning_rate: the first step size (input units per unit gradient).
    patience: steps a round continues after its closest candidate so far; the round ends
      once ``patience`` steps bring none closer.
    k: training instances per prototype (the nearest of the target class); ``None``: all of
      the class with an encoder, the nearest one in input space (alibi's defaults).
    margin: ``"probabilities"`` (softmax, as published) or ``"logits"``: where the prediction
      term's hinge and ``kappa`` are measured.
    clip: gradients are clipped elementwise to ``[-clip, clip]``.
    threshold: target probability a candidate reaches.
    domain: box ``(lo, hi)`` the iterates stay in; ``None`` takes the classifier's (unbounded
      if it declares none).
    """

    kappa: float = 0.0
    beta: float = 0.1
    gamma: float = 0.0
    theta: float = 100.0
    c_init: float = 10.0
    c_steps: int = 10
    max_iter: int = 1000
    learning_rate: float = 0.01
    patience: int = 100
    k: int | None = None
    margin: Literal["probabilities", "logits"] = "probabilities"
    clip: float = 1000.0
    threshold: float = 0.5
    domain: tuple[float, float] | None = None

    def __post_init__(self):
        validation.non_negative(self, "kappa", "beta", "gamma", "theta", "c_init")
        validation.positive(self, "learning_rate", "clip")
        validation.at_least(self, 1, "c_steps", "max_iter")
        validation.at_least(self, 0, "patience")
        if self.k is not None:
            validation.at_least(self, 1, "k")
        validation.one_of(self, "margin", ("probabilities", "logits"))
        validation.probability(self, "threshold")
        validation.box(self, "domain")


class CFProtoState(struct.PyTreeNode):
    x: Array  # [B, ...] FISTA iterate
    y: Array  # [B, ...] momentum point the gradient is taken at
    x0: Array  # [B, ...] the query
    proto: Array  # [B, d] the query's target prototype ([B, 1] zeros when theta = 0)
    score: Array  # [B] score of x
    score0: Array  # [B] score of the query
    step: Array  # [B] int32, steps taken this round
    c: Array  # [B] weight of the prediction term this round
    lower: Array  # [B] bisection bounds of c (0, inf: none yet)
    upper: Array
    round: Array  # [B] int32, rounds finished
    found: Array  # [B] bool, a candidate this round
    round_dist: Array  # [B] distance of this round's closest candidate (inf: none)
    stale: Array  # [B] int32, steps since this round's closest candidate
    best_x: Array  # [B, ...] the closest candidate of all rounds
    best_dist: Array  # [B] its elastic-net distance (inf: none yet)
    best_score: Array  # [B] its score
    best_c: Array  # [B] the c it was found with


class CFProtoSearch(SearchBase):
    """CFProto as an :class:`~jaxcf.methods.IterativeSearch` (see the module docstring);
    ``max_iter`` is the total budget, ``c_steps`` rounds of ``config.max_iter``."""

    classifier: Any
    bank: PrototypeBank | None  # prototypes and the encoder of the codes
    autoencoder: Any  # the reconstruction term's autoencoder (None when gamma = 0)
    config: CFProtoConfig = struct.field(pytree_node=False)
    # Checks are made on project(iterate); None: on the iterate. Static: it must hash by value.
    project: Any = struct.field(pytree_node=False, default=None)

    target_kinds = ("class",)

    @property
    def max_iter(self) -> int:
        return self.config.c_steps * self.config.max_iter

    @property
    def k(self) -> int | None:
        return None if self.bank is None else self.bank.default_k(self.config.k)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        x, target = super().check(x, target)
        shape = tuple(x.shape[1:])
        if self.bank is not None and shape != tuple(self.bank.input_shape):
            raise ValueError(
                f"x has per-query shape {list(shape)}, but the prototypes were built from data "
                f"of shape {list(self.bank.input_shape)}"
            )
        if self.config.theta > 0:
            self.bank.check_targets(np.asarray(jax.device_get(target)), self.k)
        if self.autoencoder is not None and self.bank is None:
            autoencoder_code_dim(self.autoencoder, shape, decode=True)
        return x, target

    # ------------------------------------------------------------------ the objective

    def margin(self, logits: Array, target: Array) -> Array:
        """``f_t - max_{i != t} f_i`` per query ``[B]`` in the config's units."""
        f = logits.astype(jnp.float32)
        if self.config.margin == "probabilities":
            f = jax.nn.softmax(f, axis=-1)
        is_t = jnp.arange(f.shape[-1])[None, :] == target[:, None]
        f_t = jnp.sum(jnp.where(is_t, f, 0.0), axis=-1)
        return f_t - jnp.max(jnp.where(is_t, -jnp.inf, f), axis=-1)

    def smooth_loss(self, y: Array, s: CFProtoState, target: Array) -> Array:
        """The objective's differentiable terms (all but ``beta * |delta|_1``), summed over the
        batch (each query's gradient is its own)."""
        cfg = self.config
        hinge = jnp.maximum(0.0, cfg.kappa - self.margin(self.classifier.logits(y), target))
        loss = s.c * hinge + _sum_sq(y - s.x0)
        if cfg.gamma > 0:
            rec = self.autoencoder.decode(self.autoencoder.encode(y)).astype(jnp.float32)
            loss = loss + cfg.gamma * _sum_sq(y - rec)
        if cfg.theta > 0:
            loss = loss + cfg.theta * _sum_sq(self.bank.encode(y) - s.proto)
        return jnp.sum(loss)

    def shrink(self, z: Array, x0: Array) -> Array:
        """Elastic-net shrinkage of ``z`` towards ``x0``: soft-thresholding by ``beta``, the
        moved elements clipped to the box."""
        beta, box = self.config.beta, self.domain
        lo, hi = (-jnp.inf, jnp.inf) if box is None else box
        d = z - x0
        up = jnp.minimum(z - beta, hi)
        down = jnp.maximum(z + beta, lo)
        return jnp.where(d > beta, up, jnp.where(d < -beta, down, x0))

    # ------------------------------------------------------------------ the search

    def init(self, x: Array, target: Array, key: Array) -> CFProtoState:
        cfg = self.config
        b = x.shape[0]
        score0, _ = self.score(self.classifier.logits(x), target)
        score0 = score0.astype(jnp.float32)
        if cfg.theta > 0:
            proto = self.bank.prototypes(self.bank.encode(x), target, self.k)
        else:
            proto = jnp.zeros((b, 1), jnp.float32)
        zeros = jnp.zeros(b, jnp.int32)
        inf = jnp.full(b, jnp.inf, jnp.float32)
        c = jnp.full(b, cfg.c_init, jnp.float32)
        return CFProtoState(
            x=x,
            y=x,
            x0=x,
            proto=proto,
            score=score0,
            score0=score0,
            step=zeros,
            c=c,
            lower=jnp.zeros(b, jnp.float32),
            upper=inf,
            round=zeros,
            found=jnp.zeros(b, bool),
            round_dist=inf,
            stale=zeros,
            best_x=x,
            best_dist=inf,
            best_score=score0,
            best_c=c,
        )

    def step(self, s: CFProtoState, target: Array) -> tuple[Array, Array, CFProtoState]:
        cfg = self.config
        over = s.round >= cfg.c_steps  # every round has run: report, change nothing
        has_best = jnp.isfinite(s.best_dist)
        reported = jnp.where(has_best, s.best_score, s.score)

        # One FISTA step: gradient at the momentum point, shrinkage, momentum.
        grad = jax.grad(self.smooth_loss)(s.y, s, target)
        grad = jnp.clip(grad, -cfg.clip, cfg.clip)
        i = s.step.astype(jnp.float32)
        lr = cfg.learning_rate * jnp.sqrt(jnp.maximum(1.0 - i / cfg.max_iter, 0.0))
        x = self.shrink(s.y - _per_query(lr, s.y) * grad, s.x0)
        zt = (i + 1.0) / (i + 4.0)
        y = self.clip(x + _per_query(zt, x) * (x - s.x))

        # Check the new iterate (projected to a valid input when asked); keep the closest
        # candidate.
        cand = x if self.project is None else self.project(x)
        logits = self.classifier.logits(cand)
        score, reached = self.score(logits, target)
        score = score.astype(jnp.float32)
        candidate = reached & (self.margin(logits, target) >= cfg.kappa)
        # In bfloat16, a candidate counts only when the float32 network agrees (a no-op in
        # float32), so the kept candidate is always a confirmed one.
        candidate, score = self.confirm(lambda r: r, cand, target, candidate, score)
        d = (cand - s.x0).reshape(x.shape[0], -1)
        dist = jnp.sum(d * d, axis=-1) + cfg.beta * jnp.sum(jnp.abs(d), axis=-1)
        better = candidate & (dist < s.best_dist)
        closer = candidate & (dist < s.round_dist)
        found = s.found | candidate
        stale = jnp.where(closer, 0, s.stale + 1)
        step = s.step + 1

        # End of a round: bisect c; restart from the query unless it was the last round (a
        # query that never found a candidate returns its last iterate).
        ends = (step >= cfg.max_iter) | (found & (stale >= cfg.patience))
        upper = jnp.where(ends & found, jnp.minimum(s.upper, s.c), s.upper)
        lower = jnp.where(ends & ~found, jnp.maximum(s.lower, s.c), s.lower)
        bisected = jnp.where(jnp.isfinite(upper), 0.5 * (lower + upper), 10.0 * s.c)
        rnd = s.round + ends.astype(jnp.int32)
        restart = ends & (rnd < cfg.c_steps)
        new = s.replace(
            x=tree_where(restart, s.x0, x),
            y=tree_where(restart, s.x0, y),
            score=jnp.where(restart, s.score0, score),
            step=jnp.where(ends, 0, step),
            c=jnp.where(restart, bisected, s.c),
            lower=lower,
            upper=upper,
            round=rnd,
            found=found & ~ends,
            round_dist=jnp.where(ends, jnp.inf, jnp.where(closer, dist, s.round_dist)),
            stale=jnp.where(ends, 0, stale),
            best_x=tree_where(better, cand, s.best_x),
            best_dist=jnp.where(better, dist, s.best_dist),
            best_score=jnp.where(better, score, s.best_score),
            best_c=jnp.where(better, s.c, s.best_c),
        )
        return reported, over & has_best, new

    def given_up(self, s: CFProtoState) -> Array:
        """Queries whose rounds are over without a candidate."""
        return (s.round >= self.config.c_steps) & ~jnp.isfinite(s.best_dist)

    def current(self, s: CFProtoState) -> Array:
        return tree_where(jnp.isfinite(s.best_dist), s.best_x, s.x)

    def extras(self, s: CFProtoState) -> dict[str, Array]:
        """``"c"``: the weight of the prediction term in the round that found the returned
        counterfactual (the last round's for a failure)."""
        return {"c": jnp.where(jnp.isfinite(s.best_dist), s.best_c, s.c)}


def _sum_sq(d: Array) -> Array:
    """Per-query ``sum d^2`` ``[B]`` (float32)."""
    d = d.astype(jnp.float32)
    return jnp.sum((d * d).reshape(d.shape[0], -1), axis=-1)


def _per_query(v: Array, like: Array) -> Array:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def cfproto_search(
    classifier: Any,
    prototypes: PrototypeBank | None = None,
    config: CFProtoConfig = CFProtoConfig(),
    *,
    autoencoder: Any = None,
    project: Any = None,
) -> CFProtoSearch:
    """The jittable CFProto search (checks the models against each other, not the queries).

    Args:
      classifier: offers ``logits(x) -> [B, C]``.
      prototypes: a :class:`~jaxcf.methods.PrototypeBank` (needed when ``theta > 0``); its
        encoder (or input space) defines the codes.
      config: hyper-parameters (static).
      autoencoder: the reconstruction term's autoencoder (``encode`` and ``decode``); default
        the bank's. With a bank built by an encoder, it must be that encoder.
      project: optional pure map ``[B, ...] -> [B, ...]`` of inputs to valid inputs the
        checks are made on (see the module docstring), hashable by value (a static part of
        the compiled program), e.g. ``transform.projection()`` for encoded table rows.

    Raises:
      TypeError: a config or bank of another type, an autoencoder without the protocol, a
        ``project`` that is not callable or not hashable.
      ValueError: ``gamma > 0`` without an autoencoder, ``theta > 0`` without prototypes,
        prototypes built with another encoder or of inputs or classes the classifier does not
        take.
    """
    if not isinstance(config, CFProtoConfig):
        raise TypeError(f"expected a CFProtoConfig, got {type(config).__name__}")
    if prototypes is not None and not isinstance(prototypes, PrototypeBank):
        raise TypeError(
            f"prototypes must be a PrototypeBank (jaxcf.methods.prototype_bank), got "
            f"{type(prototypes).__name__}"
        )
    classifier = as_pure(classifier)
    bank = prototypes
    if autoencoder is not None:
        autoencoder = as_pytree(autoencoder)
        if bank is not None and not bank.in_input_space:
            check_fingerprint(bank, autoencoder)
    elif bank is not None:
        autoencoder = bank.autoencoder
    if config.gamma > 0 and autoencoder is None:
        raise ValueError(
            f"CFProtoConfig.gamma={config.gamma} weights an autoencoder's reconstruction error, "
            "but there is none: build the prototypes with one (prototype_bank(..., "
            "autoencoder=...)), pass autoencoder=..., or set gamma=0"
        )
    if config.theta > 0 and bank is None:
        raise ValueError(
            f"CFProtoConfig.theta={config.theta} pulls towards class prototypes, but none were "
            "given: build them with prototype_bank (with an autoencoder's encoder, or in input "
            "space without one) or set theta=0"
        )
    if bank is not None:
        check_fingerprint(bank, bank.autoencoder)  # the bank's own encoder, swapped since?
        shape = tuple(bank.input_shape)
        n_out = checks.classifier_io(classifier, shape)
        if n_out != bank.num_classes:
            raise ValueError(
                f"the prototypes hold {bank.num_classes} classes, the classifier has {n_out}"
            )
        if bank.autoencoder is not None:
            d = autoencoder_code_dim(bank.autoencoder, shape, decode=False)
            if d != bank.code_dim:
                raise ValueError(
                    f"the encoder makes {d}-d codes, the prototypes hold {bank.code_dim}-d ones"
                )
        if autoencoder is not None and config.gamma > 0:
            autoencoder_code_dim(autoencoder, shape, decode=True)
    if project is not None:
        if not callable(project):
            raise TypeError(f"project must be callable, got {type(project).__name__}")
        try:
            hash(project)
        except TypeError:
            raise TypeError(
                f"project must hash by value (it is a static part of the compiled program), "
                f"got an unhashable {type(project).__name__}"
            ) from None
    if config.gamma == 0:
        autoencoder = None  # not traced into the program
    return CFProtoSearch(
        classifier=classifier, bank=bank, autoencoder=autoencoder, config=config, project=project
    )


def cfproto(
    classifier: Any,
    prototypes: PrototypeBank | None,
    x: Any,
    target: Any,
    config: CFProtoConfig = CFProtoConfig(),
    *,
    autoencoder: Any = None,
    project: Any = None,
) -> CFResult:
    """CFProto counterfactuals for a batch.

    Args:
      classifier: offers ``logits(x) -> [B, C]``.
      prototypes: a :class:`~jaxcf.methods.PrototypeBank` (``None`` when ``theta = 0``).
      x: ``[B, ...]`` float queries (images, series or encoded rows) in the classifier's domain,
        of the shape the prototypes were built from.
      target: ``[B]`` int classes.
      config: hyper-parameters (static).
      autoencoder, project: see :func:`cfproto_search`.

    Returns:
      A :class:`~jaxcf.core.CFResult` with ``extras["c"]``.
    """
    search = cfproto_search(
        classifier, prototypes, config, autoencoder=autoencoder, project=project
    )
    x, target = search.check(x, target)
    return solve_jit(search, x, target)
