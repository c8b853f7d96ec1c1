"""The suite's families: for each, its models (random weights, :mod:`._models`) and the program
one batch of queries runs, with the same work whatever the queries' outcome.

* searches (DeDUCE, JSMA, Wachter, REVISE, AIP): :func:`jaxcf.methods.solve` over the search
  wrapped in :class:`~benchmarks.common.FixedIterations`, so every query takes the preset's
  ``updates`` (one ``while`` loop of ``updates + 1`` steps, the last the final check);
* FGSM and the generators: the explainer's one call (a gradient step, a forward pass);
* the guided samplers: one attempt (no retried guidance scales), a fixed number of steps;
* DiffExplainer: its inversion and its whole sweep of decodings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.common import FixedIterations
from benchmarks.diffusion import one_attempt
from benchmarks.pixel_search import make_search
from benchmarks.suite import _models as models
from benchmarks.suite._config import Preset
from jaxcf import diffusion as diff
from jaxcf.methods import (
    AIPConfig,
    DiffExplainerConfig,
    FGSMConfig,
    GeneratorConfig,
    GuidedDiffusionConfig,
    REVISEConfig,
    WachterConfig,
    aip_search,
    diffexplainer,
    fgsm_explainer,
    generator_explainer,
    guided_diffusion_explainer,
    revise_search,
    solve,
    wachter_search,
)
from jaxcf.models import MLPConfig, ResNetConfig, StandardResNetConfig

MNIST = (28, 28, 1)


@dataclasses.dataclass(frozen=True)
class Program:
    """One batch's program: ``fn(*args)``, jitted by the suite.

    Attributes:
      fn: the function.
      args: its arguments (the explainer or search first, then the queries, targets, keys).
      while_trips: trip counts of its ``while`` loops, for the FLOP count
        (:func:`benchmarks.common.program_flops`).
    """

    fn: Callable
    args: tuple
    while_trips: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Family:
    """A family ready to run.

    Attributes:
      name: the family's name.
      method: the method, as :func:`jaxcf.methods.make` names it.
      description: what runs, on which models, with which fixed work.
      work: the fixed work per query (``updates``, ``steps``, ``denoiser_calls``, ...).
      models: each model's config and parameter count.
      make: ``batch -> Program``.
    """

    name: str
    method: str
    description: str
    work: dict[str, Any]
    models: dict[str, Any]
    make: Callable[[int], Program]


def _solve_fixed(search, x, target, keys):
    return solve(FixedIterations(search), x, target, keys)


def _explain(explainer, x, target, keys):
    return explainer(x, target, keys)


def _model(config, pure) -> dict[str, Any]:
    spec = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    spec.pop("transform", None)  # a fitted tabular transform: its layout is the point
    return {"config": spec, "parameters": models.parameters(pure)}


class Cache:
    """Models shared by families (built once per run), and the seconds spent building."""

    def __init__(self) -> None:
        self._models: dict[Any, Any] = {}

    def get(self, key, build: Callable[[], Any]):
        if key not in self._models:
            self._models[key] = build()
        return self._models[key]


def _search_family(name, method, search, description, updates, shape, classes, model_info):
    def make(batch: int) -> Program:
        x = models.images(batch, shape)
        t = models.classes(batch, classes)
        return Program(_solve_fixed, (search, x, t, models.keys(batch)), (updates + 1,))

    search.check(models.images(2, shape), models.classes(2, classes))  # shapes fit
    return Family(
        name,
        method,
        description + f" Every query runs {updates} updates ({updates + 1} steps).",
        {"updates": updates, "steps": updates + 1},
        model_info,
        make,
    )


def _explainer_family(name, method, explainer, description, work, inputs, classes, model_info):
    def make(batch: int) -> Program:
        return Program(
            _explain, (explainer, inputs(batch), models.classes(batch, classes), models.keys(batch))
        )

    explainer.check(inputs(2), models.classes(2, classes))  # shapes and domains fit
    return Family(name, method, description, work, model_info, make)


def _resnet(preset: Preset, cache: Cache, spectral: bool):
    if spectral:
        config = ResNetConfig(base_width=preset.resnet_width, blocks=preset.resnet_blocks)
    else:
        config = StandardResNetConfig(base_width=preset.resnet_width, blocks=preset.resnet_blocks)
    pure = cache.get(config, lambda: models.classifier(config))
    return config, pure


def _face_classifier(preset: Preset, cache: Cache, classes: int = 2):
    config = dataclasses.replace(preset.face_classifier, num_classes=classes)
    return config, cache.get(config, lambda: models.classifier(config))


def _unet(preset: Preset, cache: Cache):
    return cache.get(("unet", preset.unet), lambda: models.diffusion_model(preset.unet))


def build(name: str, preset: Preset, cache: Cache) -> Family:
    """Builds family ``name`` at ``preset``'s sizes (models from ``cache`` when shared)."""
    return _BUILDERS[name](preset, cache)


