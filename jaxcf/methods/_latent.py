"""Latent-space counterfactual search through a VAE: REVISE and xGEMs.

Both start from the encoder's posterior mean ``z0 = enc(x)`` of the query and descend

* REVISE (Joshi et al. 2019): ``loss(f(dec(z)), t) + distance_weight * |x - dec(z)|_1``,
  the L1 distance in input space, summed over pixels;
* xGEMs (Joshi et al. 2018): ``loss(f(dec(z)), t) + distance_weight * ||z - z0||_2``, the
  Euclidean distance in latent space;

over ``z`` by gradient steps until the target is reached (``loss`` is the target loss of
:mod:`jaxcf.core.targets`: cross-entropy for classes and distributions, squared error for regression
values). The counterfactual is ``dec(z*)``; ``extras`` hold ``"z"`` (the final code, ``[B, k]``)
and ``"z0"`` (the query's code), from which analyses take, e.g., the latent perturbation.

The published REVISE baseline took plain gradient steps of 1e-5 with ``distance_weight`` 1 for
up to 50,000 steps (``optimizer="sgd"``); Adam (``optimizer="adam"``, per query, the default)
descends the same objective in far fewer steps. A query's score is read before each update, as
in every search of :mod:`jaxcf.methods`.

The VAE is any pytree offering ``encode(x [B, H, W, C]) -> z [B, k]`` (a deterministic code),
``decode(z) -> [B, H, W, C]`` images in ``[0, 1]``, ``latent_dim`` and ``image_shape``:
:class:`jaxcf.models.VAEModel` (from :func:`~jaxcf.models.load_vae`) is one.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxcf.core import CFResult, as_pure, as_pytree, checks, validation
from jaxcf.core import targets as targets_lib
from jaxcf.methods._search import SearchBase, solve_jit

Array = jax.Array

IMAGE_DOMAIN = (0.0, 1.0)
"""The box the generative models' images (queries and decodings) live in."""


# ----------------------------------------------------------------------------- shared pieces


