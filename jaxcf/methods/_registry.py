"""Methods by name: experiments list ``MethodSpec("deduce", DeDUCEConfig())`` and the registry
builds the explainer, so that a config needs no field per method and the family issues' methods
plug in with one :func:`register` call.

A registered method has a builder ``build(config, **resources) -> explainer``, the type of its
config (``None`` in a spec means the default one), and the names of the resources it needs from
the experiment (``"classifier"``, ``"density"``, ``"generator"``, ``"diffusion"``, ``"vae"``
for REVISE and xGEMs, ``"attribute_model"`` for AIP and AIP_R, ``"prototypes"`` for CFProto,
...). An experiment holds its resources in a dict; a spec's ``resources`` maps a method's
resource name to a key of that dict when they differ (the DeDUCE protocol explains its
baselines with ``{"classifier": "baseline"}``).

A spec's ``precision`` (``"float32"``, the default, or ``"bfloat16"``) is the dtype its
classifier computes in: :func:`make` wraps the ``"classifier"`` resource with
:func:`jaxcf.core.with_precision`, so the method's own arithmetic (losses, thresholds,
densities, iterates) stays float32.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from jaxcf.core import check_explainer, check_precision, with_precision
from jaxcf.methods._aip import AIPConfig, AIPRandomConfig, aip_explainer, aip_random_search
from jaxcf.methods._cfproto import CFProtoConfig, cfproto_search
from jaxcf.methods._deduce import DeDUCEConfig, deduce_search
from jaxcf.methods._diffexplainer import DiffExplainerConfig, diffexplainer
from jaxcf.methods._fgsm import FGSMConfig, fgsm_explainer
from jaxcf.methods._generator import GeneratorConfig, generator_explainer
from jaxcf.methods._guided import GuidedDiffusionConfig, guided_diffusion_explainer
from jaxcf.methods._jsma import JSMAConfig, jsma_search
from jaxcf.methods._latent import REVISEConfig, XGEMsConfig, revise_search, xgems_search
from jaxcf.methods._search import SearchExplainer
from jaxcf.methods._wachter import WachterConfig, wachter_search


@dataclasses.dataclass(frozen=True)
class _Entry:
    build: Callable[..., Any]
    config_type: type
    needs: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str, build: Callable[..., Any], *, config_type: type, needs: tuple[str, ...]
) -> None:
    """Registers a method: ``build(config, **{need: resource})`` returns its explainer.

    Raises:
      ValueError: ``name`` is taken.
    """
    if name in _REGISTRY:
        raise ValueError(f"a method called {name!r} is already registered")
    _REGISTRY[name] = _Entry(build=build, config_type=config_type, needs=tuple(needs))


def method_names() -> tuple[str, ...]:
    """The registered method names, sorted."""
    return tuple(sorted(_REGISTRY))


def method_needs(name: str) -> tuple[str, ...]:
    """The resources method ``name`` is built from (``("classifier", "density")`` for
    DeDUCE).

    Raises:
      ValueError: an unknown name.
    """
    return _entry(name).needs


def describe(*names: str) -> str:
    """What each named method (default: every registered one) is built from: its config type
    with the default values, and the resources :func:`make` needs for it. Also
    ``jaxcf methods [NAME ...]``.

    Raises:
      ValueError: an unknown name.
    """
    blocks = []
    for name in names or method_names():
        entry = _entry(name)
        defaults = entry.config_type()
        fields = ", ".join(
            f"{f.name}={getattr(defaults, f.name)!r}"
            for f in dataclasses.fields(defaults)
            if f.init
        )
        blocks.append(
            f"{name}: {entry.config_type.__name__}; needs {', '.join(entry.needs)}\n"
            + textwrap.fill(fields, 96, initial_indent="    ", subsequent_indent="    ")
        )
    return "\n".join(blocks)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(method_names())}")
    return _REGISTRY[name]


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One method of an experiment.

    Attributes:
      name: a registered method name.
      config: the method's config; ``None`` for its defaults.
      label: the name results and reports use (default ``name``); two specs of one method
        need different labels.
      resources: method resource name -> key in the experiment's resources, where they differ.
      precision: the dtype the method's classifier computes in, ``"float32"`` or
        ``"bfloat16"`` (see :mod:`jaxcf.core`).

    Raises:
      ValueError: unknown method, resource or precision.
      TypeError: a config of another method's type.
    """

    name: str
    config: Any = None
    label: str | None = None
    resources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    precision: str = "float32"

    def __post_init__(self):
        check_precision(self.precision)
        entry = _entry(self.name)
        if self.config is not None and not isinstance(self.config, entry.config_type):
            raise TypeError(
                f"method {self.name!r} takes a {entry.config_type.__name__}, "
                f"got {type(self.config).__name__}"
            )
        unknown = set(self.resources) - set(entry.needs)
        if unknown:
            raise ValueError(
                f"method {self.name!r} uses resources {entry.needs}, not {sorted(unknown)}"
            )

    @property
    def key(self) -> str:
        return self.label or self.name

    def resolved_config(self) -> Any:
        return self.config if self.config is not None else _entry(self.name).config_type()

    def resource_keys(self) -> dict[str, str]:
        """Method resource name -> experiment resource key, for every resource it needs."""
        return {need: self.resources.get(need, need) for need in _entry(self.name).needs}


