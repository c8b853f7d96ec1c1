"""A whole explanation experiment on a classifier and a registered data set, from a config file.

    # my_experiment.py, anywhere
    from jaxcf.experiment import DataSpec, ExperimentConfig, ModelSpec
    from jaxcf.methods import DeDUCEConfig, JSMAConfig, MethodSpec

    def get_config():
        return ExperimentConfig(
            classifier=ModelSpec(checkpoint="bundled:demo_resnet_w32"),
            data=DataSpec("mnist", split="test", queries=20),
            methods=(MethodSpec("deduce", DeDUCEConfig()), MethodSpec("jsma", JSMAConfig())),
        )

    $ jaxcf explain my_experiment.py --workdir runs/mine

The classifier (and any other model a method needs) is found or trained
(:class:`~jaxcf.experiment.ModelSpec`), queries are drawn from the data set, each gets its
targets by rule, every method runs through the runner into the run store (finished runs are
reused), and ``<workdir>/report/`` receives ``metrics.json``, ``report.md`` and figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcf import report
from jaxcf.core import to_jsonable, validation
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.experiment._evaluate import evaluate
from jaxcf.experiment._models import ModelSpec, ensure_trained, resolve_model
from jaxcf.experiment._report import REPORT_DIR, write_report
from jaxcf.experiment._runs import run_methods
from jaxcf.experiment._targets import RULES, every_other_class, targets_by_rule
from jaxcf.methods import MethodSpec
from jaxcf.models import checkpoint
from jaxcf.runner import RunnerConfig


def is_main_process() -> bool:
    """Whether this process evaluates and writes reports (process 0 of a multi-process job)."""
    return jax.process_index() == 0


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The queries: a registered data set's split, the first ``queries`` of a seeded permutation.

    Attributes:
      dataset: a registered data set (``jaxcf.dataset_names()``).
      split: its split.
      queries: how many (``None``: all of the split).
      seed: seeds the permutation the queries are drawn from.
    """

    dataset: str
    split: str = "test"
    queries: int | None = 100
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"DataSpec.dataset must name a data set, got {self.dataset!r}")
        if self.queries is not None:
            validation.at_least(self, 1, "queries")
        validation.at_least(self, 0, "seed")

    def draw(self) -> tuple[np.ndarray, np.ndarray, Any]:
        """``(x [N, ...], labels [N], dataset)``: the queries and their true labels."""
        data = load_dataset(self.dataset, self.split)
        n = len(data.inputs) if self.queries is None else min(self.queries, len(data.inputs))
        order = np.random.default_rng(self.seed).permutation(len(data.inputs))[:n]
        return np.asarray(data.inputs[order]), np.asarray(data.labels[order]), data


