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
from jaxcf.data import RowReader
from jaxcf.evaluation import metrics
from jaxcf.experiment._data import DataSpec, QueryRows, TableFile, blocks
from jaxcf.experiment._evaluate import evaluate
from jaxcf.experiment._models import MODELS_DIR, ModelSpec, ensure_trained, resolve_model
from jaxcf.experiment._report import REPORT_DIR, write_html_report, write_report
from jaxcf.experiment._resources import fit_to_data, fitted_density, needs
from jaxcf.experiment._runs import run_methods
from jaxcf.experiment._targets import RULES, every_other_class, targets_by_rule
from jaxcf.experiment._user_model import UserModel
from jaxcf.methods import MethodSpec
from jaxcf.models import DensityConfig, VAEConfig, checkpoint
from jaxcf.runner import RunnerConfig
from jaxcf.tabular import violations
from jaxcf.training import VAETrainConfig


def is_main_process() -> bool:
    """Whether this process evaluates and writes reports (process 0 of a multi-process job)."""
    return jax.process_index() == 0


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
class TargetsFile:
    """Targets given per row of the data's split, in a ``.npy`` file: ``[N]`` class indices,
    ``[N, C]`` class distributions or ``[N]`` float regression values (row ``i`` is the target
    of the split's row ``i``; the queries take theirs).

    Attributes:
      path: the ``.npy`` file.
    """

    path: str

    def load(self, n: int) -> np.ndarray:
        """The array, checked to have one target per row of an ``n``-row split."""
        target = np.load(self.path, allow_pickle=False)
        if len(target) != n:
            raise ValueError(f"{self.path} holds {len(target)} targets for {n} rows")
        return target


# The default VAE's schedule: at about 0.05 s a step on 2 CPU cores for 28x28 images (MNIST),
# 4 to 5 minutes; its held-out reconstructions are recognisable after a few hundred steps.
DEFAULT_VAE_STEPS = 5_000

