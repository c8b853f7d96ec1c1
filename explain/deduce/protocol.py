"""The DeDUCE paper's evaluation protocol on MNIST (Höltgen, Schut, Brauner & Gal, 2021).

Sets of ``set_size`` test images (drawn by a seeded permutation of the test set), each image
paired with all 9 other classes as targets, explained by every method of the config through
:func:`jaxcf.experiment.run_methods` (finished runs are reused). As in the paper, DeDUCE
explains a ResNet-18 with soft spectral normalisation, and the baselines may explain another
classifier (the paper's plain ResNet-18): a method spec with ``resources={"classifier":
"baseline"}`` uses it. Models come from their :class:`~jaxcf.experiment.ModelSpec` (trained into
``<workdir>/models/<name>`` when missing), runs go to the run store (``<workdir>/runs``), and the
report to ``<workdir>/report/``: ``metrics.json``, ``report.md``, ``grid.png`` and ``l0.png``.

:data:`~explain.deduce.published.PUBLISHED` holds the paper's MNIST results.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from explain.deduce.published import PUBLISHED, PUBLISHED_AGAN
from explain.deduce.realism import agan_markdown, agan_table, mnist_prototypes
from jaxcf import experiment, report
from jaxcf.core import to_jsonable, validation
from jaxcf.data import load_mnist
from jaxcf.evaluation import AGANConfig, metrics
from jaxcf.experiment import ModelSpec, every_other_class, is_main_process, resolve_model
from jaxcf.methods import (
    DeDUCEConfig,
    FGSMConfig,
    JSMAConfig,
    MethodSpec,
    WachterConfig,
    method_needs,
)
from jaxcf.models import load_wgan
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig

BASELINE = {"classifier": "baseline"}
DEFAULT_METHODS = (
    MethodSpec("deduce", DeDUCEConfig()),
    MethodSpec("jsma", JSMAConfig(), resources=BASELINE),
    MethodSpec("wachter", WachterConfig(), resources=BASELINE),
    MethodSpec("fgsm", FGSMConfig(eps=0.05, schedule=(0.1, 0.2, 0.3, 0.5)), resources=BASELINE),
)


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Attributes:
    classifier: the classifier (with its feature density) DeDUCE explains: a checkpoint (a
      path, or ``"bundled:<name>"`` for one shipped with the package) or a training config run
      into ``<workdir>/models/classifier`` when missing.
    baseline: an optional second classifier, the resource ``"baseline"`` of the method specs
      (the paper's plain ResNet-18); without one, ``"baseline"`` is the main classifier and
      every method explains the same network.
    vae: an optional MNIST VAE, the resource ``"vae"`` of the latent searches (``revise``,
      ``xgems``); one of other images or data than the classifier's is refused.
    methods: the methods, in order (the first is compared pair by pair with each other one).
    n_sets: number of sets of test images (the paper: 5).
    set_size: test images per set (the paper: 100).
    seed: seed of the test-set permutation the sets are drawn from.
    runner: chunking and slot refill.
    grid_queries: pairs shown in ``grid.png``.
    common_over: labels of the methods whose successes define the pairs L0/L1 are compared on
      (the paper's convention: pairs every method solved); ``None`` for all.
    runs: a run store shared with other experiments (default ``<workdir>/runs``): any
      experiment asking for the same explainer, pairs and seed reuses a finished run there.
    autoencoder: an optional MNIST autoencoder for CFProto (a VAE checkpoint or training
      config, such as ``train/configs/ae_mnist.py``'s deterministic one): its encoder codes the
      prototypes and its reconstructions make CFProto's ``gamma`` term; ``None``: the VAE's.
    prototype_rows: MNIST training images CFProto's prototypes are built from (``None``: all
      60,000), coded by the autoencoder's encoder (else the VAE's, else in input space).
    wgan: the workdir of a trained MNIST WGAN (``jaxcf train train/configs/wgan_mnist.py``):
      adds the paper's AnoGAN realism column (originals, VAE reconstructions, every method's
      counterfactuals; scores kept in ``<workdir>/agan`` and reused); ``None``: no AGAN column.
    agan: the AnoGAN search's settings (DeDUCE's by default: 4,000 steps, 3 restarts).
    """

    classifier: ModelSpec = ModelSpec(train=TrainConfig())
    baseline: ModelSpec | None = None
    vae: ModelSpec | None = None
    autoencoder: ModelSpec | None = None
    methods: tuple[MethodSpec, ...] = DEFAULT_METHODS
    n_sets: int = 5
    set_size: int = 100
    seed: int = 0
    runner: RunnerConfig = RunnerConfig()
    grid_queries: int = 6
    common_over: tuple[str, ...] | None = None
    runs: str | None = None
    prototype_rows: int | None = None
    wgan: str | None = None
    agan: AGANConfig = AGANConfig()

    def __post_init__(self):
        validation.at_least(self, 1, "n_sets", "set_size", "grid_queries")
        if not self.methods:
            raise ValueError("ProtocolConfig.methods is empty")
        for name in ("classifier", "baseline", "vae", "autoencoder"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, ModelSpec):
                raise TypeError(f"ProtocolConfig.{name} must be a ModelSpec, got {value!r}")

    writes_html = True  # run_protocol writes the browsable report itself

    def run(self, workdir: str | Path) -> dict[str, Any]:
        """Runs the protocol into ``workdir`` (see :func:`run_protocol`)."""
        return run_protocol(self, workdir)


