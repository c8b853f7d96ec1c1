"""The DeDUCE paper's evaluation protocol on MNIST (Höltgen, Schut, Brauner & Gal, 2021).

Sets of ``set_size`` test images (drawn by a seeded permutation of the test set), each image
paired with all 9 other classes as targets, explained by every method of the config through
:func:`jaxcf.experiment.run_methods` (resumable). As in the paper, DeDUCE explains a ResNet-18
with soft spectral normalisation, and the baselines may explain another classifier (the paper's
plain ResNet-18): a method spec with ``resources={"classifier": "baseline"}`` uses it. Writes
into ``workdir``: ``<method>/results.npz``, ``metrics.json``, ``report.md``, ``grid.png`` and
``l0.png``.

:data:`PUBLISHED` holds the paper's MNIST results.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcf import assets, experiment, report, runner
from jaxcf.core import to_jsonable, validation
from jaxcf.data import load_mnist
from jaxcf.evaluation import metrics
from jaxcf.methods import DeDUCEConfig, FGSMConfig, JSMAConfig, MethodSpec, WachterConfig
from jaxcf.models import load_classifier, load_vae
from jaxcf.training import TrainConfig, VAETrainConfig, train_and_evaluate, train_vae

# The paper's MNIST results (5 sets of 100 test images x 9 other targets = 4,500 pairs).
# ``l0``: changed pixels, ``l1``: summed absolute change. The paper's evaluation notebooks take
# both means over the pairs that *all four* of its methods solved (DeDUCE, JSMA, CFProto and
# REVISE, which fails on 27%), then average the five per-set means: compare them with a
# "pairs every method solved" mean, not with a method's own successes.
# ``failure_rate``: fraction of a method's own pairs without a counterfactual,
# ``seconds_per_cf``: time per single counterfactual on an NVIDIA T4. DeDUCE ran on the
# spectrally normalised ResNet-18 (c = 4), the baselines on a plain ResNet-18. Wachter et al.
# and FGSM have no published number in that paper and are absent.
PUBLISHED: dict[str, dict[str, float]] = {
    "deduce": {"l0": 21.16, "l1": 10.72, "failure_rate": 0.0, "seconds_per_cf": 2.99},
    "jsma": {"l0": 25.59, "l1": 12.63, "failure_rate": 0.0309, "seconds_per_cf": 1.01},
    "cfproto": {"l0": 155.4, "l1": 38.95, "failure_rate": 0.0009, "seconds_per_cf": 109.9},
    "revise": {"l0": 752.0, "l1": 53.9, "failure_rate": 0.268, "seconds_per_cf": 46.7},
}

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
    checkpoint: the classifier (with its feature density) DeDUCE explains: a path, or
      ``"bundled:<name>"`` for one shipped with the package; ``None`` uses ``<workdir>/model``
      and trains it with ``train`` first if it does not exist yet.
    train: how to train that classifier when there is no checkpoint.
    baseline_checkpoint, baseline_train: an optional second classifier, the resource
      ``"baseline"`` of the method specs (the paper's plain ResNet-18, trained into
      ``<workdir>/model_baseline`` when missing); without one, ``"baseline"`` is the main
      classifier and every method explains the same network.
    methods: the methods, in order (the first is compared pair by pair with each other one).
    n_sets: number of sets of test images (the paper: 5).
    set_size: test images per set (the paper: 100).
    seed: seed of the test-set permutation the sets are drawn from.
    runner: chunking and slot refill.
    grid_queries: pairs shown in ``grid.png``.
    common_over: labels of the methods whose successes define the pairs L0/L1 are compared on
      (the paper's convention: pairs every method solved); ``None`` for all.
    vae_checkpoint, vae_train: an optional MNIST VAE, the resource ``"vae"`` of the latent
      searches (``revise``, ``xgems``): a VAE workdir or checkpoint path, or ``None`` to use
      ``<workdir>/vae``, trained with ``vae_train`` when missing. Without either there is no
      ``"vae"`` resource.
    """

    checkpoint: str | None = None
    train: TrainConfig | None = TrainConfig()
    baseline_checkpoint: str | None = None
    baseline_train: TrainConfig | None = None
    methods: tuple[MethodSpec, ...] = DEFAULT_METHODS
    n_sets: int = 5
    set_size: int = 100
    seed: int = 0
    runner: runner.RunnerConfig = runner.RunnerConfig()
    grid_queries: int = 6
    common_over: tuple[str, ...] | None = None
    vae_checkpoint: str | None = None
    vae_train: VAETrainConfig | None = None

    def __post_init__(self):
        validation.at_least(self, 1, "n_sets", "set_size", "grid_queries")
        if not self.methods:
            raise ValueError("ProtocolConfig.methods is empty")

    def run(self, workdir: str | Path) -> dict[str, Any]:
        """Runs the protocol into ``workdir`` (see :func:`run_protocol`)."""
        return run_protocol(self, workdir)