def _infer_kind(path: Path) -> str:
    """A checkpoint's model family, from its metadata."""
    meta = checkpoint.read_metadata(path)
    if meta.get("kind") in ("vae", "attgan", "agent"):
        return meta["kind"]
    configs = meta.get("configs", {})
    if "unet" in configs:
        return "diffusion"
    if "generator" in configs and meta.get("kind") is None and "classifier_digest" in meta:
        return "generator"
    if "model" in meta:
        return "classifier"
    raise ValueError(f"{path} holds no model jaxcf knows how to load (kind {meta.get('kind')!r})")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """An explanation experiment: a classifier, queries from a data set, targets by rule,
    methods, and a report.

    Attributes:
      classifier: the classifier to explain (its feature density, if it has one, is the
        ``"density"`` resource DeDUCE needs and scores realism).
      data: where the queries come from.
      methods: the methods, in order (the first is compared pair by pair with each other one).
      targets: the target rule (:data:`jaxcf.experiment.RULES`: ``"other"`` explains each query
        towards every class but its prediction, ``"flip"``, ``"next"``, ``"second"``,
        ``"opposite"``) or a class index for every query.
      models: more models the methods need, by resource name (``(("vae", ModelSpec(...)),)``
        for REVISE and xGEMs; ``"attribute_model"``, ``"diffusion"``, ``"generator"``,
        ``"agent"``); each model's family is read from its checkpoint.
      num_cfs: counterfactuals per query.
      seed: the runner's seed (per-query keys are folded from it).
      runner: chunking and slots.
      runs: a run store shared with other experiments (default ``<workdir>/runs``).
      common_over: the labels whose successes define the pairs L0/L1 are compared on (default:
        every method).
      title: the report's title.
      grid: examples in the report's figure.
      progress: progress bars and messages.
    """

    classifier: ModelSpec
    data: DataSpec
    methods: tuple[MethodSpec, ...]
    targets: str | int = "other"
    models: tuple[tuple[str, ModelSpec], ...] = ()
    num_cfs: int = 1
    seed: int = 0
    runner: RunnerConfig = RunnerConfig()
    runs: str | None = None
    common_over: tuple[str, ...] | None = None
    title: str = "Counterfactual explanations"
    grid: int = 6
    progress: bool = True

    def __post_init__(self):
        for name, kind in (("classifier", ModelSpec), ("data", DataSpec)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"ExperimentConfig.{name} must be a {kind.__name__}")
        object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods or not all(isinstance(m, MethodSpec) for m in self.methods):
            raise ValueError("ExperimentConfig.methods must be a non-empty tuple of MethodSpecs")
        if isinstance(self.targets, str) and self.targets not in RULES:
            raise ValueError(f"ExperimentConfig.targets must be one of {RULES} or a class index")
        object.__setattr__(self, "models", tuple(tuple(m) for m in self.models))
        for entry in self.models:
            if len(entry) != 2 or not isinstance(entry[1], ModelSpec):
                raise TypeError("ExperimentConfig.models holds (name, ModelSpec) pairs")
        names = [n for n, _ in self.models]
        if len(set(names)) != len(names) or {"classifier", "density"} & set(names):
            raise ValueError(f"ExperimentConfig.models: names must be distinct and new: {names}")
        validation.at_least(self, 1, "num_cfs", "grid")
        validation.at_least(self, 0, "seed")

    def resources(self, workdir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """The methods' resources (models found or trained) and a JSON-ready summary of each."""
        clf = resolve_model("classifier", "classifier", self.classifier, workdir)
        resources: dict[str, Any] = {"classifier": clf.model}
        if clf.density is not None:
            resources["density"] = clf.density
        info = {"classifier": clf.summary()}
        for name, spec in self.models:
            kind = _infer_kind(ensure_trained(name, spec, workdir))
            context = {"classifier": clf.model} if kind == "generator" else {}
            if kind == "agent":
                context = {"teacher": clf.model}
            loaded = resolve_model(name, kind, spec, workdir, **context)
            resources[name] = loaded.model
            info[name] = loaded.summary()
        return resources, info

    def run(self, workdir: str | Path) -> dict[str, Any]:
        """Finds or trains the models, runs every method (reusing finished runs), evaluates and
        writes ``<workdir>/report/``; returns what ``metrics.json`` holds (``{}`` in processes
        other than the first)."""
        workdir = Path(workdir)
        resources, models = self.resources(workdir)
        classifier = resources["classifier"]
        x, labels, data = self.data.draw()
        pred = metrics.predict(classifier, x)
        num_classes = int(np.asarray(classifier.logits(x[:1])).shape[-1])
        if self.targets == "other":
            index, target = every_other_class(pred, num_classes)
            x, labels, pred = x[index], labels[index], pred[index]
        else:
            logits = np.asarray(classifier.logits(x)) if self.targets == "second" else None
            target = targets_by_rule(self.targets, pred, num_classes, seed=self.seed, logits=logits)
        results = run_methods(
            self.methods,
            resources,
            x,
            target,
            workdir,
            config=self.runner,
            num_cfs=self.num_cfs,
            seed=self.seed,
            progress=self.progress,
            store=self.runs,
        )
        if not is_main_process():
            return {}
        density = resources.get("density")
        evaluation = evaluate(
            results,
            classifiers={s.key: resources[s.resource_keys()["classifier"]] for s in self.methods},
            realism=None if density is None else (classifier, density),
            common_over=self.common_over,
        )
        intro = (
            f"{len(x)} (query, target) pairs: {self.data.queries or 'all'} queries from "
            f"{self.data.dataset} ({self.data.split}), targets by rule {self.targets!r}, "
            f"{self.num_cfs} counterfactual(s) each."
        )
        doc = write_report(
            workdir / REPORT_DIR,
            results,
            evaluation,
            title=self.title,
            intro=intro,
            extra={
                "models": models,
                "data": dataclasses.asdict(self.data),
                "class_names": list(getattr(data, "class_names", []) or []),
                "config": to_jsonable(dataclasses.asdict(self)),
            },
            grid=self.grid,
            pred=lambda xs: metrics.predict(classifier, xs),
        )
        if self.progress:
            print("\n" + report.format_table(evaluation["summaries"]), flush=True)
        return doc