def _deduce(preset: Preset, cache: Cache) -> Family:
    config, clf = _resnet(preset, cache, spectral=True)
    features = 8 * preset.resnet_width
    density = models.density(config.num_classes, features)
    search = make_search("deduce", clf, density, max_iter=preset.updates)
    return _search_family(
        "deduce",
        "deduce",
        search,
        f"DeDUCE on the DeDUCE paper's ResNet-18 (soft spectral norm c = 4, width "
        f"{preset.resnet_width}, 28x28x1) with a random Gaussian density per class on its "
        f"{features}-d features.",
        preset.updates,
        MNIST,
        config.num_classes,
        {
            "classifier": _model(config, clf),
            "density": {"classes": config.num_classes, "dim": features},
        },
    )


def _jsma(preset: Preset, cache: Cache) -> Family:
    config, clf = _resnet(preset, cache, spectral=False)
    return _search_family(
        "jsma",
        "jsma",
        make_search("jsma", clf, max_iter=preset.updates),
        f"JSMA on the plain ResNet-18 of the DeDUCE paper's baselines (width "
        f"{preset.resnet_width}, 28x28x1).",
        preset.updates,
        MNIST,
        config.num_classes,
        {"classifier": _model(config, clf)},
    )


def _wachter(preset: Preset, cache: Cache) -> Family:
    config, clf = _resnet(preset, cache, spectral=False)
    return _search_family(
        "wachter",
        "wachter",
        wachter_search(clf, WachterConfig(max_iter=preset.updates)),
        f"Wachter (Adam) on the plain ResNet-18 (width {preset.resnet_width}, 28x28x1).",
        preset.updates,
        MNIST,
        config.num_classes,
        {"classifier": _model(config, clf)},
    )


def _fgsm(preset: Preset, cache: Cache) -> Family:
    config, clf = _resnet(preset, cache, spectral=False)
    return _explainer_family(
        "fgsm",
        "fgsm",
        fgsm_explainer(clf, FGSMConfig()),
        f"FGSM, one signed gradient step, on the plain ResNet-18 (width {preset.resnet_width}, "
        "28x28x1): a forward and backward pass, and a forward pass to score.",
        {"gradient_steps": 1},
        lambda n: models.images(n, MNIST),
        config.num_classes,
        {"classifier": _model(config, clf)},
    )


def _revise(preset: Preset, cache: Cache) -> Family:
    config, clf = _face_classifier(preset, cache)
    vae = cache.get(preset.vae, lambda: models.vae(preset.vae))
    return _search_family(
        "revise",
        "revise",
        revise_search(clf, vae, REVISEConfig(max_iter=preset.updates)),
        f"REVISE (Adam in the code) through the {preset.vae.input_shape[0]}x"
        f"{preset.vae.input_shape[1]} VAE ({preset.vae.latent_dim}-d code) explaining the face "
        "CNN.",
        preset.updates,
        preset.vae.input_shape,
        config.num_classes,
        {"classifier": _model(config, clf), "vae": _model(preset.vae, vae)},
    )


