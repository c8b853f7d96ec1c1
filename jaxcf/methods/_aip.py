"""Attribute-informed perturbation (AIP; Yang et al. 2021) and its random-search baseline AIP_R.

An attribute-conditioned encoder-decoder (AttGAN-like) maps a query ``x`` to a code
``z0 = enc(x)`` (``k`` dims) and its attributes ``a0 = attributes(x)`` (``t`` dims in
``[0, 1]``, e.g. an attribute classifier's probabilities), and decodes ``dec(z, a)``. AIP
minimises

    L(z, a) = loss(f(dec(z, a)), target) + alpha * (||z - z0||_2 + ||a - a0||_2)

(``loss`` the target loss of :mod:`jaxcf.core.targets`: cross-entropy for a class) by gradient steps
with separate step sizes for the code and the attributes, both multiplied by ``beta`` after
every step:

    z <- z - mu beta^n grad_z L,     a <- clip(a - gamma beta^n grad_a L, 0, 1)

(``optimizer="sgd"``, as published; ``"adam"`` scales Adam's per-query direction by the same
decaying step sizes instead of the raw gradient). A query fails if ``dec(z, a)`` has not reached
its target after ``max_iter`` (the paper's ``n_max``) updates; with plain steps the search
learns that sooner, exactly, once the decayed steps round to nothing (``stop_when_stalled``).
Published image setting: alpha 1.5, beta 0.9, n_max 500, mu 2, gamma 3 (the defaults).

Because the steps decay geometrically, the whole path is at most ``1 / (1 - beta)`` first steps
long (10 at beta 0.9): a query whose target lies farther never flips, however many updates it
gets. ``schedule`` retries such queries from the start with both first steps multiplied by the
next factor (:class:`~jaxcf.core.Retry` over ``step_scale``, as DiME retries larger guidance
scales), so steps small enough to keep most faces intact need not cost the far queries.

AIP_R spends the same budget on a random search: at iteration ``n`` it proposes

    z' = z + mu beta^n eps_z / sqrt(k),     a' = clip(a + gamma beta^n eps_a / sqrt(t), 0, 1)

with ``eps ~ N(0, I)`` drawn from the query's own key (so the proposals' typical lengths are
AIP's step sizes ``mu beta^n`` and ``gamma beta^n``), and moves there only if ``L(z', a') <
L(z, a)``; it stops when the target is reached.

The counterfactual is ``dec(z*, a*)``; ``extras`` hold ``"z"``, ``"z0"`` (``[B, k]``), ``"a"``,
``"a0"`` (``[B, t]``), from which analyses take the latent perturbation ratio (after re-encoding
``x_cf``) and the attribute ranking by ``|a* - a0|``; AIP_R adds ``"accepted"``, its number of
accepted proposals.

The model is any pytree offering ``encode(x [B, H, W, C]) -> z [B, k]``, ``attributes(x) ->
a0 [B, t]``, ``decode(z, a) -> [B, H, W, C]`` images in ``[0, 1]``, ``latent_dim``,
``num_attributes`` and ``image_shape`` (and ``attribute_names``, ``attribute_range``:
``(0, 1)`` when not declared). Attributes outside its range, the query's included, are clipped
into it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxcf.core import (
    CFResult,
    Retry,
    as_pure,
    as_pytree,
    explain_batch,
    per_query_keys,
    validation,
)
from jaxcf.core import targets as targets_lib
from jaxcf.methods._latent import (
    check_classifier_fits,
    check_image_queries,
    declared_int,
    model_image_shape,
    safe_norm,
    shape_probe,
    shape_str,
    trace_shape,
)
from jaxcf.methods._search import SearchBase, SearchExplainer, solve_jit

Array = jax.Array

DEFAULT_ATTRIBUTE_RANGE = (0.0, 1.0)


def _validate_common(config: Any) -> None:
    validation.positive(config, "mu", "gamma", "tolerance")
    validation.non_negative(config, "alpha")
    validation.probability(config, "beta", "threshold")
    validation.at_least(config, 1, "max_iter")


@dataclasses.dataclass(frozen=True)
class AIPConfig:
    """Attributes:
    alpha: weight of the code's and the attributes' Euclidean distances to the query's.
    beta: factor in ``(0, 1]`` both step sizes are multiplied by after every step.
    mu: the code's first step size.
    gamma: the attributes' first step size.
    optimizer: ``"sgd"`` (plain gradient steps, as published) or ``"adam"`` (per query, the
      steps ``mu beta^n`` and ``gamma beta^n`` times Adam's direction).
    threshold: target probability at which a query with a class target stops.
    tolerance: score at or below which a soft or regression target counts as reached.
    max_iter: updates per query at most (the paper's ``n_max``), per attempt.
    step_scale: factor on both first step sizes (the first attempt's; 1: ``mu`` and ``gamma``
      as given).
    schedule: larger ``step_scale`` values tried in order, each from the start, for queries
      that did not reach their target (``()``: a single attempt, as published).
    stop_when_stalled: with plain steps, end a query's attempt (unsuccessful) once an update
      leaves its code and attributes bitwise unchanged. The result is exactly the one
      ``max_iter`` updates give: the iterate, and so its gradient, stay the same while the
      steps only shrink, so every later update rounds to nothing too. Only ``n_iter`` (the
      updates made) is smaller: on the shipped AttGAN with the CelebA protocol's steps (decay
      0.9), the faces that did not flip stalled after 136 to 195 of their 500 updates. Ignored
      with ``"adam"``, whose moments keep moving.
    """

    alpha: float = 1.5
    beta: float = 0.9
    mu: float = 2.0
    gamma: float = 3.0
    optimizer: Literal["sgd", "adam"] = "sgd"
    threshold: float = 0.5
    tolerance: float = 0.1
    max_iter: int = 500
    step_scale: float = 1.0
    schedule: tuple[float, ...] = ()
    stop_when_stalled: bool = True

    def __post_init__(self):
        validation.one_of(self, "optimizer", ("sgd", "adam"))
        validation.positive(self, "step_scale")
        validation.schedule(self)
        _validate_common(self)


@dataclasses.dataclass(frozen=True)
class AIPRandomConfig:
    """Attributes:
    alpha: weight of the distances in the objective (as :class:`AIPConfig`).
    beta: factor in ``(0, 1]`` both proposal scales are multiplied by after every iteration
      (1: no decay).
    mu: typical length of the code's first proposal (``||z' - z||``).
    gamma: typical length of the attributes' first proposal (before clipping).
    threshold: target probability at which a query with a class target stops.
    tolerance: score at or below which a soft or regression target counts as reached.
    max_iter: proposals per query at most.
    """

    alpha: float = 1.5
    beta: float = 0.9
    mu: float = 2.0
    gamma: float = 3.0
    threshold: float = 0.5
    tolerance: float = 0.1
    max_iter: int = 500

    def __post_init__(self):
        _validate_common(self)


# ----------------------------------------------------------------------------- the model


def attribute_range(model: Any) -> tuple[float, float]:
    """The box ``(lo, hi)`` of the model's attributes: its ``attribute_range``, else
    ``(0, 1)``."""
    box = getattr(model, "attribute_range", None)
    if box is None:
        return DEFAULT_ATTRIBUTE_RANGE
    ok = (
        len(tuple(box)) == 2
        and all(isinstance(b, int | float) and math.isfinite(b) for b in box)
        and box[0] < box[1]
    )
    if not ok:
        raise ValueError(f"the attribute model's attribute_range must be (lo, hi), got {box!r}")
    return float(box[0]), float(box[1])


def check_attribute_model(model: Any, classifier: Any) -> None:
    """Checks an attribute model's protocol, its code, attribute and image shapes, and that the
    classifier takes its images (traces, never compiles).

    Raises:
      TypeError: a missing method or declaration.
      ValueError: codes, attributes or images of other shapes than declared, attribute names
        that do not match ``num_attributes``, a bad attribute range, or a classifier of other
        images.
    """
    what = "attribute model"
    for name in ("encode", "attributes", "decode"):
        if not callable(getattr(model, name, None)):
            raise TypeError(f"the {what} must offer {name}(...) (see jaxcf.methods.aip)")
    shape = model_image_shape(model, what)
    k = declared_int(model, "latent_dim", what)
    t = declared_int(model, "num_attributes", what)
    names = getattr(model, "attribute_names", None)
    if names is not None and len(tuple(names)) != t:
        raise ValueError(
            f"the {what} names {len(tuple(names))} attributes but declares num_attributes {t}"
        )
    attribute_range(model)
    check_classifier_fits(classifier, shape, what)
    probe = shape_probe(1, *shape)
    z = trace_shape(f"{what}.encode", model.encode, probe)
    if tuple(z.shape) != (1, k):
        raise ValueError(
            f"{what}.encode gives codes {shape_str(z.shape[1:])} per image, but the model declares "
            f"latent_dim {k}"
        )
    a = trace_shape(f"{what}.attributes", model.attributes, probe)
    if tuple(a.shape) != (1, t):
        raise ValueError(
            f"{what}.attributes gives {shape_str(a.shape[1:])} per image, but the model declares "
            f"num_attributes {t}"
        )
    img = trace_shape(f"{what}.decode", model.decode, shape_probe(1, k), shape_probe(1, t))
    if tuple(img.shape) != (1, *shape):
        raise ValueError(
            f"{what}.decode gives images {shape_str(img.shape[1:])}, but the model declares "
            f"image_shape {shape_str(shape)}"
        )


# ----------------------------------------------------------------------------- shared base


class _AttributeSearch(SearchBase):
    """What AIP and AIP_R share: the model, the start, the objective and the outputs."""

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.model.image_shape)

    @property
    def attribute_range(self) -> tuple[float, float]:
        return attribute_range(self.model)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        return check_image_queries(
            self.classifier, self.image_shape, x, target, self.target_kinds, "attribute model"
        )

    def start(self, x: Array) -> tuple[Array, Array]:
        """``(z0, a0)`` of queries ``x``, the attributes clipped into the model's range."""
        z0 = self.model.encode(x).astype(jnp.float32)
        a0 = jnp.clip(self.model.attributes(x).astype(jnp.float32), *self.attribute_range)
        return z0, a0

    def objective(
        self, z: Array, a: Array, z0: Array, a0: Array, target: Array
    ) -> tuple[Array, Array]:
        """Per-query ``L(z, a)`` ``[B]`` (see the module docstring) and the logits."""
        logits = self.classifier.logits(self.model.decode(z, a))
        dist = safe_norm(z - z0) + safe_norm(a - a0)
        return targets_lib.target_loss(logits, target) + self.config.alpha * dist, logits

    def current(self, state: Any) -> Array:
        return self.model.decode(state.z, state.a)

    def extras(self, state: Any) -> dict[str, Array]:
        return {"z": state.z, "z0": state.z0, "a": state.a, "a0": state.a0}