def make(
    spec: MethodSpec | str, config: Any = None, *, precision: str | None = None, **resources: Any
) -> Any:
    """Builds the explainer of a registered method.

    Args:
      spec: a :class:`MethodSpec`, or a method name (then ``config`` is its config).
      precision: the classifier's compute dtype, ``"float32"`` or ``"bfloat16"``; ``None``
        keeps the spec's (``"float32"`` for a name).
      **resources: the experiment's resources by key (more than the method needs is fine).

    Raises:
      ValueError: unknown method or precision, or a resource the method needs is missing.
    """
    if isinstance(spec, str):
        spec = MethodSpec(spec, config, precision=precision or "float32")
    elif precision is not None:
        spec = dataclasses.replace(spec, precision=precision)
    entry = _entry(spec.name)
    kwargs = {}
    for need, key in spec.resource_keys().items():
        if key not in resources or resources[key] is None:
            raise ValueError(f"method {spec.key!r} needs a {need!r} (resource {key!r})")
        kwargs[need] = resources[key]
    if "classifier" in kwargs:  # float32 returns it untouched
        kwargs["classifier"] = with_precision(kwargs["classifier"], spec.precision)
    explainer = entry.build(spec.resolved_config(), **kwargs)
    check_explainer(explainer)
    return explainer


def _register_builtins() -> None:
    register(
        "deduce",
        lambda config, classifier, density: SearchExplainer(
            deduce_search(classifier, density, config)
        ),
        config_type=DeDUCEConfig,
        needs=("classifier", "density"),
    )
    register(
        "jsma",
        lambda config, classifier: SearchExplainer(jsma_search(classifier, config)),
        config_type=JSMAConfig,
        needs=("classifier",),
    )
    register(
        "wachter",
        lambda config, classifier: SearchExplainer(wachter_search(classifier, config)),
        config_type=WachterConfig,
        needs=("classifier",),
    )
    # CFProto's prototypes (a PrototypeBank) carry the encoder they were built with, which is
    # also the autoencoder of its reconstruction term: one resource, with or without an
    # autoencoder (input-space prototypes for series and rows).
    register(
        "cfproto",
        lambda config, classifier, prototypes: SearchExplainer(
            cfproto_search(classifier, prototypes, config)
        ),
        config_type=CFProtoConfig,
        needs=("classifier", "prototypes"),
    )
    register(
        "fgsm",
        lambda config, classifier: fgsm_explainer(classifier, config),
        config_type=FGSMConfig,
        needs=("classifier",),
    )
    register(
        "generator",
        lambda config, classifier, generator: generator_explainer(classifier, generator, config),
        config_type=GeneratorConfig,
        needs=("classifier", "generator"),
    )
    register(
        "diffexplainer",
        lambda config, classifier, agent, diffusion: diffexplainer(
            classifier, agent, diffusion, config
        ),
        config_type=DiffExplainerConfig,
        needs=("classifier", "agent", "diffusion"),
    )
    register(
        "guided_diffusion",
        lambda config, classifier, diffusion: guided_diffusion_explainer(
            classifier, diffusion, config
        ),
        config_type=GuidedDiffusionConfig,
        needs=("classifier", "diffusion"),
    )

    # Latent-space searches: a VAE (REVISE, xGEMs) or an attribute-conditioned
    # encoder-decoder (AIP, AIP_R).
    register(
        "revise",
        lambda config, classifier, vae: SearchExplainer(revise_search(classifier, vae, config)),
        config_type=REVISEConfig,
        needs=("classifier", "vae"),
    )
    register(
        "xgems",
        lambda config, classifier, vae: SearchExplainer(xgems_search(classifier, vae, config)),
        config_type=XGEMsConfig,
        needs=("classifier", "vae"),
    )
    register(
        "aip",
        lambda config, classifier, attribute_model: aip_explainer(
            classifier, attribute_model, config
        ),
        config_type=AIPConfig,
        needs=("classifier", "attribute_model"),
    )
    register(
        "aip_random",
        lambda config, classifier, attribute_model: SearchExplainer(
            aip_random_search(classifier, attribute_model, config)
        ),
        config_type=AIPRandomConfig,
        needs=("classifier", "attribute_model"),
    )


_register_builtins()