# How to give a resource a method needs, by resource kind (``{key}``: its resource name).
_HOW_TO_GIVE = {
    "density": "set ExperimentConfig.density (a DensityConfig: fitted on the classifier's "
    "features of the training split)",
    "vae": "add models=(('{key}', ModelSpec(checkpoint=... or train=VAETrainConfig(...))),) "
    "(a VAE is trained by default only on a registered data set)",
    "model": "add models=(('{key}', ModelSpec(checkpoint=... or train=...)),)",
}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """An explanation experiment: a classifier, queries from a data set, targets by rule,
    methods, and a report.

    Attributes:
      classifier: the classifier to explain: one of jaxcf's checkpoints (a
        :class:`~jaxcf.experiment.ModelSpec`) or the user's own
        (:class:`~jaxcf.experiment.UserModel`: an NNX factory and checkpoint, a Linen module
        and its variables, a plain function).
      data: where the queries come from (:class:`~jaxcf.experiment.DataSpec`).
      methods: the methods, in order (the first is compared pair by pair with each other one).
      targets: the target rule (:data:`jaxcf.experiment.RULES`: ``"other"`` explains each query
        towards every class but its prediction, ``"flip"``, ``"next"``, ``"second"``,
        ``"opposite"``), a class index for every query, or a :class:`TargetsFile`.
      models: more models the methods need, by resource name (``(("vae", ModelSpec(...)),)``
        for REVISE and xGEMs; ``"attribute_model"``, ``"diffusion"``, ``"generator"``,
        ``"agent"``); each model's family is read from its checkpoint.
      density: how DeDUCE's class-conditional feature density is fitted when a method needs one
        and the classifier's checkpoint has none (on the classifier's features of the data's
        training split, kept in ``<workdir>/models/density``), or ``None`` to never fit one.
        Shrinkage by default: a plain network's features (ReLU units that never fire, more
        units than samples per class) make the full fit degenerate (see
        :class:`~jaxcf.models.DensityConfig`).
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

    classifier: ModelSpec | UserModel
    data: DataSpec
    methods: tuple[MethodSpec, ...]
    targets: str | int | TargetsFile = "other"
    models: tuple[tuple[str, ModelSpec], ...] = ()
    density: DensityConfig | None = DensityConfig(method="shrinkage")
    num_cfs: int = 1
    seed: int = 0
    runner: RunnerConfig = RunnerConfig()
    runs: str | None = None
    common_over: tuple[str, ...] | None = None
    title: str = "Counterfactual explanations"
    grid: int = 6
    progress: bool = True

    writes_html = True  # ``jaxcf explain`` need not write the generic HTML report

    def __post_init__(self):
        if not isinstance(self.classifier, ModelSpec | UserModel):
            raise TypeError("ExperimentConfig.classifier must be a ModelSpec or a UserModel")
        if not isinstance(self.data, DataSpec):
            raise TypeError("ExperimentConfig.data must be a DataSpec")
        object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods or not all(isinstance(m, MethodSpec) for m in self.methods):
            raise ValueError("ExperimentConfig.methods must be a non-empty tuple of MethodSpecs")
        if isinstance(self.targets, str) and self.targets not in RULES:
            raise ValueError(
                f"ExperimentConfig.targets must be one of {RULES}, a class index or a "
                f"TargetsFile, got {self.targets!r}"
            )
        object.__setattr__(self, "models", tuple(tuple(m) for m in self.models))
        for entry in self.models:
            if len(entry) != 2 or not isinstance(entry[1], ModelSpec):
                raise TypeError("ExperimentConfig.models holds (name, ModelSpec) pairs")
        names = [n for n, _ in self.models]
        if len(set(names)) != len(names) or {"classifier", "density"} & set(names):
            raise ValueError(f"ExperimentConfig.models: names must be distinct and new: {names}")
        self._check_resources(names)
        if self.density is not None and not isinstance(self.density, DensityConfig):
            raise TypeError("ExperimentConfig.density must be a DensityConfig or None")
        validation.at_least(self, 1, "num_cfs", "grid")
        validation.at_least(self, 0, "seed")

    def _check_resources(self, names: list[str]) -> None:
        """Every resource a method needs is given, fitted or trained by default."""
        given = {"classifier", *names}
        if self.density is not None or isinstance(self.classifier, ModelSpec):
            given.add("density")  # fitted here, or brought by one of jaxcf's checkpoints
        if isinstance(self.data.source, str):
            given.add("vae")  # a registered image data set: a default VAE is trained on it
        for spec in self.methods:
            for need, key in spec.resource_keys().items():
                if key not in given:
                    how = _HOW_TO_GIVE.get(need, _HOW_TO_GIVE["model"]).format(key=key)
                    raise ValueError(f"method {spec.key!r} needs a {need!r}: {how}")

    def default_models(self, reader: RowReader) -> tuple[tuple[str, ModelSpec], ...]:
        """:attr:`models` and the models trained by default: a VAE (:data:`DEFAULT_VAE_STEPS`
        steps of :class:`~jaxcf.training.VAETrainConfig` on the data set's training split,
        kept in ``<workdir>/models/vae``) when a method needs one, none is given and the data
        is a registered image data set."""
        names = {n for n, _ in self.models}
        keys = {k for spec in self.methods for k in spec.resource_keys().values()}
        if "vae" not in keys or "vae" in names or not isinstance(self.data.source, str):
            return self.models
        shape = tuple(reader.input_shape)
        if len(shape) != 3:
            raise ValueError(
                f"a default VAE needs images [H, W, C]; {self.data.name} has inputs {shape}: "
                "give one in ExperimentConfig.models"
            )
        train = VAETrainConfig(
            model=VAEConfig(input_shape=shape),
            dataset=self.data.source,
            steps=DEFAULT_VAE_STEPS,
            eval_every=1000,
            save_every=500,
        )
        if self.progress:
            print(
                f"training a default VAE on {self.data.name} ({DEFAULT_VAE_STEPS} steps; give "
                "models=(('vae', ModelSpec(...)),) to choose another)",
                flush=True,
            )
        return (*self.models, ("vae", ModelSpec(train=train)))

    def load_classifier(self, workdir: str | Path) -> tuple[Any, Any, dict[str, Any]]:
        """``(classifier, density or None, summary)``: the classifier found, trained or loaded
        from the user's code."""
        if isinstance(self.classifier, UserModel):
            return self.classifier.load(), None, self.classifier.summary()
        clf = resolve_model("classifier", "classifier", self.classifier, workdir)
        return clf.model, clf.density, clf.summary()

    def resources(
        self, workdir: str | Path, reader: RowReader | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The methods' resources (models found or trained; a density fitted when a method
        needs one) and a JSON-ready summary of each."""
        workdir = Path(workdir)
        reader = reader or self.data.open()
        classifier, density, summary = self.load_classifier(workdir)
        classifier = fit_to_data(classifier, reader)
        resources: dict[str, Any] = {"classifier": classifier}
        info = {"classifier": summary}
        if density is None and "density" in needs(self.methods) and self.density is not None:
            density, info["density"] = fitted_density(
                classifier,
                self.data,
                workdir / MODELS_DIR / "density",
                self.density,
                progress=self.progress,
            )
        if density is not None:
            resources["density"] = density
        for name, spec in self.default_models(reader):
            kind = _infer_kind(ensure_trained(name, spec, workdir))
            context = {"classifier": classifier} if kind == "generator" else {}
            if kind == "agent":
                context = {"teacher": classifier}
            loaded = resolve_model(name, kind, spec, workdir, **context)
            resources[name] = loaded.model
            info[name] = loaded.summary()
        return resources, info

    def queries(self, classifier: Any, reader: RowReader) -> QueryRows:
        """The query source: the data's query rows, each with its targets by the rule."""
        rows = self.data.rows(reader)
        if isinstance(self.targets, TargetsFile):
            return QueryRows(reader, rows, self.targets.load(len(reader))[rows])
        logits = np.concatenate(
            [metrics.outputs(classifier, x) for x in blocks(reader, rows)], axis=0
        )
        pred = np.argmax(logits, axis=-1)
        num_classes = logits.shape[-1]
        if self.targets == "other":
            index, target = every_other_class(pred, num_classes)
            return QueryRows(reader, rows[index], target, source_class=pred[index])
        target = targets_by_rule(self.targets, pred, num_classes, seed=self.seed, logits=logits)
        return QueryRows(reader, rows, target, source_class=pred)

    def constraint_violations(self, results: Any, reader: RowReader) -> dict[str, Any]:
        """For a table with constraints: per method, the rows whose decoded counterfactual
        breaks one, and the broken columns in all (``{}`` for other data)."""
        table = self.data.source
        if not isinstance(table, TableFile) or not (
            table.immutable or table.increasing or table.fixed
        ):
            return {}
        transform = reader.transform
        out = {}
        for label, r in results.items():
            counts = violations(
                transform,
                transform.decode(np.asarray(r.x)),
                transform.decode(np.asarray(r.x_cf)),
                table.constraints,
                fixed=table.fixed or None,
            )
            out[label] = {
                "rows": int(len(counts)),
                "rows_violating": int((counts > 0).sum()),
                "violations": int(counts.sum()),
            }
        return out

    def run(self, workdir: str | Path) -> dict[str, Any]:
        """Finds or trains the models, runs every method (reusing finished runs), evaluates and
        writes ``<workdir>/report/``; returns what ``metrics.json`` holds (``{}`` in processes
        other than the first)."""
        workdir = Path(workdir)
        reader = self.data.open()
        resources, models = self.resources(workdir, reader)
        classifier = resources["classifier"]
        source = self.queries(classifier, reader)
        results = run_methods(
            self.methods,
            resources,
            source,
            None,
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
        constraints = self.constraint_violations(results, reader)
        rule = self.targets if not isinstance(self.targets, TargetsFile) else self.targets.path
        intro = (
            f"{len(source)} (query, target) pairs: {len(np.unique(source.rows))} queries from "
            f"{self.data.name} ({self.data.split}), targets by {rule!r}, {self.num_cfs} "
            "counterfactual(s) each."
        )
        if constraints:
            broken = ", ".join(
                f"{m} {c['rows_violating']} of {c['rows']}" for m, c in constraints.items()
            )
            intro += f" Rows breaking a table constraint (immutable, increasing, fixed): {broken}."
        doc = write_report(
            workdir / REPORT_DIR,
            results,
            evaluation,
            title=self.title,
            intro=intro,
            extra={
                "models": models,
                "data": {**to_jsonable(dataclasses.asdict(self.data)), **reader.identity()},
                "class_names": list(reader.class_names),
                "constraints": constraints,
                "config": to_jsonable(dataclasses.asdict(self)),
            },
            grid=self.grid,
            pred=lambda xs: metrics.predict(classifier, xs),
        )
        write_html_report(
            workdir,
            results,
            evaluation=evaluation,
            title=self.title,
            source=source.source_class,
            class_names=reader.class_names or None,
            transform=getattr(reader, "transform", None),
        )
        if self.progress:
            print("\n" + report.format_table(evaluation["summaries"]), flush=True)
        return doc
