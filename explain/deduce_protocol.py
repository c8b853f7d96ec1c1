"""The DeDUCE evaluation protocol on MNIST, for DeDUCE, JSMA and Wachter.

Sets of ``set_size`` test images (drawn by a seeded permutation of the test set), each image
paired with all 9 other targets, explained by every method through :func:`jaxcf.runner.run`
(resumable). Writes into ``workdir``:

* ``<method>/results.npz``: queries, targets, counterfactuals, success, iterations, ...
* ``metrics.json``: per-method summary (L0, L1, L2, failure rate, iterations, density NLL,
  validity, standard deviations over sets), wall times, model and config;
* ``grid.png`` (original / counterfactual / difference per method) and ``l0.png``;
* ``report.md``: the table beside the published numbers, and the figures.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf import metrics, report, runner
from jaxcf.data import load_mnist
from jaxcf.methods import (
    DeDUCEConfig,
    JSMAConfig,
    WachterConfig,
    deduce_search,
    jsma_search,
    wachter_search,
)
from jaxcf.training import TrainConfig, load_classifier, train_and_evaluate


@dataclasses.dataclass(frozen=True)
class ExplainConfig:
    """Attributes:
    checkpoint: a trained classifier (with density); ``None`` uses ``<workdir>/model`` and
      trains it with ``train`` first if it does not exist yet.
    train: how to train the classifier when there is no checkpoint.
    baseline_checkpoint, baseline_train: an optional second classifier for the baselines
      (``baseline_methods``). The paper ran DeDUCE on its spectrally normalised ResNet and
      the baselines on a plain ResNet-18 (:class:`~jaxcf.models.StandardResNetConfig`);
      ``None`` for both runs every method on the main classifier. Trained into
      ``<workdir>/model_baseline`` when missing.
    baseline_methods: the methods that use the baseline classifier when there is one.
    n_sets: number of sets of test images (the paper: 5).
    set_size: test images per set (the paper: 100).
    seed: seed of the test-set permutation the sets are drawn from.
    methods: which methods to run, in order.
    deduce, jsma, wachter: the methods' configs.
    runner: chunking and slot refill.
    grid_queries: queries shown in ``grid.png``.
    """

    checkpoint: str | None = None
    train: TrainConfig = TrainConfig()
    baseline_checkpoint: str | None = None
    baseline_train: TrainConfig | None = None
    baseline_methods: tuple[str, ...] = ("jsma", "wachter")
    n_sets: int = 5
    set_size: int = 100
    seed: int = 0
    methods: tuple[str, ...] = ("deduce", "jsma", "wachter")
    deduce: DeDUCEConfig = DeDUCEConfig()
    jsma: JSMAConfig = JSMAConfig()
    wachter: WachterConfig = WachterConfig()
    runner: runner.RunnerConfig = runner.RunnerConfig()
    grid_queries: int = 6


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
    """Loads ``checkpoint``, or ``default``, training one there with ``train`` if missing."""
    path = Path(checkpoint) if checkpoint else default / "checkpoint"
    if not path.exists():
        if checkpoint or train is None:
            raise FileNotFoundError(f"no checkpoint at {path}")
        print(f"no classifier at {path}: training one ({train.model})", flush=True)
        train_and_evaluate(train, path.parent)
    model, density, meta = load_classifier(path)
    if density is None:
        raise ValueError(f"checkpoint {path} has no feature density; DeDUCE needs one")
    print(
        f"classifier: {meta['model']['kind']} from {path} "
        f"(test accuracy {meta['test_accuracy']:.4f})",
        flush=True,
    )
    return model, density, meta, path


def run_protocol(config: ExplainConfig, workdir: str | Path) -> dict[str, Any]:
    """Runs the protocol; returns the metrics written to ``metrics.json``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model, density, meta, ckpt = get_classifier(config.checkpoint, config.train, workdir / "model")
    base_model, base_meta, base_ckpt = model, meta, ckpt
    if config.baseline_checkpoint or config.baseline_train:
        base_model, _, base_meta, base_ckpt = get_classifier(
            config.baseline_checkpoint, config.baseline_train, workdir / "model_baseline"
        )
    test = load_mnist("test", dataset=meta["dataset"])
    index, target, sets = protocol_pairs(test.labels, config.n_sets, config.set_size, config.seed)
    x = test.images[index]
    searches = {
        "deduce": lambda: deduce_search(model, density, config.deduce),
        "jsma": lambda: jsma_search(clf["jsma"], config.jsma),
        "wachter": lambda: wachter_search(clf["wachter"], config.wachter),
    }
    clf = {m: base_model if m in config.baseline_methods else model for m in config.methods}
    summaries, per_query, timing, outputs = {}, {}, {}, {}
    for name in config.methods:
        search = searches[name]()
        xs, ts = search.check(x, target)
        start = time.perf_counter()
        out = runner.run(
            search, np.asarray(xs), np.asarray(ts), workdir / name, config=config.runner, desc=name
        )
        wall = time.perf_counter() - start
        chunks = json.loads((workdir / name / runner.MANIFEST_FILE).read_text())["chunks"]
        timing[name] = {
            "wall_seconds_this_call": wall,
            "chunk_seconds": [chunks[k]["seconds"] for k in sorted(chunks, key=int)],
            "seconds_per_counterfactual": sum(c["seconds"] for c in chunks.values()) / len(x),
        }
        pq = metrics.per_query_metrics(
            {
                "x_cf": out["counterfactuals"],
                "success": out["success"],
                "n_iter": out["iterations"],
                "target_prob": out["target_prob"],
            },
            x,
            target,
            classifier=clf[name],
        )
        # Realism is scored under the main classifier's feature density for every method, so
        # the numbers are comparable (DeDUCE optimises this very density: it has a head start).
        pq["nll"] = metrics.density_nll(model, density, out["counterfactuals"], target)
        per_query[name] = pq
        outputs[name] = out["counterfactuals"]
        summaries[name] = metrics.summarize(pq, sets=sets)

    both = np.logical_and.reduce([per_query[m]["success"] for m in config.methods])
    common = _on_common_pairs(per_query, config.methods, both, sets) if both.any() else {}
    table = report.format_table(summaries)
    result = {
        "pairs": len(x),
        "n_sets": config.n_sets,
        "set_size": config.set_size,
        "summaries": summaries,
        "on_pairs_all_methods_solved": {"n": int(both.sum()), **common},
        "timing": timing,
        "classifier": {"checkpoint": str(ckpt), **{k: meta[k] for k in _META}},
        "baseline_classifier": {
            "checkpoint": str(base_ckpt),
            "methods": [
                m for m in config.methods if base_model is not model and clf[m] is base_model
            ],
            **{k: base_meta[k] for k in _META},
        },
        "config": metrics.to_jsonable(dataclasses.asdict(config)),
    }
    report.write_json_atomic(workdir / "metrics.json", metrics.to_jsonable(result))

    show = _grid_queries(per_query, config.grid_queries)
    report.counterfactual_grid(
        workdir / "grid.png",
        x[show],
        {
            m: {
                "x_cf": outputs[m][show],
                "success": per_query[m]["success"][show],
                "target_prob": per_query[m]["target_prob"][show],
            }
            for m in config.methods
        },
        target[show],
        pred=np.asarray(metrics.predict(model, x[show])),
        n=len(show),
        title="DeDUCE protocol on MNIST: counterfactual and difference (red: brighter)",
    )
    report.l0_plot(
        workdir / "l0.png",
        {m: per_query[m]["l0"][per_query[m]["success"]] for m in config.methods},
        published=metrics.PUBLISHED,
        title=f"L0 of found counterfactuals ({len(x)} pairs)",
    )
    report.write_text_atomic(workdir / "report.md", _markdown(result, summaries))
    print("\n" + table, flush=True)
    if common:
        print(
            f"on the {int(both.sum())} pairs every method solved: "
            + ", ".join(
                f"{m} L0 {common[m]['l0']:.2f} L1 {common[m]['l1']:.2f}" for m in config.methods
            ),
            flush=True,
        )
    print(f"wrote {workdir}/metrics.json, grid.png, l0.png, report.md", flush=True)
    return result


