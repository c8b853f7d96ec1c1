"""DiffExplainer (diffusion autoencoder + distilled agent) as an explainer.

A query ``x`` is encoded by a diffusion autoencoder into its semantic code ``z`` and, by
deterministic DDIM inversion conditioned on ``z``, its stochastic code ``x_T``; decoding
``(z, x_T)`` reproduces the query. The agent (:mod:`jaxcf.training`) reads ``z``; the
gradient of its log-probability of the target class, ``g = d log p_agent(target | z) / d z``,
says which way to move the code. Counterfactuals are decoded, with the query's own ``x_T``, from

    z'(alpha) = z + alpha * ||z|| * g / ||g||

for an increasing sweep of ``alpha`` (a fraction of the code's norm), and scored by the teacher;
the counterfactual is the first one the teacher puts in the target class (probability >=
``threshold``), or the last of the sweep (a failure). Each query's sequence over the sweep is the
paper's graded sequence; the difference of a counterfactual and the reconstruction (``alpha =
0``) is its heatmap (:func:`difference_map`). ``n_iter`` is the number of sweep values decoded
before success (all of them for a failure); ``extras`` hold the chosen ``alpha``, the teacher's
target probability of the reconstruction and the reconstruction itself.

Cost per query: one inversion and ``1 + len(alphas)`` decodings of ``k`` DDIM steps each, ``k``
the inversion's end index plus one (:func:`jaxcf.diffusion.inversion_end`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf import diffusion as diff
from jaxcf.core import CFResult, as_pure, checks, classifier_digest, validation
from jaxcf.core import targets as targets_lib

Array = jax.Array

__all__ = ["DiffExplainer", "DiffExplainerConfig", "difference_map", "diffexplainer"]


@dataclasses.dataclass(frozen=True)
class DiffExplainerConfig:
    """Attributes:
    alphas: the sweep, increasing fractions of ``||z||`` (all > 0).
    num_steps: DDIM steps of the respaced schedule used to invert and decode.
    threshold: the teacher's target probability counted as a flip.
    """

    alphas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)
    num_steps: int = 50
    threshold: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        if (
            not self.alphas
            or any(a <= 0 for a in self.alphas)
            or list(self.alphas) != sorted(self.alphas)
        ):
            raise ValueError(f"alphas must be increasing and > 0, got {self.alphas}")
        validation.at_least(self, 2, "num_steps")
        validation.probability(self, "threshold")


class DiffExplainer(struct.PyTreeNode):
    """A teacher, its agent and a diffusion autoencoder as an explainer (class targets)."""

    teacher: Any
    agent: Any
    model: Any  # DiffusionModel of a diffusion autoencoder
    steps: diff.NoiseSchedule
    config: DiffExplainerConfig = struct.field(pytree_node=False)
    end: int = struct.field(pytree_node=False)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        x = checks.check_queries(x, domain=(0.0, 1.0))
        shape = tuple(self.model.image_shape)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"x has per-query shape {list(x.shape[1:])} but the diffusion autoencoder was "
                f"trained on {list(shape)} images"
            )
        n_out = checks.classifier_io(self.teacher, shape)
        return x, targets_lib.check_target(target, x.shape[0], n_out, ("class",))

    def encode(self, x: Array) -> tuple[Array, Array]:
        """``(z [B, D], x_T [B, H', W', C])`` of queries in ``[0, 1]``."""
        y = self.model.space.to_model(x)
        z = self.model.encode(y)
        x_T = diff.ddim_invert(
            lambda a, t: self.model.denoise(a, t, z), self.steps, y, end=self.end
        )
        return z, x_T

    def decode(self, z: Array, x_T: Array) -> Array:
        """Images in ``[0, 1]`` decoded from codes (DDIM, eta 0, unclipped to retrace the
        inversion)."""
        x0 = diff.sample(
            lambda a, t: self.model.denoise(a, t, z),
            self.steps,
            x_T,
            jnp.zeros(x_T.shape[:1], jnp.uint32),  # unused at eta 0
            start=self.end,
            method="ddim",
            clip=False,
        )
        return jnp.clip(self.model.space.from_model(x0), 0.0, 1.0)

    def direction(self, z: Array, target: Array) -> Array:
        """``[B, D]`` unit directions raising the agent's log-probability of ``target``."""

        def logp(z):
            lp = jax.nn.log_softmax(self.agent.logits(z), axis=-1)
            return jnp.sum(jnp.take_along_axis(lp, target[:, None], axis=1))

        g = jax.grad(logp)(z)
        return g / (jnp.linalg.norm(g, axis=1, keepdims=True) + 1e-12)

    def sweep(self, x: Array, target: Array) -> tuple[Array, Array]:
        """The graded sequence: ``([A + 1, B, ...] images, [A + 1, B] teacher target
        probabilities)`` for ``alpha = 0`` (the reconstruction) and each sweep value."""
        z, x_T = self.encode(x)
        u = self.direction(z, target)
        norm = jnp.linalg.norm(z, axis=1, keepdims=True)
        alphas = jnp.asarray((0.0, *self.config.alphas), jnp.float32)

        def one(alpha):
            img = self.decode(z + alpha * norm * u, x_T)
            p = jax.nn.softmax(self.teacher.logits(img), axis=-1)
            return img, jnp.take_along_axis(p, target[:, None], axis=1)[:, 0]

        return jax.lax.map(one, alphas)

    def __call__(self, x: Array, target: Array, key: Array) -> CFResult:
        del key  # deterministic
        images, probs = self.sweep(x, target)
        hit = probs[1:] >= self.config.threshold  # [A, B]
        found = jnp.any(hit, axis=0)
        a = len(self.config.alphas)
        first = jnp.where(found, jnp.argmax(hit, axis=0), a - 1)  # index into alphas
        b = jnp.arange(x.shape[0])
        x_cf = images[first + 1, b]
        alphas = jnp.asarray(self.config.alphas, jnp.float32)
        return CFResult(
            x_cf,
            found,
            (first + 1).astype(jnp.int32),
            probs[first + 1, b],
            {"alpha": alphas[first], "recon_prob": probs[0], "reconstruction": images[0]},
        )


