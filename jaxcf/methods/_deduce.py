"""DeDUCE: density-guided pixel search on a spectrally normalised classifier (Höltgen et al.).

Per query and iteration, with ``z = features(x)`` and target ``t``:

1. loss ``-v * log p_t(z) / |log p_t(z)| + w * CE(f(x), t) / CE(f(x), t)`` with both
   normalisers treated as constants (so each term contributes a unit-scale gradient); the
   published weights are ``v = w = 1``;
2. zero the gradient of pixels already changed ``max_changes`` times;
3. choose the ``pixels`` pixels with the largest |gradient|;
4. add ``momentum`` times the previous accumulated gradient (momentum only sets the step's sign,
   not the choice), and keep the sum as the new accumulated gradient;
5. ``x -= step * sign(g)`` on the chosen pixels, clip to the domain (the classifier's, [0, 1] for
   our image models, or ``config.domain``).

A query stops when its target softmax reaches ``threshold``. Every query of a batch carries its
own class target (DeDUCE's density is per class, so soft and regression targets are refused);
the batch runs as one ``lax.while_loop`` (see :mod:`jaxcf.methods`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.core import CFResult, as_pure, checks, validation
from jaxcf.core.targets import target_loss
from jaxcf.methods._pixels import PixelSearch, safe_abs, select_pixels
from jaxcf.methods._search import solve_jit_eigen
from jaxcf.models import as_density

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DeDUCEConfig:
    """DeDUCE hyper-parameters; defaults are the published ones.

    Attributes:
      step: size of the sign step on a chosen pixel (pixel units, images in [0, 1]).
      max_changes: how often one pixel may be changed.
      momentum: weight of the previous accumulated gradient in the step's sign.
      ce_weight: weight of the (normalised) cross-entropy term.
      density_weight: weight of the (normalised) density term; 0 leaves a cross-entropy search
        with DeDUCE's change cap and momentum (an ablation, no density needed in the loss).
      pixels: pixels changed per iteration.
      threshold: target softmax at which a query stops.
      max_iter: updates per query at most.
      domain: box ``(lo, hi)`` the pixels are clipped to; ``None`` takes the classifier's.

    Raises:
      ValueError: at construction, for values the search cannot run with.
    """

    step: float = 0.2
    max_changes: int = 5
    momentum: float = 0.6
    ce_weight: float = 1.0
    density_weight: float = 1.0
    pixels: int = 1
    threshold: float = 0.5
    max_iter: int = 700
    domain: tuple[float, float] | None = None

    def __post_init__(self):
        validation.positive(self, "step")
        validation.at_least(self, 1, "max_changes", "pixels", "max_iter")
        validation.non_negative(self, "momentum", "ce_weight", "density_weight")
        validation.probability(self, "threshold")
        validation.box(self, "domain")
        if self.ce_weight == 0 and self.density_weight == 0:
            raise ValueError("DeDUCEConfig: ce_weight and density_weight cannot both be 0")


class DeDUCEState(struct.PyTreeNode):
    x: Array  # [B, H, W, C] current iterate
    changes: Array  # [B, H*W*C] int32, times each pixel was changed
    momentum: Array  # [B, H*W*C] float32, accumulated gradient


class DeDUCESearch(PixelSearch):
    """DeDUCE as an :class:`~jaxcf.methods.IterativeSearch` (a pytree)."""

    classifier: Any
    density: Any
    config: DeDUCEConfig = struct.field(pytree_node=False)
    target_kinds = ("class",)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        """Validates queries, targets and the density against the classifier (no compilation)."""
        x, target = super().check(x, target)
        num_classes = checks.classifier_io(self.classifier, tuple(x.shape[1:]))
        d = checks.feature_dim(self.classifier, tuple(x.shape[1:]))
        checks.check_density(self.density, num_classes, d)
        return x, target

    def init(self, x: Array, target: Array, key: Array) -> DeDUCEState:
        flat = (x.shape[0], x[0].size)
        return DeDUCEState(x=x, changes=jnp.zeros(flat, jnp.int32), momentum=jnp.zeros(flat))

    def loss(self, x: Array, target: Array) -> tuple[Array, Array]:
        """Summed per-query DeDUCE losses, and the logits."""
        z = self.classifier.features(x)
        logits = self.classifier.head(z)
        ce = target_loss(logits, target)
        log_dens = jnp.take_along_axis(self.density.log_prob(z), target[:, None], axis=-1)[:, 0]
        sg = jax.lax.stop_gradient
        cfg = self.config
        per_query = -cfg.density_weight * log_dens / safe_abs(sg(log_dens))
        per_query = per_query + cfg.ce_weight * ce / safe_abs(sg(ce))
        return jnp.sum(per_query), logits

    def step(self, s: DeDUCEState, target: Array) -> tuple[Array, Array, DeDUCEState]:
        cfg = self.config
        grad, logits = jax.grad(self.loss, has_aux=True)(s.x, target)
        g = grad.reshape(s.changes.shape)
        g = jnp.where(s.changes >= cfg.max_changes, 0.0, g)
        chosen = select_pixels(jnp.abs(g), cfg.pixels)
        g = g + cfg.momentum * s.momentum
        flat = s.x.reshape(g.shape)
        flat = jnp.where(chosen, self.clip(flat - cfg.step * jnp.sign(g)), flat)
        changes = s.changes + chosen.astype(jnp.int32)
        new = DeDUCEState(x=flat.reshape(s.x.shape), changes=changes, momentum=g)
        return *self.score(logits, target), new

    def extras(self, s: DeDUCEState) -> dict[str, Array]:
        return {"pixel_changes": jnp.sum(s.changes, axis=-1)}


def deduce_search(classifier: Any, density: Any, config: DeDUCEConfig) -> DeDUCESearch:
    """The jittable DeDUCE search for a classifier and density (no input checks)."""
    return DeDUCESearch(
        classifier=as_pure(classifier, need_features=True),
        density=as_density(density),
        config=config,
    )


def deduce(
    classifier: Any,
    density: Any,
    x: Any,
    target: Any,
    config: DeDUCEConfig = DeDUCEConfig(),
) -> CFResult:
    """Counterfactuals for a batch of images by DeDUCE.

    Args:
      classifier: offers ``features(x) -> [B, D]`` and ``head(z) -> [B, C]`` (an NNX module,
        a :class:`~jaxcf.core.FunctionClassifier`, or any pytree with these methods).
      density: offers ``log_prob(z [B, D]) -> [B, C]``, e.g. :class:`jaxcf.models.GaussianDensity`.
        A plain object with array attributes works too (see :func:`jaxcf.models.as_density`).
      x: ``[B, H, W, C]`` float images in the classifier's domain ([0, 1] for our models).
      target: ``[B]`` int target classes (or one int for the whole batch).
      config: hyper-parameters (static: a new config compiles a new program).

    Returns:
      A :class:`~jaxcf.core.CFResult` (``score``: target probability);
      ``extras["pixel_changes"]`` counts pixel updates per query.
    """
    search = deduce_search(classifier, density, config)
    x, target = search.check(x, target)
    return solve_jit_eigen(search, x, target)
