"""Amortised counterfactuals: a trained conditional generator explains a batch in one pass.

``x_cf = G(x, y_m, y_t, z)`` with ``y_m`` the classifier's view of the query (probabilities,
or its regression output) and ``y_t`` the target as a vector: a one-hot class, a distribution
(soft target) or a ``[1]`` value (regression). The noise ``z`` comes from the query's own key,
so the runner's ``num_cfs`` gives several diverse counterfactuals per query (the autoencoder
variant has no noise: its counterfactuals of one query coincide). Generators are trained by
:mod:`jaxcf.training`.

Tabular generators take ``config.fixed``: column names kept exactly as in the query (besides
the generator's own immutable and increasing constraints).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.core import CFResult, PureModule, as_pure, checks, decision_classifier, validation
from jaxcf.core import targets as targets_lib
from jaxcf.models import generators

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Attributes:
    threshold: target probability counted as a flip for class targets.
    tolerance: score at or below which a soft or regression target counts as reached.
    fixed: tabular only: columns to keep as in the query.
    """

    threshold: float = 0.5
    tolerance: float = 0.1
    fixed: tuple[str, ...] = ()

    def __post_init__(self):
        validation.probability(self, "threshold")
        validation.positive(self, "tolerance")
        object.__setattr__(self, "fixed", tuple(self.fixed))
        if not all(isinstance(c, str) for c in self.fixed):
            raise ValueError(f"GeneratorConfig.fixed must be column names, got {self.fixed!r}")


class GeneratorExplainer(struct.PyTreeNode):
    """A generator and its classifier as an explainer (a pytree; see the module docstring)."""

    classifier: Any
    generator: Any  # the generator's pure form (PureModule)
    fixed_mask: Array | None  # [n_columns] float, tabular only
    config: GeneratorConfig = struct.field(pytree_node=False)
    kinds: tuple[str, ...] = struct.field(pytree_node=False)
    input_shape: tuple[int, ...] = struct.field(pytree_node=False)
    domain: tuple[float, float] | None = struct.field(pytree_node=False, default=None)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        x = checks.check_queries(x, domain=self.domain)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x has per-query shape {list(x.shape[1:])} but the generator was built for "
                f"{list(self.input_shape)}"
            )
        n_out = checks.classifier_io(self.classifier, tuple(x.shape[1:]))
        target = targets_lib.check_target(target, x.shape[0], n_out, self.kinds)
        transform = getattr(self.generator, "transform", None)
        if transform is not None and hasattr(transform, "check_encoded"):
            transform.check_encoded(jax.device_get(x))
        return x, target

    def __call__(self, x: Array, target: Array, key: Array) -> CFResult:
        cfg = self.config
        kind = targets_lib.kind_of(target)
        outputs = self.classifier.logits(x)
        y_m = generators.model_condition(outputs, regression=kind == "regression")
        y_t = generators.target_condition(target, outputs.shape[1])
        kwargs = {}
        if self.fixed_mask is not None:
            kwargs["fixed"] = jnp.broadcast_to(
                self.fixed_mask, (x.shape[0],) + self.fixed_mask.shape
            )
        x_cf = self.generator.generate(x, y_m, y_t, key, **kwargs)
        score, success = targets_lib.score_outputs(
            decision_classifier(self.classifier).logits(x_cf),
            target,
            threshold=cfg.threshold,
            tolerance=cfg.tolerance,
        )
        return CFResult(x_cf, success, jnp.ones(x.shape[0], jnp.int32), score, {})


def generator_explainer(
    classifier: Any,
    generator: Any,
    config: GeneratorConfig = GeneratorConfig(),
    *,
    transform: Any = None,
) -> GeneratorExplainer:
    """An explainer from a classifier and a generator (an NNX generator of
    :mod:`jaxcf.models.generators`, e.g. from :func:`jaxcf.models.load_generator`).

    Args:
      transform: for tabular generators, the :class:`~jaxcf.tabular.TabularTransform` the
        queries were encoded with; it must be the one the generator was trained on.

    Raises:
      ValueError: the generator's condition width does not fit the classifier's outputs; the
        queries' transform is not the generator's (another schema or another fit);
        ``config.fixed`` names a column the data do not have (or is given for a generator
        without columns).
    """
    gcfg = generator.config
    classifier = as_pure(classifier)
    own = getattr(generator, "transform", None)
    if transform is not None:
        if own is None:
            raise ValueError("a transform was given but the generator is not a tabular one")
        if transform.digest() != own.digest():
            raise ValueError(
                "the generator was trained on another tabular schema or fit (transform digest "
                f"{own.digest()[:12]}, the queries' {transform.digest()[:12]}): encode the "
                "queries with the generator's own transform (generator.transform)"
            )
    transform = own
    if transform is not None:
        input_shape = (transform.dim,)
    else:
        input_shape = tuple(gcfg.input_shape)
    n_out = checks.classifier_io(classifier, input_shape)
    if gcfg.cond_dim == 1 and n_out == 1:
        kinds = ("regression",)
    elif gcfg.cond_dim == n_out:
        kinds = ("class", "soft")
    else:
        raise ValueError(
            f"the generator is conditioned on {gcfg.cond_dim}-d vectors but the classifier "
            f"has {n_out} outputs: it was trained for another classifier"
        )
    fixed_mask = None
    if transform is not None:
        names = list(transform.names)
        unknown = [c for c in config.fixed if c not in names]
        if unknown:
            raise ValueError(f"fixed names unknown columns {unknown}; columns: {names}")
        fixed_mask = jnp.asarray([float(n in config.fixed) for n in names], jnp.float32)
    elif config.fixed:
        raise ValueError("config.fixed applies to tabular generators only")
    domain = getattr(gcfg, "domain", None)
    return GeneratorExplainer(
        classifier=classifier,
        generator=PureModule.wrap(generator),
        fixed_mask=fixed_mask,
        config=config,
        kinds=kinds,
        input_shape=input_shape,
        domain=None if domain is None else tuple(domain),
    )