def difference_map(x_cf: Any, reconstruction: Any) -> Array:
    """``[B, H, W]``: counterfactual minus reconstruction, averaged over channels (positive =
    brighter: red in :func:`jaxcf.report.attribution_grid`)."""
    return jnp.mean(jnp.asarray(x_cf) - jnp.asarray(reconstruction), axis=-1)


def diffexplainer(
    teacher: Any, agent: Any, diffusion: Any, config: DiffExplainerConfig = DiffExplainerConfig()
) -> DiffExplainer:
    """An explainer from a teacher classifier, its agent (:func:`jaxcf.training.
    train_agent`) and the diffusion autoencoder the agent reads.

    Raises:
      ValueError: the diffusion model is no autoencoder; the agent was distilled from another
        teacher or for codes of another width; the teacher does not take the model's images.
    """
    teacher = as_pure(teacher)
    if not diffusion.is_autoencoder:
        raise ValueError("DiffExplainer needs a diffusion autoencoder (a model with encode)")
    if agent.teacher_digest and agent.teacher_digest != classifier_digest(teacher):
        raise ValueError("the agent was distilled from another teacher: distil one for this one")
    probe = jax.ShapeDtypeStruct((1, *diffusion.unet_shape), jnp.float32)
    code = jax.eval_shape(diffusion.encode, probe).shape[1]
    if agent.weight.shape[0] != code:
        raise ValueError(
            f"the agent reads {agent.weight.shape[0]}-d codes, the autoencoder writes {code}-d"
        )
    checks.classifier_io(teacher, tuple(diffusion.image_shape))
    if config.num_steps > diffusion.schedule.num_steps:
        raise ValueError(f"num_steps={config.num_steps} exceeds the model's schedule")
    steps = diffusion.schedule.respace(config.num_steps)
    return DiffExplainer(
        teacher=teacher,
        agent=agent.replace(teacher=teacher),
        model=diffusion,
        steps=steps,
        config=config,
        end=diff.inversion_end(steps),
    )