def protocol_pairs(
    labels: np.ndarray, n_sets: int, set_size: int, seed: int, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query indices, targets and set ids of the protocol: every other class for each image.

    Returns three ``[n_sets * set_size * (num_classes - 1)]`` int arrays.
    """
    need = n_sets * set_size
    if need > len(labels):
        raise ValueError(f"{n_sets} sets of {set_size} need {need} test images, have {len(labels)}")
    images = np.random.default_rng(seed).permutation(len(labels))[:need]
    index, target, sets = [], [], []
    for k, i in enumerate(images):
        others = [c for c in range(num_classes) if c != labels[i]]
        index += [i] * len(others)
        target += others
        sets += [k // set_size] * len(others)
    return np.asarray(index), np.asarray(target, np.int32), np.asarray(sets)


def get_classifier(checkpoint: str | None, train: TrainConfig | None, default: Path):
    """Loads ``checkpoint`` (a path or ``"bundled:<name>"``), or ``default``, training one there
    with ``train`` if missing."""
    path = assets.resolve(checkpoint) if checkpoint else default / "checkpoint"
    if not path.exists():
        if checkpoint or train is None:
            raise FileNotFoundError(f"no checkpoint at {path}")
        if jax.process_count() > 1:
            raise FileNotFoundError(
                f"no checkpoint at {path}: train the classifiers in one process first (several "
                "processes would each train one)"
            )
        print(f"no classifier at {path}: training one ({train.model})", flush=True)
        train_and_evaluate(train, path.parent)
    model, density, meta = load_classifier(checkpoint if checkpoint else path)
    where = checkpoint or str(path)  # as given: a bundled name stays a name, not a path
    print(
        f"classifier: {meta['model']['kind']} from {where} "
        f"(test accuracy {meta['test_accuracy']:.4f})",
        flush=True,
    )
    return model, density, meta, where


_META = ("model", "dataset", "test_accuracy")


def get_vae(checkpoint: str | None, train: VAETrainConfig | None, default: Path, meta: dict):
    """Loads the VAE at ``checkpoint``, or at ``default``, training one there with ``train`` if
    missing; refuses one of other images than the classifier's (``meta``: its metadata)."""
    path = Path(checkpoint) if checkpoint else default
    if not checkpoint and not (path / "checkpoint").exists():
        if jax.process_count() > 1:
            raise FileNotFoundError(f"no VAE at {path}: train it in one process first")
        print(f"no VAE at {path}: training one ({train.model})", flush=True)
        train_vae(train, path)
    shape = tuple(meta["model"]["input_shape"])
    vae, vae_meta = load_vae(path, image_shape=shape, dataset=meta["dataset"])
    last = vae_meta["history"][-1] if vae_meta.get("history") else {}
    print(
        f"vae: {vae_meta['latent_dim']}-d code from {path} (held-out reconstruction MSE "
        f"{last.get('val_mse', float('nan')):.4f})",
        flush=True,
    )
    return vae, vae_meta, str(path)


def run_protocol(config: ProtocolConfig, workdir: str | Path) -> dict[str, Any]:
    """Runs the protocol; returns the metrics written to ``metrics.json``.

    In a multi-process job (:mod:`jaxcf.runner.distributed`) every process explains its share of the
    pairs; process 0 alone evaluates and writes the report (the others return ``{}``).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model, density, meta, ckpt = get_classifier(config.checkpoint, config.train, workdir / "model")
    base = None
    if config.baseline_checkpoint or config.baseline_train:
        base = get_classifier(
            config.baseline_checkpoint, config.baseline_train, workdir / "model_baseline"
        )
    base_model = model if base is None else base[0]
    resources = {"classifier": model, "density": density, "baseline": base_model}
    vae = None
    if config.vae_checkpoint or config.vae_train:
        vae = get_vae(config.vae_checkpoint, config.vae_train, workdir / "vae", meta)
        resources["vae"] = vae[0]
    test = load_mnist("test", dataset=meta["dataset"])
    index, target, sets = protocol_pairs(test.labels, config.n_sets, config.set_size, config.seed)
    x = test.images[index]
    results = experiment.run_methods(
        config.methods, resources, x, target, workdir, group=sets, config=config.runner
    )
    if jax.process_index() != 0:
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
        "classifier": {"checkpoint": str(ckpt), **{k: meta[k] for k in _META}},
        "baseline_classifier": None
        if base is None
        else {"checkpoint": str(base[3]), "methods": on_baseline, **{k: base[2][k] for k in _META}},
        "vae": None
        if vae is None
        else {
            "checkpoint": vae[2],
            "latent_dim": vae[1]["latent_dim"],
            "history": vae[1].get("history", [])[-1:],
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
            f" Latent searches decode from the {vae[1]['latent_dim']}-d code of the VAE at "
            f"{vae[2]} (trained on {vae[1]['dataset']}); their L0 counts every pixel the decoder "
            "changes, so it is large by construction."
        )
    if on_baseline:
        intro += (
            f"\n\nMethods {', '.join(on_baseline)} explain a baseline classifier: "
            f"{base[2]['model']}, test accuracy {base[2]['test_accuracy']:.4f}."
        )
    doc = experiment.write_report(
        workdir,
        results,
        evaluation,
        title=f"DeDUCE protocol: {len(x)} pairs",
        intro=intro,
        published=PUBLISHED,
        extra=extra,
        grid=config.grid_queries,
        pred=lambda xs: metrics.predict(model, xs),
    )
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
    print(f"wrote {workdir}/metrics.json, report.md and figures", flush=True)
    return doc
