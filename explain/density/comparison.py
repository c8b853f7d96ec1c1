"""DeDUCE with the full, shrinkage and PCA feature densities of one classifier, on the same pairs.

The classifier comes from its :class:`~jaxcf.experiment.ModelSpec` (trained into
``<workdir>/models/classifier`` when missing). Its penultimate features on the training images it
was trained on are fitted once per :class:`~jaxcf.models.DensityConfig` (the fits' warnings and
:class:`~jaxcf.models.DensityDiagnostics` are recorded), and DeDUCE explains the same pairs with
each density (``set_size`` test images drawn as in the DeDUCE protocol, each towards all other
classes), each run in the run store under its own key. The report (``<workdir>/report/``) scores
every run's counterfactuals under every density (realism NLL: ``-log p(features | target)``),
beside the failure rate, L0 and L1, and gives each density's held-out NLL of the test images'
features under their true class.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from explain.deduce import protocol_pairs
from jaxcf import experiment
from jaxcf.core import to_jsonable, validation, write_text_atomic
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.experiment import ModelSpec, is_main_process, resolve_model
from jaxcf.methods import DeDUCEConfig, MethodSpec
from jaxcf.models import DegenerateDensityWarning, DensityConfig, fit_density
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig, extract_features

# Training features whose NLL is reported beside the test set's (the first this many).
TRAIN_NLL = 5000

DENSITIES = (
    ("full", DensityConfig()),
    ("shrinkage", DensityConfig(method="shrinkage")),
    ("pca", DensityConfig(method="pca")),
)


@dataclasses.dataclass(frozen=True)
class DensityComparison:
    """Attributes:
    classifier: the classifier whose features the densities are fitted on: a checkpoint or a
      training config run into ``<workdir>/models/classifier`` when missing.
    densities: ``(name, config)`` of each density; DeDUCE's run with it is labelled
      ``deduce_<name>``.
    deduce: DeDUCE's config (the published defaults).
    set_size: test images, each explained towards every other class.
    seed: seed of the test-set permutation the images are drawn from.
    runner: chunking and slot refill.
    runs: a run store shared with other experiments (default ``<workdir>/runs``).
    grid_queries: pairs shown in ``grid.png``.
    """

    classifier: ModelSpec = ModelSpec(train=TrainConfig())
    densities: tuple[tuple[str, DensityConfig], ...] = DENSITIES
    deduce: DeDUCEConfig = DeDUCEConfig()
    set_size: int = 50
    seed: int = 0
    runner: RunnerConfig = RunnerConfig(chunk_size=450, slots=128, segment=4)
    runs: str | None = None
    grid_queries: int = 6

    def __post_init__(self) -> None:
        validation.at_least(self, 1, "set_size", "grid_queries")
        validation.at_least(self, 0, "seed")
        if not isinstance(self.classifier, ModelSpec):
            raise TypeError(f"classifier must be a ModelSpec, got {self.classifier!r}")
        names = [name for name, _ in self.densities]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"densities need distinct names, got {names}")
        for name, config in self.densities:
            if not isinstance(config, DensityConfig):
                raise TypeError(f"density {name!r} needs a DensityConfig, got {config!r}")

    def run(self, workdir: str | Path) -> dict[str, Any]:
        return run_comparison(self, workdir)


def _nll(density: Any, features: np.ndarray, labels: np.ndarray, batch: int = 1000) -> np.ndarray:
    """``-log p(z | y)`` of each feature vector under its class, float64."""
    log_prob = jax.jit(density.log_prob)
    out = [
        np.asarray(log_prob(features[s : s + batch]), np.float64)
        for s in range(0, len(features), batch)
    ]
    lp = np.concatenate(out)
    return -lp[np.arange(len(lp)), labels], lp.argmax(-1)


def _stats(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"median": None, "mean": None}
    return {"median": float(np.median(values)), "mean": float(np.mean(values))}


def run_comparison(config: DensityComparison, workdir: str | Path) -> dict[str, Any]:
    """Fits the densities, runs DeDUCE with each, writes the report; returns ``metrics.json``'s
    dict (``{}`` in the processes other than the main one of a multi-process job)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clf = resolve_model("classifier", "classifier", config.classifier, workdir)
    model, meta = clf.model, clf.metadata
    num_classes = model.config.num_classes
    train = load_dataset(meta["dataset"], "train")
    test = load_dataset(meta["dataset"], "test")
    n = meta["train_examples"]
    start = time.perf_counter()
    features, labels = extract_features(model, train.inputs[:n]), np.asarray(train.labels[:n])
    test_features = extract_features(model, test.inputs)
    feature_seconds = time.perf_counter() - start

    fits, report = {}, {}
    for name, density_config in config.densities:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DegenerateDensityWarning)
            start = time.perf_counter()
            fit = fit_density(features, labels, num_classes, density_config)
            seconds = time.perf_counter() - start
        messages = [f"{w.category.__name__}: {w.message}" for w in caught]
        for m in messages:
            print(m, flush=True)
        print(fit.diagnostics.summary(), flush=True)
        fits[name] = fit
        train_nll, _ = _nll(fit.density, features[:TRAIN_NLL], labels[:TRAIN_NLL])
        test_nll, test_pred = _nll(fit.density, test_features, np.asarray(test.labels))
        report[name] = {
            "config": density_config.to_dict(),
            "fit_seconds": seconds,
            "warnings": messages,
            "diagnostics": fit.diagnostics.to_dict(),
            "train_nll": _stats(train_nll),
            "test_nll": _stats(test_nll),
            "test_accuracy": float(np.mean(test_pred == np.asarray(test.labels))),
        }
    same = None
    if clf.density is not None and "full" in fits and "method" not in meta.get("density", {}):
        stored, refit = clf.density.to_arrays(), fits["full"].density.to_arrays()
        same = all(np.array_equal(stored[k], refit[k]) for k in stored)

    index, target, _ = protocol_pairs(
        test.labels, 1, config.set_size, config.seed, num_classes=num_classes
    )
    x = test.inputs[index]
    specs = [
        MethodSpec(
            "deduce",
            config.deduce,
            label=f"deduce_{name}",
            resources={"density": f"density_{name}"},
        )
        for name, _ in config.densities
    ]
    resources = {"classifier": model, **{f"density_{k}": f.density for k, f in fits.items()}}
    results = experiment.run_methods(
        specs, resources, x, target, workdir, config=config.runner, store=config.runs
    )
    if not is_main_process():
        return {}
    evaluation = experiment.evaluate(results, classifiers={s.key: model for s in specs})
    realism = {}
    common = np.logical_and.reduce([np.asarray(r.success, bool) for r in results.values()])
    for label, r in results.items():
        solved = np.asarray(r.success, bool)
        realism[label] = {}
        for name, fit in fits.items():
            nll = np.asarray(metrics.density_nll(model, fit.density, r.x_cf, r.target), np.float64)
            realism[label][name] = {"solved": _stats(nll[solved]), "common": _stats(nll[common])}
    extra = {
        "pairs": len(x),
        "classifier": {
            "checkpoint": clf.source,
            **{k: meta[k] for k in ("model", "dataset", "test_accuracy", "train_examples")},
        },
        "feature_seconds": feature_seconds,
        "checkpoint_density_is_the_full_refit": same,
        "densities": report,
        "realism": realism,
        "config": to_jsonable(dataclasses.asdict(config)),
    }
    intro = (
        f"{len(x)} pairs ({config.set_size} {meta['dataset']} test images x {num_classes - 1} "
        f"targets), DeDUCE with each density. Classifier: {meta['model']}, trained on "
        f"{n} images, test accuracy {meta['test_accuracy']:.4f}."
    )
    out = workdir / experiment.REPORT_DIR
    doc = experiment.write_report(
        out,
        results,
        evaluation,
        title=f"DeDUCE with regularised feature densities: {len(x)} pairs",
        intro=intro,
        extra=extra,
        grid=config.grid_queries,
        pred=lambda xs: metrics.predict(model, xs),
    )
    tables = density_table(doc)
    text = (out / "report.md").read_text() + "\n" + tables
    write_text_atomic(out / "report.md", text)
    print("\n" + tables, flush=True)
    print(f"wrote {out}/metrics.json, report.md and figures", flush=True)
    return doc