def _column(v: Array) -> Array:
    return v[:, None]


# ----------------------------------------------------------------------------- AIP


class AIPState(struct.PyTreeNode):
    z: Array  # [B, k]
    a: Array  # [B, t]
    z0: Array  # [B, k]
    a0: Array  # [B, t]
    decay: Array  # [B] float32, beta ** (updates so far): the step sizes' factor
    opt_state: Any  # per-query Adam states of (z, a); () for plain steps
    moved: Array  # [B] bool, whether the last update changed z or a (True before any)


class AIPSearch(_AttributeSearch):
    """AIP as an :class:`~jaxcf.methods.IterativeSearch` (a pytree)."""

    classifier: Any
    model: Any
    config: AIPConfig = struct.field(pytree_node=False)

    def init(self, x: Array, target: Array, key: Array) -> AIPState:
        z0, a0 = self.start(x)
        if self.config.optimizer == "adam":
            adam = optax.scale_by_adam()
            opt_state = (jax.vmap(adam.init)(z0), jax.vmap(adam.init)(a0))
        else:
            opt_state = ()
        n = x.shape[0]
        decay = jnp.ones(n, jnp.float32)
        moved = jnp.ones(n, bool)
        return AIPState(z=z0, a=a0, z0=z0, a0=a0, decay=decay, opt_state=opt_state, moved=moved)

    def loss(self, z: Array, a: Array, z0: Array, a0: Array, target: Array) -> tuple[Array, Array]:
        """Summed objective of the batch (each query's gradient is its own) and the logits."""
        per_query, logits = self.objective(z, a, z0, a0, target)
        return jnp.sum(per_query), logits

    def step(self, s: AIPState, target: Array) -> tuple[Array, Array, AIPState]:
        cfg = self.config
        (gz, ga), logits = jax.grad(self.loss, argnums=(0, 1), has_aux=True)(
            s.z, s.a, s.z0, s.a0, target
        )
        opt_state = s.opt_state
        if cfg.optimizer == "adam":
            adam = optax.scale_by_adam()
            gz, oz = jax.vmap(adam.update)(gz, opt_state[0])
            ga, oa = jax.vmap(adam.update)(ga, opt_state[1])
            opt_state = (oz, oa)
        decay = cfg.step_scale * s.decay
        z = s.z - _column(cfg.mu * decay) * gz
        a = jnp.clip(s.a - _column(cfg.gamma * decay) * ga, *self.attribute_range)
        moved = jnp.any(z != s.z, axis=1) | jnp.any(a != s.a, axis=1)
        new = s.replace(z=z, a=a, decay=s.decay * cfg.beta, opt_state=opt_state, moved=moved)
        return *self.score(logits, target), new

    def given_up(self, s: AIPState) -> Array:
        """``[B]``: the last plain update changed nothing (see ``stop_when_stalled``)."""
        if self.config.optimizer != "sgd" or not self.config.stop_when_stalled:
            return jnp.zeros_like(s.moved)
        return ~s.moved


