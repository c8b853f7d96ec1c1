"""Classifier-guided diffusion counterfactuals (DVCE / DiME style) as an explainer.

A query ``x`` (in the classifier's units, ``[0, 1]`` images) is mapped into the diffusion
model's space, noised to an intermediate step ``t0`` (``start``, a fraction of the training
schedule: DiME starts at 30%, DVCE at about 50%), and denoised back to a clean image along a
respaced schedule, with each step's predicted noise shifted by the gradient of

    L = guidance_scale * d(f(x0_est), target) + distance_weight * dist(x0_est, x)

(``d`` the target loss of :mod:`jaxcf.core.targets`, ``dist`` L1 or squared L2 per pixel, summed),
as classifier guidance does (Dhariwal & Nichol 2021): ``eps' = eps + sqrt(1 - abar_i) grad L``.
The classifier cannot judge a noisy image, so ``L`` is taken on a clean estimate ``x0_est``:

* ``"one_step"`` — the one-step estimate ``x0_hat(x_t)``, with the gradient taken through the
  denoiser (DVCE; FastDiME): one denoiser forward and backward per step;
* ``"rollout"`` — a full unguided rollout from ``x_t`` to a clean image at every step, with the
  gradient taken at the rollout's end and applied to ``x_t`` (DiME): step ``i`` costs ``i + 1``
  denoiser calls, ``k (k + 1) / 2`` for ``k`` steps (DiME's 60 steps: 1,830).

``balance`` rescales each gradient to the norm of the predicted noise before weighting (DVCE's
balancing; its weights are 0.1 for the classifier and 0.15 for the distance). A ``schedule`` of
larger guidance scales re-runs the queries that did not reach their target (DiME retries at 8,
10, 15) through :class:`~jaxcf.core.Retry`.

Every query takes its noise from its own key; the result's ``n_iter`` is the denoiser calls
spent on it and ``extras["non_finite"]`` flags a query whose sampling produced NaN or inf: it
is returned as a failure with the query in place of the broken image, never silently.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf import diffusion as diff
from jaxcf.core import CFResult, Retry, as_pure, checks, decision_classifier, validation
from jaxcf.core import targets as targets_lib

Array = jax.Array

__all__ = ["GuidedDiffusion", "GuidedDiffusionConfig", "guided_diffusion_explainer"]


@dataclasses.dataclass(frozen=True)
class GuidedDiffusionConfig:
    """Attributes:
    start: ``t0`` as a fraction of the training schedule, in ``(0, 1]`` (DiME 0.3).
    num_steps: steps of the respaced schedule over the *whole* process; the sampler takes the
      ``~ start * num_steps`` of them below ``t0``.
    method: ``"ddpm"`` (ancestral) or ``"ddim"`` steps.
    eta: DDIM's noise level (``"ddim"`` only).
    clean_estimate: ``"one_step"`` (DVCE, gradient through the denoiser) or ``"rollout"``
      (DiME, unguided rollout at every step).
    guidance_scale: weight of the target loss (> 0).
    schedule: larger guidance scales retried in order for queries that did not flip.
    distance: ``"l1"`` or ``"l2"`` (squared) distance of the clean estimate to the query.
    distance_weight: its weight (>= 0).
    balance: rescale both gradients to the predicted noise's norm first (DVCE).
    threshold: target probability counted as a flip (class targets).
    tolerance: score at or below which a soft or regression target counts as reached.
    """

    start: float = 0.3
    num_steps: int = 100
    method: Literal["ddpm", "ddim"] = "ddpm"
    eta: float = 0.0
    clean_estimate: Literal["one_step", "rollout"] = "one_step"
    guidance_scale: float = 8.0
    schedule: tuple[float, ...] = ()
    distance: Literal["l1", "l2"] = "l1"
    distance_weight: float = 0.05
    balance: bool = False
    threshold: float = 0.5
    tolerance: float = 0.1

    def __post_init__(self):
        validation.one_of(self, "method", ("ddpm", "ddim"))
        validation.one_of(self, "clean_estimate", ("one_step", "rollout"))
        validation.one_of(self, "distance", ("l1", "l2"))
        validation.positive(self, "guidance_scale", "tolerance")
        validation.non_negative(self, "distance_weight", "eta")
        validation.probability(self, "threshold")
        validation.at_least(self, 1, "num_steps")
        if not 0.0 < self.start <= 1.0:
            raise ValueError(
                f"GuidedDiffusionConfig.start must be a fraction of the schedule in (0, 1], "
                f"got {self.start}"
            )
        validation.schedule(self)


class GuidedDiffusion(struct.PyTreeNode):
    """A classifier and a :class:`~jaxcf.models.DiffusionModel` as an explainer."""

    classifier: Any
    model: Any  # DiffusionModel
    steps: diff.NoiseSchedule  # the respaced schedule
    config: GuidedDiffusionConfig = struct.field(pytree_node=False)
    first: int = struct.field(pytree_node=False)  # index of t0 in ``steps``
    kinds: tuple[str, ...] = struct.field(pytree_node=False, default=targets_lib.KINDS)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.image_shape)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        x = checks.check_queries(x, domain=(0.0, 1.0))
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x has per-query shape {list(x.shape[1:])} but the diffusion model was "
                f"trained on {list(self.input_shape)} images"
            )
        n_out = checks.classifier_io(self.classifier, self.input_shape)
        return x, targets_lib.check_target(target, x.shape[0], n_out, self.kinds)

    @property
    def denoiser_calls(self) -> int:
        """Denoiser forward passes per counterfactual (per attempt)."""
        k = self.first + 1
        return k if self.config.clean_estimate == "one_step" else k * (k + 1) // 2

    def _start(self, x: Array, key: Array) -> tuple[Array, Array]:
        """The query in model units and its noised version at ``t0``."""
        y = self.model.space.to_model(x)
        k_start = jax.vmap(lambda k: jax.random.fold_in(k, 2**31 - 2))(key)
        noise = jax.vmap(lambda k: jax.random.normal(k, y.shape[1:]))(k_start)
        return y, diff.q_sample(self.steps, y, self.first, noise)

    def _losses(self, x0: Array, y: Array, target: Array) -> tuple[Array, Array]:
        """Per-query target loss and distance of clean estimates ``x0`` (model units)."""
        logits = self.classifier.logits(jnp.clip(self.model.space.from_model(x0), 0.0, 1.0))
        d = x0 - y
        d = jnp.abs(d) if self.config.distance == "l1" else d * d
        return targets_lib.target_loss(logits, target), jnp.sum(d.reshape(d.shape[0], -1), 1)

    def _rollout(self, x: Array, i: Array, eps: Array) -> Array:
        """The unguided clean image from ``x`` at step index ``i`` (whose noise prediction
        ``eps`` is given): ``i`` more denoiser calls."""
        steps = self.steps
        zero = jnp.zeros_like(x)
        x = diff.denoise_step(steps, x, i, eps, zero, "ddim", 0.0)

        def body(j, x):
            idx = i - 1 - j
            e = self.model.denoise(x, jnp.broadcast_to(steps.timesteps[idx], x.shape[:1]))
            return diff.denoise_step(steps, x, idx, e, zero, "ddim", 0.0)

        return jax.lax.fori_loop(0, i, body, x)

    def _guidance(self, x: Array, i: Array, y: Array, target: Array) -> tuple[Array, Array]:
        """``(eps, grad L)`` at ``x`` (step index ``i``)."""
        cfg = self.config
        t = jnp.broadcast_to(self.steps.timesteps[i], x.shape[:1])
        one = jnp.ones((), jnp.float32)
        if cfg.clean_estimate == "one_step":

            def parts(x):  # summed over the batch: each query's gradient is its own
                eps = self.model.denoise(x, t)
                cls, dist = self._losses(diff.predict_x0(self.steps, x, i, eps), y, target)
                return (jnp.sum(cls), jnp.sum(dist)), eps

            _, pullback, eps = jax.vjp(parts, x, has_aux=True)
        else:
            eps = self.model.denoise(x, t)
            x0 = self._rollout(x, i, eps)  # gradient at the rollout's end, applied to x_t

            def parts(x0):
                cls, dist = self._losses(x0, y, target)
                return jnp.sum(cls), jnp.sum(dist)

            _, pullback = jax.vjp(parts, x0)
        if not cfg.balance:  # one backward pass
            (g,) = pullback((cfg.guidance_scale * one, cfg.distance_weight * one))
            return eps, g
        (g_cls,) = pullback((one, 0.0 * one))
        (g_dist,) = pullback((0.0 * one, one))
        norm_eps = _norm(eps)
        g_cls = g_cls * norm_eps / (_norm(g_cls) + 1e-12)
        g_dist = g_dist * norm_eps / (_norm(g_dist) + 1e-12)
        return eps, cfg.guidance_scale * g_cls + cfg.distance_weight * g_dist

    def __call__(self, x: Array, target: Array, key: Array) -> CFResult:
        cfg = self.config
        y, x_t = self._start(x, key)
        sqrt_1m = jnp.sqrt(1.0 - self.steps.alphas_cumprod)

        def body(x, i):
            eps, g = self._guidance(x, i, y, target)
            eps = eps + sqrt_1m[i] * g
            noise = diff.step_noise(key, i, x)
            return diff.denoise_step(self.steps, x, i, eps, noise, cfg.method, cfg.eta), None

        x0, _ = jax.lax.scan(body, x_t, jnp.arange(self.first, -1, -1, dtype=jnp.int32))
        return self._result(x, x0, target)

    def unguided(self, x: Array, key: Array) -> Array:
        """The same start (``x`` noised to ``t0`` with the same key) denoised without guidance:
        the baseline a counterfactual should beat on closeness to the query. ``[B, ...]`` in
        the classifier's units."""
        _, x_t = self._start(x, key)
        cfg = self.config
        x0 = diff.sample(
            self.model.denoise,
            self.steps,
            x_t,
            key,
            start=self.first,
            method=cfg.method,
            eta=cfg.eta,
        )
        return jnp.clip(self.model.space.from_model(x0), 0.0, 1.0)

    def _result(self, x: Array, x0: Array, target: Array) -> CFResult:
        cfg = self.config
        x_cf = jnp.clip(self.model.space.from_model(x0), 0.0, 1.0)
        finite = jnp.all(jnp.isfinite(x0).reshape(x0.shape[0], -1), axis=1)
        x_cf = jnp.where(finite.reshape((-1,) + (1,) * (x.ndim - 1)), x_cf, x)
        score, success = targets_lib.score_outputs(
            decision_classifier(self.classifier).logits(x_cf),
            target,
            threshold=cfg.threshold,
            tolerance=cfg.tolerance,
        )
        n = jnp.full(x.shape[0], self.denoiser_calls, jnp.int32)
        return CFResult(x_cf, success & finite, n, score, {"non_finite": ~finite})