def image_order(n_images: int, seed: int) -> np.ndarray:
    """The seeded order ``[n_images]`` the protocol draws its test images in: its sets take the
    first ``n_sets * set_size`` (images further on are held out from every table)."""
    return np.random.default_rng(seed).permutation(n_images)


def protocol_pairs(
    labels: np.ndarray, n_sets: int, set_size: int, seed: int, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query indices, targets and set ids of the protocol: every other class for each image.

    Returns three ``[n_sets * set_size * (num_classes - 1)]`` int arrays.
    """
    need = n_sets * set_size
    if need > len(labels):
        raise ValueError(f"{n_sets} sets of {set_size} need {need} test images, have {len(labels)}")
    images = image_order(len(labels), seed)[:need]
    pair, target = every_other_class(np.asarray(labels)[images], num_classes)
    return images[pair], target, pair // set_size


_META = ("model", "dataset", "test_accuracy")


def run_protocol(config: ProtocolConfig, workdir: str | Path) -> dict[str, Any]:
    """Runs the protocol; returns the metrics written to ``metrics.json``.

    In a multi-process job (:mod:`jaxcf.runner.distributed`) every process explains its share
    of the pairs; process 0 alone evaluates and writes the report (the others return ``{}``).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clf = resolve_model("classifier", "classifier", config.classifier, workdir)
    model, density, meta = clf.model, clf.density, clf.metadata
    base = None
    if config.baseline is not None:
        base = resolve_model("baseline", "classifier", config.baseline, workdir)
    resources = {
        "classifier": model,
        "density": density,
        "baseline": model if base is None else base.model,
    }
    # The VAE (latent searches) and CFProto's autoencoder: both of the classifier's images.
    images = dict(image_shape=tuple(meta["model"]["input_shape"]), dataset=meta["dataset"])
    vae = None
    if config.vae is not None:
        vae = resolve_model("vae", "vae", config.vae, workdir, **images)
        resources["vae"] = vae.model
    ae = vae
    if config.autoencoder is not None:
        ae = resolve_model("autoencoder", "vae", config.autoencoder, workdir, **images)
    if any("prototypes" in method_needs(s.name) for s in config.methods):
        # CFProto: prototypes labelled by the classifier it explains (the baseline, as in the
        # paper, when the specs say so), coded by the autoencoder's encoder (else the VAE's).
        owner = next(s for s in config.methods if "prototypes" in method_needs(s.name))
        resources["prototypes"] = mnist_prototypes(
            resources[owner.resource_keys()["classifier"]],
            None if ae is None else ae.model,
            dataset=meta["dataset"],
            rows=config.prototype_rows,
        )
    wgan = None if config.wgan is None else load_wgan(config.wgan, image_shape=(28, 28, 1))[0]
    test = load_mnist("test", dataset=meta["dataset"])
    index, target, sets = protocol_pairs(test.labels, config.n_sets, config.set_size, config.seed)
    x = test.images[index]
    results = experiment.run_methods(
        config.methods,
        resources,
        x,
        target,
        workdir,
        group=sets,
        config=config.runner,
        store=config.runs,
    )
    if not is_main_process():
        return {}
    classifiers = {s.key: resources[s.resource_keys()["classifier"]] for s in config.methods}
    evaluation = experiment.evaluate(
        results, classifiers=classifiers, realism=(model, density), common_over=config.common_over
    )
    on_baseline = [
        s.key
        for s in config.methods
        if base is not None and s.resource_keys().get("classifier") == "baseline"
    ]
    extra = {
        "pairs": len(x),
        "n_sets": config.n_sets,
        "set_size": config.set_size,
        "classifier": {"checkpoint": clf.source, **{k: meta[k] for k in _META}},
        "baseline_classifier": None
        if base is None
        else {
            "checkpoint": base.source,
            "methods": on_baseline,
            **{k: base.metadata[k] for k in _META},
        },
        "vae": None
        if vae is None
        else {
            "checkpoint": vae.source,
            "latent_dim": vae.metadata["latent_dim"],
            "history": vae.metadata.get("history", [])[-1:],
        },
        "autoencoder": None
        if config.autoencoder is None
        else {
            "checkpoint": ae.source,
            "latent_dim": ae.metadata["latent_dim"],
            "history": ae.metadata.get("history", [])[-1:],
        },
        "config": to_jsonable(dataclasses.asdict(config)),
    }
    intro = (
        f"{len(x)} pairs ({config.n_sets} sets x {config.set_size} test images x 9 targets). "
        f"Classifier: {meta['model']['kind']} ({meta['model']}), test accuracy "
        f"{meta['test_accuracy']:.4f}. Realism NLL: -log density of the counterfactual's "
        "features under this classifier's target-class Gaussian (lower is more typical)."
    )
    if vae is not None:
        intro += (
            f" Latent searches decode from the {vae.metadata['latent_dim']}-d code of the VAE at "
            f"{vae.source} (trained on {vae.metadata['dataset']}); their L0 counts every pixel "
            "the decoder "
            "changes, so it is large by construction."
        )
    if config.autoencoder is not None:
        intro += (
            f" CFProto's prototypes and reconstruction term use the {ae.metadata['latent_dim']}-d "
            f"autoencoder at {ae.source}."
        )
    if on_baseline:
        intro += (
            f"\n\nMethods {', '.join(on_baseline)} explain a baseline classifier: "
            f"{base.metadata['model']}, test accuracy {base.metadata['test_accuracy']:.4f}."
        )
    if wgan is not None:
        extra["agan"] = agan_table(
            wgan,
            results,
            index,
            x,
            common_over=config.common_over,
            vae=None if vae is None else vae.model,
            config=config.agan,
            cache=workdir / "agan",
        )
    out = workdir / experiment.REPORT_DIR
    doc = experiment.write_report(
        out,
        results,
        evaluation,
        title=f"DeDUCE protocol: {len(x)} pairs",
        intro=intro,
        published=PUBLISHED,
        extra=extra,
        grid=config.grid_queries,
        pred=lambda xs: metrics.predict(model, xs),
    )
    experiment.write_html_report(
        workdir,
        results,
        evaluation=evaluation,
        title=f"DeDUCE protocol: {len(x)} pairs",
        source=metrics.predict(model, x),
        class_names=test.class_names,
    )
    if wgan is not None:
        section = agan_markdown(extra["agan"], PUBLISHED_AGAN)
        with open(out / "report.md", "a", encoding="utf-8") as f:
            f.write("\n" + section)
        print("\n" + section, flush=True)
    print("\n" + report.format_table(evaluation["summaries"], PUBLISHED), flush=True)
    common = evaluation["common"]
    labels = list(results)
    if common["n"] and len(labels) > 1:
        print(
            f"on the {common['n']} pairs {', '.join(common['over'])} all solved: "
            + ", ".join(
                f"{m} L0 {common[m]['l0']:.2f} L1 {common[m]['l1']:.2f}" for m in common["over"]
            ),
            flush=True,
        )
    for name, p in common["paired"].items():
        if p["n"] > 1:
            print(
                f"  {name.replace('_minus_', ' - ')} on the {p['n']} pairs both solved: "
                f"L0 {p['l0']['diff']:+.2f} ± {p['l0']['stderr']:.2f} (s.e.), "
                f"L1 {p['l1']['diff']:+.2f} ± {p['l1']['stderr']:.2f}",
                flush=True,
            )
    print(f"wrote {out}/metrics.json, report.md and figures", flush=True)
    return doc