# ----------------------------------------------------------------------------- AIP_R


class AIPRandomState(struct.PyTreeNode):
    z: Array  # [B, k]
    a: Array  # [B, t]
    z0: Array  # [B, k]
    a0: Array  # [B, t]
    decay: Array  # [B] float32, beta ** (proposals so far)
    key: Array  # [B] PRNG keys, advanced every iteration
    loss: Array  # [B] L(z, a)
    logits: Array  # [B, C] the classifier's at dec(z, a)
    accepted: Array  # [B] int32, proposals accepted so far


class AIPRandomSearch(_AttributeSearch):
    """AIP_R as an :class:`~jaxcf.methods.IterativeSearch` (a pytree): one decoder and
    classifier pass per iteration (the current point's objective and logits are kept)."""

    classifier: Any
    model: Any
    config: AIPRandomConfig = struct.field(pytree_node=False)

    def init(self, x: Array, target: Array, key: Array) -> AIPRandomState:
        z0, a0 = self.start(x)
        loss, logits = self.objective(z0, a0, z0, a0, target)
        n = x.shape[0]
        return AIPRandomState(
            z=z0,
            a=a0,
            z0=z0,
            a0=a0,
            decay=jnp.ones(n, jnp.float32),
            key=key,
            loss=loss,
            logits=logits.astype(jnp.float32),
            accepted=jnp.zeros(n, jnp.int32),
        )

    def propose(self, s: AIPRandomState) -> tuple[Array, Array, Array]:
        """``(z', a', next keys)``: one proposal per query from its own key."""
        cfg = self.config
        k, t = s.z.shape[1], s.a.shape[1]
        keys = jax.vmap(jax.random.split)(s.key)  # [B, 2]
        eps = jax.vmap(lambda kk: jax.random.normal(kk, (k + t,)))(keys[:, 1])
        z = s.z + _column(cfg.mu * s.decay / math.sqrt(k)) * eps[:, :k]
        a = s.a + _column(cfg.gamma * s.decay / math.sqrt(t)) * eps[:, k:]
        return z, jnp.clip(a, *self.attribute_range), keys[:, 0]

    def step(self, s: AIPRandomState, target: Array) -> tuple[Array, Array, AIPRandomState]:
        score, reached = self.score(s.logits, target)
        z, a, key = self.propose(s)
        loss, logits = self.objective(z, a, s.z0, s.a0, target)
        better = loss < s.loss
        col = _column(better)
        new = s.replace(
            z=jnp.where(col, z, s.z),
            a=jnp.where(col, a, s.a),
            decay=s.decay * self.config.beta,
            key=key,
            loss=jnp.where(better, loss, s.loss),
            logits=jnp.where(col, logits.astype(jnp.float32), s.logits),
            accepted=s.accepted + better.astype(jnp.int32),
        )
        return score, reached, new

    def extras(self, state: AIPRandomState) -> dict[str, Array]:
        return {**super().extras(state), "accepted": state.accepted}