def _norm(g: Array) -> Array:
    """Per-query L2 norm ``[B, 1, ..., 1]``."""
    n = jnp.sqrt(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1))
    return n.reshape((-1,) + (1,) * (g.ndim - 1))


def guided_diffusion_explainer(
    classifier: Any, diffusion: Any, config: GuidedDiffusionConfig = GuidedDiffusionConfig()
) -> GuidedDiffusion | Retry:
    """An explainer from a classifier and a trained diffusion model (e.g.
    :func:`jaxcf.models.load_diffusion`); wrapped in
    :class:`~jaxcf.core.Retry` over ``(guidance_scale, *schedule)`` when the config has a
    schedule.

    Raises:
      ValueError: the classifier does not take the diffusion model's image shape, or
        ``num_steps`` exceeds the model's schedule.
    """
    classifier = as_pure(classifier)
    shape = tuple(diffusion.image_shape)
    checks.classifier_io(classifier, shape)  # raises on another image size or channel count
    total = diffusion.schedule.num_steps
    if config.num_steps > total:
        raise ValueError(
            f"num_steps={config.num_steps} exceeds the model's {total}-step training schedule"
        )
    steps = diffusion.schedule.respace(config.num_steps)
    first = steps.index_of(int(round(config.start * (total - 1))))
    explainer = GuidedDiffusion(
        classifier=classifier, model=diffusion, steps=steps, config=config, first=first
    )
    if not config.schedule:
        return explainer
    return Retry(explainer, "guidance_scale", (config.guidance_scale, *config.schedule))