def _aip(preset: Preset, cache: Cache) -> Family:
    config, clf = _face_classifier(preset, cache)
    model = cache.get(preset.attgan, lambda: models.attribute_model(preset.attgan))
    method = AIPConfig(max_iter=preset.updates, stop_when_stalled=False)
    return _search_family(
        "aip",
        "aip",
        aip_search(clf, model, method),
        f"AIP (plain decaying steps in code and attributes) through the AttGAN-like model "
        f"(encoder widths {list(preset.attgan.encoder_widths)}, {preset.attgan.latent_dim}-d "
        f"latent, {preset.attgan.num_attributes} attributes) explaining the face CNN.",
        preset.updates,
        preset.attgan.input_shape,
        config.num_classes,
        {"classifier": _model(config, clf), "attribute_model": _model(preset.attgan, model)},
    )


def _generator_image(preset: Preset, cache: Cache) -> Family:
    cfg = preset.image_generator
    config, clf = _face_classifier(preset, cache, classes=cfg.cond_dim)
    gen = cache.get(cfg, lambda: models.generator(cfg))
    return _explainer_family(
        "generator_image",
        "generator",
        generator_explainer(clf, gen, GeneratorConfig()),
        f"The image generator ({cfg.input_shape[0]}x{cfg.input_shape[1]}x{cfg.input_shape[2]}, "
        f"{cfg.cond_dim} classes, width {cfg.width}, {cfg.blocks} residual blocks at full "
        "resolution): one forward pass, the classifier before and after.",
        {"generator_passes": 1},
        lambda n: models.images(n, cfg.input_shape),
        cfg.cond_dim,
        {"classifier": _model(config, clf), "generator": _model(cfg, gen)},
    )


def _generator_ecg(preset: Preset, cache: Cache) -> Family:
    cfg, ccfg = preset.series_generator, preset.series_classifier
    clf = cache.get(ccfg, lambda: models.classifier(ccfg))
    gen = cache.get(cfg, lambda: models.generator(cfg))
    return _explainer_family(
        "generator_ecg",
        "generator",
        generator_explainer(clf, gen, GeneratorConfig()),
        f"The ECG generator (bidirectional LSTM, {cfg.hidden} units, {cfg.noise_dim} noise "
        f"channels per step, {cfg.input_shape[0]} steps) explaining the paper's BiLSTM "
        f"({ccfg.hidden} units): one forward pass.",
        {"generator_passes": 1},
        lambda n: models.series(n, cfg.input_shape),
        cfg.cond_dim,
        {"classifier": _model(ccfg, clf), "generator": _model(cfg, gen)},
    )