_META = ("model", "dataset", "test_accuracy")


def _on_common_pairs(per_query: dict, methods, both: np.ndarray, sets: np.ndarray) -> dict:
    """L0/L1 on the pairs every method solved (how the paper averaged them): per method, per
    set, and the first method paired against each other one."""
    shared = {m: {**per_query[m], "success": both} for m in methods}
    first = methods[0]
    out: dict[str, Any] = {
        m: {k: float(per_query[m][k][both].mean()) for k in ("l0", "l1")} for m in methods
    }
    columns = {f"{m}_{k}": per_query[m][k] for m in methods for k in ("l0", "l1")}
    out["per_set"] = [r for r in metrics.set_means(columns, both, sets) if r["n"]]
    out["paired"] = {
        f"{first}_minus_{m}": metrics.paired_comparison(shared[first], shared[m])
        for m in methods[1:]
    }
    return out


def _grid_queries(per_query: dict, n: int) -> np.ndarray:
    """Pairs for the figure: images spread over the list, each with a different target slot."""
    images = len(next(iter(per_query.values()))["success"]) // 9
    rows = np.linspace(0, images - 1, num=min(n, images)).astype(int)
    return rows * 9 + (np.arange(len(rows)) * 4) % 9


def _common_markdown(common: dict) -> str:
    """The per-set L0/L1 table on the pairs every method solved, and the paired differences."""
    if "per_set" not in common:
        return ""
    methods = [k for k in common if isinstance(common[k], dict) and "l0" in common[k]]
    cols = [(m, k) for k in ("l0", "l1") for m in methods]
    head = "| set | pairs | " + " | ".join(f"{m} {k.upper()}" for m, k in cols) + " |\n"
    head += "| ---: | ---: |" + " ---: |" * len(cols) + "\n"
    rows = [
        f"| {r['set'] + 1} | {r['n']} | "
        + " | ".join(f"{r[f'{m}_{k}']:.2f}" for m, k in cols)
        + " |"
        for r in common["per_set"]
    ]
    rows.append(
        f"| all | {common['n']} | " + " | ".join(f"{common[m][k]:.2f}" for m, k in cols) + " |"
    )
    paired = [
        f"* {name.replace('_minus_', ' - ')}: "
        + "; ".join(
            f"{k.upper()} {p[k]['diff']:+.2f} ± {p[k]['stderr'] or 0:.2f} "
            f"(lower on {100 * p[k]['a_lower']:.0f}% of pairs, higher on "
            f"{100 * p[k]['b_lower']:.0f}%)"
            for k in ("l0", "l1")
        )
        for name, p in common["paired"].items()
    ]
    return (
        f"\nOn the {common['n']} pairs every method solved (how the paper averaged L0 and L1):"
        "\n\n"
        + head
        + "\n".join(rows)
        + "\n\nPaired differences (mean ± standard error):\n\n"
        + "\n".join(paired)
        + "\n"
    )