def safe_norm(d: Array) -> Array:
    """Per-row Euclidean norm ``[B]`` of ``d [B, k]``, with gradient 0 at ``d = 0`` (the plain
    norm's gradient is NaN there, where every latent search starts)."""
    sq = jnp.sum(d * d, axis=-1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def l1_distance(x: Array, x0: Array) -> Array:
    """Per-query ``sum |x - x0|`` ``[B]``, written so that its gradient is ``sign(x - x0)``,
    0 where ``x = x0`` (``jnp.abs`` has gradient 1 there)."""
    d = x - x0
    return jnp.sum((jax.lax.stop_gradient(jnp.sign(d)) * d).reshape(x.shape[0], -1), axis=-1)


def shape_str(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def trace_shape(what: str, fn, *args) -> Any:
    """``jax.eval_shape`` of ``fn`` on ``args`` (traces, never compiles), errors re-raised as
    ValueError naming ``what``."""
    try:
        return jax.eval_shape(fn, *args)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        shapes = [shape_str(a.shape) for a in args]
        raise ValueError(f"{what} failed on shapes {shapes}: {e}") from e


def shape_probe(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def model_image_shape(model: Any, what: str) -> tuple[int, ...]:
    """The ``image_shape`` a generative model declares, as a tuple of positive ints."""
    shape = getattr(model, "image_shape", None)
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise TypeError(f"the {what} must declare image_shape (H, W, C), got {shape!r}")
    return dims


def declared_int(model: Any, name: str, what: str) -> int:
    v = getattr(model, name, None)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise TypeError(f"the {what} must declare {name} as a positive int, got {v!r}")
    return v


def check_classifier_fits(classifier: Any, image_shape: tuple[int, ...], what: str) -> int:
    """Raises ValueError unless the classifier takes the model's images; returns its output
    width."""
    try:
        return checks.classifier_io(classifier, image_shape)
    except ValueError as e:
        raise ValueError(
            f"the {what} makes {shape_str(image_shape)} images, which the classifier does not "
            f"take: {e}"
        ) from e


def check_vae(vae: Any, classifier: Any) -> None:
    """Checks a VAE's protocol, its code and image shapes, and that the classifier takes its
    images (traces, never compiles).

    Raises:
      TypeError: a missing method or declaration.
      ValueError: codes or images of other shapes than declared, or a classifier of other
        images.
    """
    for name in ("encode", "decode"):
        if not callable(getattr(vae, name, None)):
            raise TypeError(f"the VAE must offer {name}(...) (see jaxcf.methods.revise)")
    shape = model_image_shape(vae, "VAE")
    k = declared_int(vae, "latent_dim", "VAE")
    check_classifier_fits(classifier, shape, "VAE")
    z = trace_shape("VAE.encode", vae.encode, shape_probe(1, *shape))
    if tuple(z.shape) != (1, k):
        raise ValueError(
            f"VAE.encode gives codes {shape_str(z.shape[1:])} per image, but the VAE declares "
            f"latent_dim {k}"
        )
    img = trace_shape("VAE.decode", vae.decode, shape_probe(1, k))
    if tuple(img.shape) != (1, *shape):
        raise ValueError(
            f"VAE.decode gives images {shape_str(img.shape[1:])}, but the VAE declares "
            f"image_shape {shape_str(shape)}"
        )


def check_image_queries(
    classifier: Any, image_shape: tuple[int, ...], x: Any, target: Any, kinds, what: str
) -> tuple[Array, Array]:
    """Queries in ``[0, 1]`` of the generative model's image shape, and targets for the
    classifier (the boundary check of the latent methods)."""
    x = checks.check_queries(x, domain=IMAGE_DOMAIN)
    if tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"x has per-query shape {shape_str(x.shape[1:])} but the {what} works on "
            f"{shape_str(image_shape)} images"
        )
    n_out = checks.classifier_io(classifier, tuple(image_shape))
    return x, targets_lib.check_target(target, x.shape[0], n_out, kinds)


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class _LatentConfig:
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 0.01
    distance_weight: float = 1.0
    threshold: float = 0.5
    tolerance: float = 0.1
    max_iter: int = 1000

    distance: ClassVar[str]

    def __post_init__(self):
        validation.one_of(self, "optimizer", ("adam", "sgd"))
        validation.positive(self, "learning_rate", "tolerance")
        validation.non_negative(self, "distance_weight")
        validation.probability(self, "threshold")
        validation.at_least(self, 1, "max_iter")


@dataclasses.dataclass(frozen=True)
class REVISEConfig(_LatentConfig):
    """REVISE: ``loss(f(dec(z)), t) + distance_weight * |x - dec(z)|_1``.

    Attributes:
      optimizer: ``"adam"`` (per query) or ``"sgd"`` (plain gradient steps, as published).
      learning_rate: step size (code units); the published plain steps: 1e-5.
      distance_weight: weight of the L1 distance to the query (summed over pixels);
        published: 1.
      threshold: target probability at which a query with a class target stops.
      tolerance: score at or below which a soft or regression target counts as reached.
      max_iter: updates per query at most; published: 50,000.
    """

    distance: ClassVar[str] = "input_l1"


@dataclasses.dataclass(frozen=True)
class XGEMsConfig(_LatentConfig):
    """xGEMs: ``loss(f(dec(z)), t) + distance_weight * ||z - z0||_2``.

    Attributes:
      optimizer: ``"adam"`` (per query) or ``"sgd"`` (plain gradient steps).
      learning_rate: step size (code units).
      distance_weight: weight of the Euclidean distance to the query's code.
      threshold: target probability at which a query with a class target stops.
      tolerance: score at or below which a soft or regression target counts as reached.
      max_iter: updates per query at most.
    """

    distance: ClassVar[str] = "latent_l2"


# ----------------------------------------------------------------------------- the search


class LatentState(struct.PyTreeNode):
    z: Array  # [B, k] current code
    z0: Array  # [B, k] the query's code
    x0: Array  # [B, H, W, C] the query
    opt_state: Any  # per-query optimiser state (leading batch axis)


class LatentSearch(SearchBase):
    """REVISE or xGEMs (by the config's type) as an
    :class:`~jaxcf.methods.IterativeSearch`; the iterate is the code ``z``."""

    classifier: Any
    vae: Any
    config: REVISEConfig | XGEMsConfig = struct.field(pytree_node=False)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.vae.image_shape)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        return check_image_queries(
            self.classifier, self.image_shape, x, target, self.target_kinds, "VAE"
        )

    def _tx(self) -> optax.GradientTransformation:
        lr = self.config.learning_rate
        return optax.adam(lr) if self.config.optimizer == "adam" else optax.sgd(lr)

    def init(self, x: Array, target: Array, key: Array) -> LatentState:
        z0 = self.vae.encode(x).astype(jnp.float32)
        # vmap: each query its own optimiser state (Adam's step count included).
        return LatentState(z=z0, z0=z0, x0=x, opt_state=jax.vmap(self._tx().init)(z0))

    def loss(self, z: Array, z0: Array, x0: Array, target: Array) -> tuple[Array, Array]:
        """Summed objective of the batch (each query's gradient is its own) and the logits."""
        img = self.vae.decode(z)
        logits = self.classifier.logits(img)
        if self.config.distance == "input_l1":
            dist = l1_distance(img, x0)
        else:
            dist = safe_norm(z - z0)
        objective = targets_lib.target_loss(logits, target) + self.config.distance_weight * dist
        return jnp.sum(objective), logits

    def step(self, s: LatentState, target: Array) -> tuple[Array, Array, LatentState]:
        grad, logits = jax.grad(self.loss, has_aux=True)(s.z, s.z0, s.x0, target)
        updates, opt_state = jax.vmap(self._tx().update)(grad, s.opt_state)
        return *self.score(logits, target), s.replace(z=s.z + updates, opt_state=opt_state)

    def current(self, state: LatentState) -> Array:
        return self.vae.decode(state.z)

    def extras(self, state: LatentState) -> dict[str, Array]:
        return {"z": state.z, "z0": state.z0}


def _latent_search(classifier: Any, vae: Any, config: Any, kind: type) -> LatentSearch:
    if not isinstance(config, kind):
        raise TypeError(f"expected a {kind.__name__}, got {type(config).__name__}")
    classifier, vae = as_pure(classifier), as_pytree(vae)
    check_vae(vae, classifier)
    return LatentSearch(classifier=classifier, vae=vae, config=config)


def revise_search(classifier: Any, vae: Any, config: REVISEConfig = REVISEConfig()) -> LatentSearch:
    """The jittable REVISE search for a classifier and a VAE (checks the models' shapes, not
    the queries).

    Raises:
      TypeError: a VAE or classifier without the protocol.
      ValueError: a VAE whose codes or images do not match its declarations, or whose images
        the classifier does not take.
    """
    return _latent_search(classifier, vae, config, REVISEConfig)


def xgems_search(classifier: Any, vae: Any, config: XGEMsConfig = XGEMsConfig()) -> LatentSearch:
    """The jittable xGEMs search (see :func:`revise_search`)."""
    return _latent_search(classifier, vae, config, XGEMsConfig)


def revise(
    classifier: Any, vae: Any, x: Any, target: Any, config: REVISEConfig = REVISEConfig()
) -> CFResult:
    """REVISE counterfactuals for a batch.

    Args:
      classifier: offers ``logits(x) -> [B, C]`` on the VAE's images.
      vae: offers ``encode``, ``decode``, ``latent_dim`` and ``image_shape`` (see the module
        docstring).
      x: ``[B, H, W, C]`` queries in ``[0, 1]``.
      target: ``[B]`` int classes, ``[B, C]`` class distributions or ``[B]`` float regression
        values.
      config: hyper-parameters (static).

    Returns:
      A :class:`~jaxcf.core.CFResult` with ``x_cf = dec(z*)`` and ``extras["z"]``,
      ``extras["z0"]`` (``[B, k]``).
    """
    search = revise_search(classifier, vae, config)
    x, target = search.check(x, target)
    return solve_jit(search, x, target)


def xgems(
    classifier: Any, vae: Any, x: Any, target: Any, config: XGEMsConfig = XGEMsConfig()
) -> CFResult:
    """xGEMs counterfactuals for a batch (arguments as :func:`revise`)."""
    search = xgems_search(classifier, vae, config)
    x, target = search.check(x, target)
    return solve_jit(search, x, target)