def _generator_tabular(preset: Preset, cache: Cache) -> Family:
    transform, encoded = cache.get("adult", models.adult_encoded)
    cfg = models.tabular_generator_config(transform, preset.tabular_width, preset.tabular_blocks)
    ccfg = MLPConfig(input_shape=(transform.dim,), num_classes=2, hidden=preset.tabular_hidden)
    clf = cache.get(ccfg, lambda: models.classifier(ccfg))
    gen = cache.get(("tabular", cfg.width, cfg.blocks), lambda: models.generator(cfg))
    rows = jnp.asarray(encoded, jnp.float32)

    def inputs(n: int) -> jax.Array:
        return jnp.tile(rows, (-(-n // len(rows)), 1))[:n]

    return _explainer_family(
        "generator_tabular",
        "generator",
        generator_explainer(clf, gen, GeneratorConfig()),
        f"The Adult generator (residual MLP, width {cfg.width}, {cfg.blocks} blocks, "
        f"{transform.dim}-d encoded rows, Gumbel heads and exact constraints) explaining an MLP "
        f"({preset.tabular_hidden} hidden): one forward pass.",
        {"generator_passes": 1},
        inputs,
        2,
        {"classifier": _model(ccfg, clf), "generator": _model(cfg, gen)},
    )


def _guided(preset: Preset, cache: Cache, estimate: str) -> Family:
    config, clf = _face_classifier(preset, cache)
    model = _unet(preset, cache)
    method = one_attempt(
        GuidedDiffusionConfig(
            start=preset.guided_start, num_steps=preset.guided_steps, clean_estimate=estimate
        )
    )
    explainer = guided_diffusion_explainer(clf, model, method)
    steps, calls = explainer.first + 1, explainer.denoiser_calls
    name = "guided_one_step" if estimate == "one_step" else "guided_rollout"
    how = (
        "a denoiser forward and backward pass and the classifier's gradient per step"
        if estimate == "one_step"
        else f"an unguided rollout to a clean image at every step ({calls} denoiser calls)"
    )
    family = _explainer_family(
        name,
        "guided_diffusion",
        explainer,
        f"Classifier-guided diffusion, {estimate.replace('_', '-')} clean estimate, on the "
        f"{preset.unet.input_shape[0]}x{preset.unet.input_shape[1]} UNet (width "
        f"{preset.unet.width}, multipliers {list(preset.unet.channel_mult)}) explaining the face "
        f"CNN: start {preset.guided_start} of the schedule on a {preset.guided_steps}-step "
        f"respacing, {steps} steps, {how}; one attempt.",
        {"steps": steps, "denoiser_calls": calls},
        lambda n: models.images(n, preset.unet.input_shape),
        config.num_classes,
        {"classifier": _model(config, clf), "unet": _model(preset.unet, model)},
    )
    if estimate == "rollout":  # step i's rollout loop runs i times: i = first, ..., 0
        make = family.make
        family = dataclasses.replace(
            family,
            make=lambda n: dataclasses.replace(make(n), while_trips=(explainer.first / 2,)),
        )
    return family


def _diffexplainer(preset: Preset, cache: Cache) -> Family:
    config, teacher = _face_classifier(preset, cache)
    model = cache.get(("diffae", preset.diffae), lambda: models.diffusion_model(preset.diffae))
    code = preset.diffae.encoder.code_dim
    agent = models.agent(code, teacher)
    method = DiffExplainerConfig(num_steps=preset.diffexplainer_steps)
    explainer = diffexplainer(teacher, agent, model, method)
    end = diff.inversion_end(model.schedule.respace(method.num_steps))
    decodings = len(method.alphas) + 1
    calls = (end + 1) * (decodings + 1)
    shape = preset.diffae.unet.input_shape
    return _explainer_family(
        "diffexplainer",
        "diffexplainer",
        explainer,
        f"DiffExplainer on a {shape[0]}x{shape[1]} diffusion autoencoder (the UNet of width "
        f"{preset.diffae.unet.width} conditioned on a {code}-d code, a semantic encoder of width "
        f"{preset.diffae.encoder.width}) explaining the face CNN: a DDIM inversion and "
        f"{decodings} decodings of {end + 1} steps each ({calls} denoiser calls), the whole sweep "
        f"of {len(method.alphas)} alphas.",
        {"steps_per_pass": end + 1, "decodings": decodings, "denoiser_calls": calls},
        lambda n: models.images(n, shape),
        config.num_classes,
        {
            "teacher": _model(config, teacher),
            "diffusion_autoencoder": _model(preset.diffae, model),
            "agent": {"code_dim": code, "parameters": models.parameters(agent.weight)},
        },
    )


_BUILDERS: dict[str, Callable[[Preset, Cache], Family]] = {
    "deduce": _deduce,
    "jsma": _jsma,
    "wachter": _wachter,
    "fgsm": _fgsm,
    "revise": _revise,
    "aip": _aip,
    "generator_image": _generator_image,
    "generator_ecg": _generator_ecg,
    "generator_tabular": _generator_tabular,
    "guided_one_step": lambda p, c: _guided(p, c, "one_step"),
    "guided_rollout": lambda p, c: _guided(p, c, "rollout"),
    "diffexplainer": _diffexplainer,
}
