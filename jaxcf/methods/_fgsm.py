"""FGSM towards a target, the input-space baseline of the AIP paper (after Goodfellow et al.).

One signed gradient step of size ``eps`` down the target loss (:mod:`jaxcf.core.targets`), clipped
to
the domain: ``x_cf = clip(x - eps * sign(grad_x loss(f(x), t)))``. A one-pass explainer: every
query costs one forward and backward pass. With ``config.schedule`` the queries that did not
reach their target are retried at the next ``eps`` of the schedule
(:class:`~jaxcf.core.Retry`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.core import (
    CFResult,
    Retry,
    as_pure,
    checks,
    decision_classifier,
    explain_batch,
    validation,
)
from jaxcf.core import targets as targets_lib

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class FGSMConfig:
    """Attributes:
    eps: step size (input units) of the first attempt.
    schedule: larger step sizes tried in order for queries that did not reach their target
      (``()``: a single attempt).
    threshold: target probability counted as a flip for class targets.
    tolerance: score at or below which a soft or regression target counts as reached.
    domain: box ``(lo, hi)`` the result is clipped to; ``None`` takes the classifier's
      (unbounded if it declares none).
    """

    eps: float = 0.05
    schedule: tuple[float, ...] = ()
    threshold: float = 0.5
    tolerance: float = 0.1
    domain: tuple[float, float] | None = None

    def __post_init__(self):
        validation.positive(self, "eps", "tolerance")
        validation.probability(self, "threshold")
        validation.box(self, "domain")
        validation.schedule(self)


class FGSM(struct.PyTreeNode):
    """One targeted FGSM step as an explainer (a pytree)."""

    classifier: Any
    config: FGSMConfig = struct.field(pytree_node=False)

    @property
    def domain(self) -> checks.Box | None:
        return checks.domain_of(self.classifier, self.config.domain)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        return checks.check_inputs(
            self.classifier, x, target, domain=self.domain, kinds=targets_lib.KINDS
        )

    def __call__(self, x: Array, target: Array, key: Array) -> CFResult:
        cfg = self.config

        def loss(x):
            return jnp.sum(targets_lib.target_loss(self.classifier.logits(x), target))

        x_cf = x - cfg.eps * jnp.sign(jax.grad(loss)(x))
        if self.domain is not None:
            x_cf = jnp.clip(x_cf, *self.domain)
        score, success = targets_lib.score_outputs(
            decision_classifier(self.classifier).logits(x_cf),
            target,
            threshold=cfg.threshold,
            tolerance=cfg.tolerance,
        )
        return CFResult(x_cf, success, jnp.ones(x.shape[0], jnp.int32), score, {})


def fgsm_explainer(classifier: Any, config: FGSMConfig = FGSMConfig()) -> FGSM | Retry:
    """FGSM for a classifier; wrapped in :class:`~jaxcf.core.Retry` over
    ``(eps, *schedule)`` when the config has a schedule."""
    explainer = FGSM(classifier=as_pure(classifier), config=config)
    if not config.schedule:
        return explainer
    return Retry(explainer, "eps", (config.eps, *config.schedule))


def fgsm(classifier: Any, x: Any, target: Any, config: FGSMConfig = FGSMConfig()) -> CFResult:
    """Targeted FGSM counterfactuals for a batch (with retries at larger ``eps`` if the config
    has a schedule: ``extras["attempt"]`` and ``extras["eps"]`` say which succeeded)."""
    return explain_batch(fgsm_explainer(classifier, config), x, target)