def _markdown(result: dict, summaries: dict) -> str:
    timing = "\n".join(
        f"| {m} | {t['seconds_per_counterfactual'] * 1e3:.2f} ms |"
        for m, t in result["timing"].items()
    )
    clf, base = result["classifier"], result["baseline_classifier"]
    baseline = (
        f"Methods {', '.join(base['methods'])} explain a baseline classifier: "
        f"{base['model']}, test accuracy {base['test_accuracy']:.4f}.\n\n"
        if base["methods"] and base["checkpoint"] != clf["checkpoint"]
        else ""
    )
    return (
        f"# DeDUCE protocol: {result['pairs']} pairs "
        f"({result['n_sets']} sets x {result['set_size']} images x 9 targets)\n\n"
        f"Classifier: {clf['model']['kind']} ({clf['model']}), test accuracy "
        f"{clf['test_accuracy']:.4f}. Realism NLL: -log density of the counterfactual's features "
        "under this classifier's target-class Gaussian.\n\n"
        + baseline
        + report.markdown_table(summaries)
        + _common_markdown(result["on_pairs_all_methods_solved"])
        + "\n| method | time per counterfactual (incl. compilation) |\n| :--- | ---: |\n"
        + timing
        + "\n\n![counterfactuals](grid.png)\n\n![L0](l0.png)\n"
    )