def _num(v: float | None, fmt: str = ".1f") -> str:
    if v is None:
        return "—"
    return f"{v:.3g}" if abs(v) >= 1e6 else format(v, fmt)


def density_table(doc: dict[str, Any]) -> str:
    """Markdown tables of a comparison's ``metrics.json``: DeDUCE's results with each density
    and their realism under every density, then each density's fit and held-out NLL."""
    names = list(doc["densities"])
    summaries, common = doc["summaries"], doc["common"]
    head = "| DeDUCE with | failure % | L0 | L1 | iterations | L0 (common) | L1 (common) | "
    head += " | ".join(f"NLL under {n} (common; median / mean)" for n in names) + " |"
    lines = [head, "| :--- |" + " ---: |" * (6 + len(names))]
    for label, s in summaries.items():
        c = common.get(label, {})
        nll = [doc["realism"][label][n]["common"] for n in names]
        nll = [f"{_num(v['median'])} / {_num(v['mean'])}" for v in nll]
        cells = [
            f"{100 * s['failure_rate']:.1f}",
            _num(s.get("l0"), ".2f"),
            _num(s.get("l1"), ".2f"),
            _num(s.get("n_iter")),
            _num(c.get("l0"), ".2f"),
            _num(c.get("l1"), ".2f"),
            *nll,
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nL0, L1 and iterations are means over each run's solved pairs; (common): over the "
        f"{common['n']} pairs every run solved. NLL: -log density of the counterfactual's "
        "features under its target class, over those common pairs (`metrics.json` also has it "
        "over each run's solved pairs); a PCA density's NLL is in its k dimensions, so compare "
        "NLLs within a column.\n"
    )
    lines += [
        "| density | dim | jitter | worst condition | constant dims | degenerate classes | "
        "train NLL (median) | test NLL (median / mean) | test accuracy | fit s |",
        "| :--- |" + " ---: |" * 9,
    ]
    for name in names:
        d = doc["densities"][name]
        g = d["diagnostics"]
        cond = [c for c in g["condition"] if c is not None]
        worst = "inf" if len(cond) < len(g["condition"]) else f"{max(cond):.3g}"
        bad = sum(bool(p) for p in g["problems"])
        lines.append(
            f"| {name} | {g['dim']} | {g['jitter']:.3g} | {worst} | "
            f"{100 * np.mean(g['constant_share']):.1f}% | {bad} of {len(g['problems'])} | "
            f"{_num(d['train_nll']['median'])} | {_num(d['test_nll']['median'])} / "
            f"{_num(d['test_nll']['mean'])} | {d['test_accuracy']:.4f} | {d['fit_seconds']:.1f} |"
        )
    lines.append(
        "\nTest NLL: -log density of each test image's features under its true class; test "
        "accuracy: how often the density's most likely class is the true one.\n"
    )
    return "\n".join(lines) + "\n"