# ----------------------------------------------------------------------------- builders


def aip_search(classifier: Any, model: Any, config: AIPConfig = AIPConfig()) -> AIPSearch:
    """The jittable AIP search for a classifier and an attribute model (checks the models'
    shapes, not the queries).

    Raises:
      TypeError: a model or classifier without the protocol, or another config type.
      ValueError: a model whose codes, attributes or images do not match its declarations, or
        whose images the classifier does not take.
    """
    if not isinstance(config, AIPConfig):
        raise TypeError(f"expected an AIPConfig, got {type(config).__name__}")
    classifier, model = as_pure(classifier), as_pytree(model)
    check_attribute_model(model, classifier)
    return AIPSearch(classifier=classifier, model=model, config=config)


def aip_explainer(
    classifier: Any, model: Any, config: AIPConfig = AIPConfig()
) -> SearchExplainer | Retry:
    """AIP as an explainer (see :func:`aip_search`); wrapped in
    :class:`~jaxcf.core.Retry` over ``(step_scale, *schedule)`` when the config has a
    schedule (the runner drives each attempt through its slot pool)."""
    explainer = SearchExplainer(aip_search(classifier, model, config))
    if not config.schedule:
        return explainer
    return Retry(explainer, "step_scale", (config.step_scale, *config.schedule))


def aip_random_search(
    classifier: Any, model: Any, config: AIPRandomConfig = AIPRandomConfig()
) -> AIPRandomSearch:
    """The jittable AIP_R search (see :func:`aip_search`)."""
    if not isinstance(config, AIPRandomConfig):
        raise TypeError(f"expected an AIPRandomConfig, got {type(config).__name__}")
    classifier, model = as_pure(classifier), as_pytree(model)
    check_attribute_model(model, classifier)
    return AIPRandomSearch(classifier=classifier, model=model, config=config)


def aip(
    classifier: Any, model: Any, x: Any, target: Any, config: AIPConfig = AIPConfig()
) -> CFResult:
    """AIP counterfactuals for a batch.

    Args:
      classifier: offers ``logits(x) -> [B, C]`` on the model's images.
      model: the attribute-conditioned encoder-decoder (see the module docstring).
      x: ``[B, H, W, C]`` queries in ``[0, 1]``.
      target: ``[B]`` int classes, ``[B, C]`` class distributions or ``[B]`` float regression
        values.
      config: hyper-parameters (static).

    Returns:
      A :class:`~jaxcf.core.CFResult` with ``x_cf = dec(z*, a*)`` and ``extras`` ``"z"``,
      ``"z0"``, ``"a"``, ``"a0"`` (with a schedule also ``"attempt"`` and ``"step_scale"``).
    """
    return explain_batch(aip_explainer(classifier, model, config), x, target)


def aip_random(
    classifier: Any,
    model: Any,
    x: Any,
    target: Any,
    config: AIPRandomConfig = AIPRandomConfig(),
    key: Array | None = None,
) -> CFResult:
    """AIP_R counterfactuals for a batch (arguments as :func:`aip`; ``key`` seeds the
    proposals, one key per query folded from it; default ``jax.random.key(0)``)."""
    search = aip_random_search(classifier, model, config)
    x, target = search.check(x, target)
    key = jax.random.key(0) if key is None else key
    return solve_jit(search, x, target, per_query_keys(key, x.shape[0]))
