"""Amortised counterfactual generators end to end: train the classifier and its generator, then
explain a test split with it and its peers and report (Van Looveren et al. 2021).

A :class:`GeneratorJob` names a data set, the classifier to explain (a
:class:`~jaxcf.training.TrainConfig`) and how to train the generator against it
(:class:`~jaxcf.training.GeneratorTrainConfig`). :func:`train_models` trains
whatever is missing under a workdir (the experiment skeleton's model folders) and loads the
rest::

    <workdir>/models/classifier/checkpoint   the classifier (and its feature density)
    <workdir>/models/generator/checkpoint    the EMA generator, tied to that classifier by digest

Both trainings resume from their ``progress/`` folders after an interruption.

:func:`run_protocol` (an :class:`ExplainConfig`) explains test queries with the trained generator
(``num_cfs`` diverse counterfactuals each, through the runner into the run store, where a
finished run is reused) and with its peers (Wachter's per-query search through the runner; DiCE
on tabular data), then evaluates every
method on the same queries: validity, MMD^2 to real training instances overall and per
predicted class (one kernel bandwidth per data set, shared by every method), L1, L0 and
constraint violations (tabular), diversity and steady-state seconds per counterfactual. It
writes ``<workdir>/report/{report.md, report.json}`` and figures; :data:`PUBLISHED` holds the
paper's numbers shown beside ours.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcf import peers, report
from jaxcf.core import (
    Results,
    load_config,
    to_jsonable,
    validation,
    write_atomic,
    write_json_atomic,
    write_text_atomic,
)
from jaxcf.data import load_dataset
from jaxcf.evaluation import distribution, metrics
from jaxcf.evaluation.distribution import class_mmd2, median_bandwidth, mmd2
from jaxcf.experiment import (
    RUNS_DIR,
    ModelSpec,
    checkpoint_path,
    flip_targets,
    load_model,
    resolve_model,
    run_explainer,
    soft_targets,
    steady_timing,
)
from jaxcf.methods import GeneratorConfig, WachterConfig, make
from jaxcf.report import embedding_plot, series_grid, target_scatter
from jaxcf.runner import RunnerConfig
from jaxcf.tabular import Constraints, violations, write_changes_csv
from jaxcf.training import GeneratorTrainConfig, TrainConfig, train_generator

CLASSIFIER_DIR = "classifier"
GENERATOR_DIR = "generator"


@dataclasses.dataclass(frozen=True)
class GeneratorJob:
    """Attributes:
    dataset: a registered data set; the generator trains on its ``train`` split and validates
      on its ``test`` split.
    classifier: how to train the classifier to explain (its ``dataset`` must match).
    generator: how to train the generator.
    train_examples: train the generator on the first this many training inputs (``None``:
      all).
    """

    dataset: str
    classifier: TrainConfig
    generator: GeneratorTrainConfig
    train_examples: int | None = None

    def __post_init__(self):
        if self.classifier.dataset != self.dataset:
            raise ValueError(
                f"the classifier trains on {self.classifier.dataset!r}, the job explains "
                f"{self.dataset!r}"
            )
        if self.train_examples is not None:
            validation.at_least(self, 1, "train_examples")

    def train(self, workdir: str | Path) -> str:
        """Trains whatever of the classifier and generator is missing under ``workdir`` (see
        :func:`train_models`); returns a one-line summary."""
        _, _, meta = train_models(self, workdir)
        last = meta["history"][-1]
        return (
            f"generator: validation validity {last['val_validity']:.4f}, L1 {last['val_l1']:.4f}; "
            f"saved {checkpoint_path(ModelSpec(train=self.generator), workdir, GENERATOR_DIR)}"
        )


def train_models(job: GeneratorJob, workdir: str | Path, *, mesh=None) -> tuple[Any, Any, dict]:
    """Trains (or loads) the classifier and the generator of ``job`` under ``workdir``
    (``<workdir>/models/classifier`` and ``<workdir>/models/generator``).

    Returns:
      ``(classifier, generator, generator_metadata)``; the classifier in eval mode.
    """
    clf = resolve_model(CLASSIFIER_DIR, "classifier", ModelSpec(train=job.classifier), workdir)

    def train(where: Path) -> None:
        data = load_dataset(job.dataset, "train")
        test = load_dataset(job.dataset, "test")
        n = len(data) if job.train_examples is None else job.train_examples
        train_generator(
            job.generator,
            clf.model,
            data.inputs[:n],
            test.inputs,
            where,
            metadata={
                "dataset": job.dataset,
                "classifier_checkpoint": str(clf.source),
                "classifier_test_accuracy": clf.metadata.get("test_accuracy"),
                "train_examples": int(n),
            },
            mesh=mesh,
            desc=f"generator on {job.dataset}",
        )

    gen = resolve_model(
        GENERATOR_DIR,
        "generator",
        ModelSpec(train=job.generator),
        workdir,
        trainer=train,
        classifier=clf.model,
    )
    return clf.model, gen.model, gen.metadata


# ============================================================================================
# The explanation protocol: generator and peers on the same test queries, one report
# ============================================================================================

PEERS: tuple[str, ...] = ("wachter", "dice")
TARGET_RULES: tuple[str, ...] = ("flip",)
DICE_METHODS: tuple[str, ...] = ("random", "genetic", "kdtree")
REPORT_DIR = "report"

# Van Looveren et al. (2021), the conditional generator's own results (their Tables 2 and 4).
# ``class_mmd2`` is per class index (Adult: <=50K, >50K; ECG5000: normal, abnormal). Their
# Adult L1 is on their own scaling of the numeric columns (not restated in the paper), so
# compare our L1 with it loosely; L0 counts changed features.
PUBLISHED: dict[str, dict[str, Any]] = {
    "adult": {"mmd2": 0.021, "class_mmd2": (0.023, 0.015), "l1": 0.065, "l0": 2.13},
    "ecg5000": {"class_mmd2": (0.096, 0.15)},
}


@dataclasses.dataclass(frozen=True)
class ExplainConfig:
    """The explanation protocol for a trained generator (:func:`run_protocol`).

    Attributes:
      job: the :class:`GeneratorJob` whose models explain, or the path of its train config
        file (a Python file defining ``get_config()``).
      queries: test inputs explained: the first this many of a seeded permutation of the test
        split (``None``: all of them).
      target: the target rule. ``"flip"``: a binary classifier's other class; with more
        classes, a seeded random class other than the prediction.
      num_cfs: counterfactuals per query from the generator (each from its own noise).
      fixed: tabular only: columns kept as in the query, by the generator and DiCE alike.
      peers: the methods the generator is compared with: ``"wachter"`` (per-query Adam search,
        through the runner) and/or ``"dice"`` (DiCE, tabular only).
      wachter: Wachter's config.
      wachter_queries: Wachter explains the first this many queries, one counterfactual each
        (its search is deterministic: more would be copies); ``None``: all.
      dice_method: DiCE's method (``"random"``, ``"genetic"``, ``"kdtree"``).
      dice_queries: DiCE explains the first this many queries, ``num_cfs`` counterfactuals
        each.
      soft_queries: if > 0, the generator also explains the first this many queries towards
        soft targets (probability ``p ~ U(0, 1)`` on the flip class, ``1 - p`` on the predicted
        one) and the report says how close it gets.
      mmd_reference: training instances (a seeded draw) the counterfactuals are compared with
        by MMD; the kernel bandwidth is the median heuristic on them, one for every method.
      runner: chunking of the generator's run (several chunks, so that the steady-state time
        can leave out the first, compiling one).
      wachter_runner: chunking and slots of Wachter's run.
      grid_queries: queries in the figures.
      changes_queries: tabular only: queries whose counterfactuals are listed in the changes
        CSVs.
      seed: seeds the query draw, the targets, the generator's noise and DiCE.
      train_missing: train the classifier and generator when their checkpoints are missing
        (otherwise a missing checkpoint is an error naming the command that trains it).
      progress: progress bars.
    """

    job: Any
    queries: int | None = 1000
    target: str = "flip"
    num_cfs: int = 3
    fixed: tuple[str, ...] = ()
    peers: tuple[str, ...] = ("wachter",)
    wachter: Any = None
    wachter_queries: int | None = 200
    dice_method: str = "random"
    dice_queries: int = 100
    soft_queries: int = 0
    mmd_reference: int = 5000
    runner: Any = None
    wachter_runner: Any = None
    grid_queries: int = 8
    changes_queries: int = 50
    seed: int = 0
    train_missing: bool = False
    progress: bool = True

    def __post_init__(self):

        if not isinstance(self.job, GeneratorJob | str | Path):
            raise TypeError(
                f"ExplainConfig.job must be a GeneratorJob or a config file path, got "
                f"{type(self.job).__name__}"
            )
        for name in ("queries", "wachter_queries"):
            if getattr(self, name) is not None:
                validation.at_least(self, 1, name)
        validation.one_of(self, "target", TARGET_RULES)
        validation.at_least(self, 1, "num_cfs", "dice_queries", "grid_queries", "changes_queries")
        validation.at_least(self, 0, "soft_queries", "seed")
        validation.at_least(self, 4, "mmd_reference")
        validation.one_of(self, "dice_method", DICE_METHODS)
        for name in ("fixed", "peers"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"ExplainConfig.{name} must be a tuple of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not all(isinstance(c, str) for c in self.fixed):
            raise ValueError(f"ExplainConfig.fixed must be column names, got {self.fixed!r}")
        unknown = [p for p in self.peers if p not in PEERS]
        if unknown or len(set(self.peers)) != len(self.peers):
            raise ValueError(
                f"ExplainConfig.peers must be distinct names among {PEERS}, got {self.peers!r}"
            )
        if self.queries is not None:
            counts = {"wachter": "wachter_queries", "dice": "dice_queries"}
            for name in ("soft_queries", *(counts[p] for p in self.peers)):
                value = getattr(self, name)
                if value is not None and value > self.queries:
                    raise ValueError(
                        f"ExplainConfig.{name} ({value}) exceeds the {self.queries} queries"
                    )
        if self.wachter is None:
            object.__setattr__(self, "wachter", WachterConfig())
        if not isinstance(self.wachter, WachterConfig):
            raise TypeError(
                f"ExplainConfig.wachter must be a WachterConfig, got {type(self.wachter).__name__}"
            )
        if self.runner is None:
            object.__setattr__(self, "runner", RunnerConfig(chunk_size=512))
        if self.wachter_runner is None:
            object.__setattr__(self, "wachter_runner", RunnerConfig(chunk_size=64, slots=32))
        for name in ("runner", "wachter_runner"):
            if not isinstance(getattr(self, name), RunnerConfig):
                raise TypeError(f"ExplainConfig.{name} must be a RunnerConfig")
        if isinstance(self.job, GeneratorJob):
            _check_job(self, self.job)

    def resolved_job(self) -> GeneratorJob:
        """The :class:`GeneratorJob` (loaded from its config file when given as a path)."""
        if isinstance(self.job, GeneratorJob):
            return self.job

        job = load_config(self.job)
        if not isinstance(job, GeneratorJob):
            raise TypeError(f"{self.job}: get_config() returned {type(job).__name__}, not a job")
        _check_job(self, job)
        return job

    def run(self, workdir: str | Path) -> dict[str, Any]:
        """Runs the protocol into ``workdir`` (see :func:`run_protocol`)."""
        return run_protocol(self, workdir)


def _is_tabular_job(job: GeneratorJob) -> bool:
    return getattr(job.generator.generator, "kind", "") == "tabular_generator"


def _check_job(config: ExplainConfig, job: GeneratorJob) -> None:
    if job.generator.target != "flip":
        raise ValueError(
            f"the protocol explains generators trained on flips; this one was trained on "
            f"{job.generator.target!r} targets"
        )
    if not _is_tabular_job(job):
        if "dice" in config.peers:
            raise ValueError("the DiCE peer explains tabular data only")
        if config.fixed:
            raise ValueError("ExplainConfig.fixed applies to tabular generators only")


def load_models(
    job: GeneratorJob, workdir: str | Path, *, train: bool = False
) -> tuple[Any, Any, dict, dict]:
    """``(classifier, generator, generator_metadata, classifier_metadata)`` of ``job`` under
    ``workdir``; trains what is missing when ``train`` (see :func:`train_models`).

    Raises:
      FileNotFoundError: a checkpoint is missing and ``train`` is False.
    """
    missing = [
        str(checkpoint_path(ModelSpec(train=c), workdir, name))
        for name, c in ((CLASSIFIER_DIR, job.classifier), (GENERATOR_DIR, job.generator))
        if not checkpoint_path(ModelSpec(train=c), workdir, name).exists()
    ]
    if missing and not train:
        raise FileNotFoundError(
            f"no trained model at {', '.join(missing)}: train it first with "
            f"`jaxcf train <train config> --workdir {workdir}` (or set "
            "ExplainConfig.train_missing)"
        )
    classifier, generator, meta = train_models(job, workdir)
    clf_meta = load_model(
        "classifier", checkpoint_path(ModelSpec(train=job.classifier), workdir, CLASSIFIER_DIR)
    )[1]
    return classifier, generator, meta, clf_meta


def encoded_box(wachter_config: Any, *arrays: np.ndarray) -> Any:
    """Wachter's config for encoded tabular rows: without a ``domain`` of its own it would take
    the classifier's, and jaxcf's MLP declares the image box ``[0, 1]`` whatever its inputs
    (encoded numeric columns go below 0); search in the box the given encodings span instead."""
    if wachter_config.domain is not None:
        return wachter_config
    lo = float(min(np.min(a) for a in arrays))
    hi = float(max(np.max(a) for a in arrays))
    return dataclasses.replace(wachter_config, domain=(lo, hi))


# -------------------------------------------------------------------------------- the space


class _Space:
    """How one modality is measured: projection to valid inputs, the MMD/embedding feature
    space, per-row L1/L0, constraint violations and the distance diversity is measured in."""

    def __init__(self, classifier, generator, train, config: ExplainConfig):
        self.classifier = classifier
        self.fixed = config.fixed
        self.transform = getattr(generator, "transform", None)
        shape = tuple(train.inputs.shape[1:])
        if self.transform is not None:
            self.kind = "tabular"
            self.constraints = Constraints(**(generator.config.constraints or {}))
            decoded = self.transform.decode(train.inputs)
            self.numeric = [c.name for c in self.transform.schema.columns if c.kind == "numeric"]
            self.categorical = [c for c in self.transform.schema.columns if c.kind == "categorical"]
            self.std = {
                n: float(np.std(np.asarray(decoded[n], np.float64))) or 1.0 for n in self.numeric
            }
            self.train_table = decoded
        else:
            self.kind = "image" if len(shape) == 3 and shape[-1] in (1, 3) else "series"
            self.constraints = None
        self.elements = int(np.prod(shape))

    @property
    def feature_space(self) -> str:
        return {
            "image": "the paper's fixed random conv encoder (32-d, jaxcf.evaluation.distribution."
            "encode_images, seed 0)",
            "series": f"the raw series ({self.elements} values, standardised units)",
            "tabular": f"the {self.elements}-d encoding (one-hot categories, mode-specific "
            "normalisation of numeric columns) of valid rows",
        }[self.kind]

    def project(self, x: np.ndarray) -> np.ndarray:
        """Valid inputs: tabular rows through decode -> encode; other inputs as they are."""
        if self.transform is None:
            return np.asarray(x, np.float32)
        return self.transform.encode(self.transform.decode(x))

    def features(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "image":
            return distribution.encode_images(x)
        return np.asarray(x, np.float32).reshape(len(x), -1)

    def l1(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray:
        """Images/series: mean ``|x_cf - x|`` per element. Tabular: ``sum_numeric |v_cf -
        v_x| / std_train`` on decoded rows."""
        if self.transform is None:
            return metrics.l1(x, x_cf) / self.elements
        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return sum(
            np.abs(np.asarray(b[n], np.float64) - np.asarray(a[n], np.float64)) / self.std[n]
            for n in self.numeric
        )

    def l0(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray | None:
        """Tabular: features (of 12 for Adult) whose decoded value changed; None otherwise."""
        if self.transform is None:
            return None
        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return sum(
            (np.asarray(a[n]) != np.asarray(b[n])).astype(np.int64) for n in self.transform.names
        )

    def violations(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray | None:
        if self.transform is None:
            return None

        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return violations(self.transform, a, b, self.constraints, fixed=list(self.fixed))

    def distance_rows(self, x: np.ndarray) -> np.ndarray:
        """Rows whose L1 distance is the diversity distance: the inputs themselves for images
        and series (then divided by the element count), and for tabular rows the standardised
        numeric values next to the categorical one-hots halved, so that the L1 distance of two
        rows is their standardised numeric L1 plus the number of categories that differ."""
        if self.transform is None:
            return np.asarray(x, np.float64).reshape(len(x), -1)
        table = self.transform.decode(x)
        parts = [np.asarray(table[n], np.float64)[:, None] / self.std[n] for n in self.numeric]
        for column in self.categorical:
            idx = np.searchsorted(np.asarray(column.categories, object), table[column.name])
            parts.append(0.5 * np.eye(len(column.categories))[idx])
        return np.concatenate(parts, axis=1)

    @property
    def diversity_scale(self) -> float:
        return float(self.elements) if self.transform is None else 1.0


# ---------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class _Rows:
    """One method's counterfactuals, one row each, over some of the protocol's queries."""

    label: str
    method: str
    x: np.ndarray  # [R, ...] the query of each row
    x_cf: np.ndarray  # [R, ...] as the method returned it
    target: np.ndarray  # [R]
    query: np.ndarray  # [R] index into the protocol's queries
    seconds_per_cf: float
    timing: dict[str, Any]
    num_cfs: int

    @classmethod
    def from_results(cls, label: str, results, timing: dict[str, Any], num_cfs: int) -> _Rows:
        """The rows of a runner record, labelled ``label`` (also the method's name)."""
        return cls(
            label,
            label,
            np.asarray(results.x),
            np.asarray(results.x_cf),
            np.asarray(results.target),
            np.asarray(results.query),
            timing["seconds_per_cf"],
            timing,
            num_cfs,
        )


def _mean(a) -> float | None:
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def _evaluate_rows(
    rows: _Rows,
    space: _Space,
    reference: tuple[np.ndarray, np.ndarray],
    bandwidth: float,
    num_classes: int,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One method's metrics (JSON-ready) and, for the figures, its evaluated rows."""

    clf = space.classifier
    valid_raw = metrics.validity(clf, rows.x_cf, rows.target)
    x_eval = space.project(rows.x_cf)
    valid = metrics.validity(clf, x_eval, rows.target)
    feats = space.features(x_eval)
    pred_cf = metrics.predict(clf, x_eval)
    ref_feats, ref_labels = reference
    mmd = distribution.mmd2(feats, ref_feats, bandwidth) if len(feats) >= 2 else float("nan")
    cls = distribution.class_mmd2(feats, pred_cf, ref_feats, ref_labels, num_classes, bandwidth)
    l1 = space.l1(rows.x, x_eval)
    l0 = space.l0(rows.x, x_eval)
    viol = space.violations(rows.x, x_eval)
    diversity = diversity_valid = None
    if rows.num_cfs > 1:
        r = len(rows.x_cf)
        record = Results(
            x=space.distance_rows(rows.x),
            target=rows.target,
            x_cf=space.distance_rows(x_eval),
            success=valid,
            n_iter=np.zeros(r, np.int32),
            score=np.zeros(r, np.float32),
            query=rows.query,
            cf=np.zeros(r, np.int32),
            group=np.zeros(r, np.int32),
        )
        every = metrics.query_metrics(record, {"success": np.ones(r, bool)}, keys=())
        among_valid = metrics.query_metrics(record, {"success": valid}, keys=())
        div, div_valid = _mean(every["diversity"]), _mean(among_valid["diversity"])
        diversity = None if div is None else div / space.diversity_scale
        diversity_valid = None if div_valid is None else div_valid / space.diversity_scale
    out = {
        "method": rows.method,
        "queries": int(len(np.unique(rows.query))),
        "counterfactuals": int(len(rows.x_cf)),
        "num_cfs": rows.num_cfs,
        "validity": float(valid.mean()),
        "validity_raw": float(valid_raw.mean()),
        "mmd2": mmd,
        "class_mmd2": [None if not np.isfinite(v) else float(v) for v in cls],
        "class_counts": np.bincount(pred_cf, minlength=num_classes).tolist(),
        "l1": _mean(l1),
        "l1_valid": _mean(l1[valid]) if valid.any() else None,
        "l0": None if l0 is None else _mean(l0),
        "violations": None if viol is None else int(viol.sum()),
        "rows_violating": None if viol is None else int((viol > 0).sum()),
        "diversity": diversity,
        "diversity_valid": diversity_valid,
        "seconds_per_cf": rows.seconds_per_cf,
        "timing": rows.timing,
        "bandwidth": bandwidth,
    }
    return out, {"x_eval": x_eval, "features": feats, "pred_cf": pred_cf, "valid": valid}


# ------------------------------------------------------------------------------ protocol


def run_protocol(config: ExplainConfig, workdir: str | Path) -> dict[str, Any]:
    """Explains test queries with the trained generator and its peers; evaluates and reports.

    Runs the generator (``num_cfs`` counterfactuals per query) and Wachter through the runner
    (chunked, sharded over every device, resumable) and DiCE through
    :class:`jaxcf.peers.dice.DicePeer`, into the run store ``<workdir>/runs`` (finished runs are
    reused); evaluates every method (validity, MMD^2 overall and per predicted class with one shared
    bandwidth, L1, L0, constraint violations, diversity, seconds per counterfactual) and writes
    ``<workdir>/report/{report.md, report.json}`` and figures.

    Returns:
      The dict written to ``report.json``.
    """

    workdir = Path(workdir)
    job = config.resolved_job()
    out = workdir / REPORT_DIR
    runs = workdir / RUNS_DIR
    classifier, generator, gen_meta, clf_meta = load_models(
        job, workdir, train=config.train_missing
    )
    train = load_dataset(job.dataset, "train")
    test = load_dataset(job.dataset, "test")
    num_classes = test.num_classes or int(np.max(train.labels)) + 1
    class_names = list(test.class_names) or [str(c) for c in range(num_classes)]
    space = _Space(classifier, generator, train, config)

    n = len(test) if config.queries is None else min(config.queries, len(test))
    order = np.random.default_rng(config.seed).permutation(len(test))[:n]
    x = np.asarray(test.inputs[order], np.float32)
    pred = metrics.predict(classifier, x)
    target = flip_targets(pred, num_classes, config.seed + 1)

    # One bandwidth for every method, from real training data alone.
    ref_idx = np.sort(
        np.random.default_rng(config.seed + 2).permutation(len(train))[
            : min(config.mmd_reference, len(train))
        ]
    )
    ref_x = np.asarray(train.inputs[ref_idx], np.float32)
    ref_feats = space.features(ref_x)
    half = len(ref_feats) // 2
    bandwidth = median_bandwidth(ref_feats[:half], ref_feats[half:])
    reference = (ref_feats, np.asarray(train.labels[ref_idx]).astype(np.int64))

    explainer = make(
        "generator", GeneratorConfig(fixed=config.fixed), classifier=classifier, generator=generator
    )
    gen = run_explainer(
        "generator",
        explainer,
        x,
        target,
        workdir,
        config=config.runner,
        num_cfs=config.num_cfs,
        seed=config.seed,
        progress=config.progress,
        meta={"method": "generator", "dataset": job.dataset},
    )
    gen_timing = steady_timing(gen)
    method_rows = {"generator": _Rows.from_results("generator", gen, gen_timing, config.num_cfs)}

    def generator_subset(k: int) -> None:
        if k >= n:
            return
        keep = np.asarray(gen.query) < k
        base = method_rows["generator"]
        method_rows[f"generator (first {k})"] = dataclasses.replace(
            base,
            label=f"generator (first {k})",
            x=base.x[keep],
            x_cf=base.x_cf[keep],
            target=base.target[keep],
            query=base.query[keep],
        )

    peer_queries: dict[str, int] = {}
    if "wachter" in config.peers:
        k = n if config.wachter_queries is None else min(config.wachter_queries, n)
        peer_queries["wachter"] = k
        generator_subset(k)
        wachter_config = config.wachter
        if space.kind == "tabular":
            wachter_config = encoded_box(wachter_config, train.inputs, x)
        wachter = make("wachter", wachter_config, classifier=classifier)
        res = run_explainer(
            "wachter",
            wachter,
            x[:k],
            target[:k],
            workdir,
            config=config.wachter_runner,
            num_cfs=1,
            seed=config.seed,
            progress=config.progress,
            meta={"method": "wachter", "config": dataclasses.asdict(wachter_config)},
        )
        timing = {**steady_timing(res), "config": dataclasses.asdict(wachter_config)}
        method_rows["wachter"] = _Rows.from_results("wachter", res, timing, 1)
    left_out: dict[str, str] = {}
    if "dice" in config.peers and not peers.available("dice"):
        left_out["dice"] = peers.missing_message("dice")
        print(left_out["dice"], flush=True)
    elif "dice" in config.peers:
        if space.transform is None:
            raise ValueError("the DiCE peer explains tabular data only")
        k = min(config.dice_queries, n)
        peer_queries["dice"] = k
        generator_subset(k)
        method_rows["dice"] = _run_dice(config, space, classifier, train, x[:k], target[:k], runs)

    evaluation, extras = {}, {}
    for label, rows in method_rows.items():
        evaluation[label], extras[label] = _evaluate_rows(
            rows, space, reference, bandwidth, num_classes
        )
    gen_s = evaluation["generator"]["seconds_per_cf"]
    for ev in evaluation.values():
        ev["generator_speedup"] = (
            ev["seconds_per_cf"] / gen_s if gen_s and ev["seconds_per_cf"] else None
        )

    # The noise floor: the real test queries themselves, by their predicted class.
    query_feats = space.features(x)
    real = {
        "mmd2": mmd2(query_feats, ref_feats, bandwidth),
        "class_mmd2": [
            None if not np.isfinite(v) else float(v)
            for v in class_mmd2(query_feats, pred, ref_feats, reference[1], num_classes, bandwidth)
        ],
        "queries": n,
    }

    soft = None
    if config.soft_queries:
        soft = _soft_run(config, explainer, classifier, x, pred, target, num_classes, out, workdir)

    figures = _figures(
        config, space, out, method_rows, extras, x, pred, query_feats, class_names, soft
    )
    published = PUBLISHED.get(job.dataset)
    doc = {
        "dataset": job.dataset,
        "job": _job_name(config.job),
        "classifier": {
            "model": clf_meta.get("model"),
            "test_accuracy": clf_meta.get("test_accuracy"),
        },
        "generator": {
            "config": gen_meta.get("configs", {}).get("generator"),
            "train_steps": gen_meta.get("train_config", {}).get("steps"),
            "train_seconds": gen_meta.get("train_seconds"),
            "last_validation": (gen_meta.get("history") or [None])[-1],
        },
        "queries": n,
        "num_cfs": config.num_cfs,
        "target_rule": config.target,
        "seed": config.seed,
        "peer_queries": peer_queries,
        "left_out": left_out,
        "class_names": class_names,
        "bandwidth": {
            "value": bandwidth,
            "space": space.feature_space,
            "reference_instances": len(ref_idx),
            "rule": "median heuristic on real training instances only, shared by every method",
        },
        "conventions": _conventions(space),
        "methods": evaluation,
        "real_queries": real,
        "soft_targets": soft,
        "published": published,
        "figures": figures,
        "config": _config_json(config),
        "devices": [str(d) for d in jax.devices()],
    }
    write_json_atomic(out / "report.json", doc)
    text = _report_markdown(doc, space)
    write_text_atomic(out / "report.md", text)
    print(_main_table(doc, space), flush=True)
    return to_jsonable(doc)


def _job_name(job: Any) -> str:
    """A job config file as a path relative to the working directory (when under it)."""
    if isinstance(job, GeneratorJob):
        return "GeneratorJob"
    path = Path(job).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def _config_json(config: ExplainConfig) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.name == "job":
            v = _job_name(v)
        elif dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        out[f.name] = v
    return to_jsonable(out)


def _run_dice(config, space, classifier, train, x, target, runs: Path) -> _Rows:
    """DiCE on the queries, cached in ``runs/dice/dice.npz`` (keyed by its settings)."""
    import json

    from jaxcf.peers.dice import DicePeer

    path = runs / "dice" / "dice.npz"
    settings = {
        "method": config.dice_method,
        "queries": len(x),
        "num_cfs": config.num_cfs,
        "seed": config.seed,
        "fixed": list(config.fixed),
        "x_digest": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest(),
        "target_digest": hashlib.sha256(np.ascontiguousarray(target).tobytes()).hexdigest(),
    }
    cached = None
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["settings"])) == settings:
                cached = {k: f[k] for k in f.files}
    if cached is None:
        peer = DicePeer(
            classifier,
            space.transform,
            (space.train_table, np.asarray(train.labels)),
            method=config.dice_method,
            constraints=space.constraints,
        )
        result = peer.explain(
            space.transform.decode(x),
            [int(t) for t in target],
            total_CFs=config.num_cfs,
            fixed=list(config.fixed) or None,
            seed=config.seed,
        )
        cached = {
            "x_cf": result.x_cf,
            "query_index": result.query_index,
            "found": result.found,
            "seconds": result.seconds,
            "setup_seconds": np.asarray(result.setup_seconds),
        }
        write_atomic(
            path, lambda f: np.savez(f, settings=np.asarray(json.dumps(settings)), **cached)
        )
    q = np.asarray(cached["query_index"]).astype(np.int64)
    seconds = np.asarray(cached["seconds"], np.float64)
    per_cf = float(seconds.sum() / (len(seconds) * config.num_cfs))
    timing = {
        "seconds_per_cf": per_cf,
        "steady_state": True,
        "per_query_seconds_mean": float(seconds.mean()),
        "setup_seconds": float(cached["setup_seconds"]),
        "found": int(np.asarray(cached["found"]).sum()),
        "total_seconds": float(seconds.sum()),
    }
    return _Rows(
        "dice",
        f"dice ({config.dice_method})",
        x[q],
        np.asarray(cached["x_cf"], np.float32),
        target[q],
        q,
        per_cf,
        timing,
        config.num_cfs,
    )


def _soft_run(config, explainer, classifier, x, pred, flip, num_classes, out, workdir):

    k = min(config.soft_queries, len(x))
    t, p = soft_targets(pred[:k], flip[:k], num_classes, config.seed + 3)
    res = run_explainer(
        "generator_soft",
        explainer,
        x[:k],
        t,
        workdir,
        config=config.runner,
        num_cfs=1,
        seed=config.seed,
        progress=config.progress,
        meta={"method": "generator", "targets": "soft"},
    )
    probs = jax.nn.softmax(metrics.outputs(classifier, np.asarray(res.x_cf)), axis=-1)
    probs = np.asarray(probs, np.float64)
    rows = np.arange(k)
    achieved = probs[rows, flip[:k]]
    valid = metrics.validity(classifier, np.asarray(res.x_cf), t)
    err = np.abs(achieved - p)
    before = np.asarray(jax.nn.softmax(metrics.outputs(classifier, x[:k]), axis=-1), np.float64)[
        rows, flip[:k]
    ]
    path = out / "soft_targets.png"
    target_scatter(
        path,
        p,
        achieved,
        kind="soft",
        success=valid,
        title=f"Generator (trained on flips) towards soft targets, {k} queries",
    )
    r = float(np.corrcoef(p, achieved)[0, 1]) if achieved.std() > 0 else None
    return {
        "queries": k,
        "rule": "p ~ U(0, 1) on the flip class, 1 - p on the predicted class",
        "within_tolerance": float(valid.mean()),
        "tolerance": explainer.config.tolerance,
        "mae": float(err.mean()),
        "median_abs_error": float(np.median(err)),
        "pearson_r": r,
        "mae_before": float(np.abs(before - p).mean()),
        "figure": path.name,
    }


# ------------------------------------------------------------------------------- figures


def _figures(config, space, out, method_rows, extras, x, pred, query_feats, class_names, soft):

    written = []
    gen = method_rows["generator"]
    n_cfs = gen.num_cfs
    # The figures' queries: the first ones, which every method explained.
    n_show = min(config.grid_queries, len(x))
    if space.kind == "image":
        results = {}
        for k in range(min(n_cfs, 3)):
            sel = (gen.query < n_show) & (np.arange(len(gen.query)) % n_cfs == k)
            results[f"generator #{k + 1}" if n_cfs > 1 else "generator"] = gen.x_cf[sel]
        if "wachter" in method_rows:
            w = method_rows["wachter"]
            results["wachter"] = w.x_cf[w.query < n_show]
        path = out / "grid.png"
        report.counterfactual_grid(
            path,
            x[:n_show],
            results,
            gen.target[gen.query < n_show][::n_cfs],
            pred=pred[:n_show],
            n=n_show,
            title="Counterfactuals and differences (red: increased)",
        )
        written.append(path.name)
    elif space.kind == "series":
        for label in ("generator", "wachter"):
            if label not in method_rows:
                continue
            rows = method_rows[label]
            pick = np.flatnonzero(np.r_[True, np.diff(rows.query) != 0])  # first cf per query
            for c in range(len(class_names)):
                mine = pick[pred[rows.query[pick]] == c][: config.grid_queries]
                if not len(mine):
                    continue
                to = int(rows.target[mine[0]]) if len(class_names) == 2 else None
                name = f"series_{label}_{class_names[c]}" + (
                    f"_to_{class_names[to]}" if to is not None else ""
                )
                path = out / f"{_slug(name)}.png"
                series_grid(
                    path,
                    rows.x[mine],
                    extras[label]["x_eval"][mine],
                    pred=pred[rows.query[mine]],
                    target=rows.target[mine],
                    class_names=class_names,
                    n=len(mine),
                    title=f"{label}: predicted {class_names[c]}",
                )
                written.append(path.name)
    else:
        k = min(config.changes_queries, len(x))
        for label in ("generator", "dice", "wachter"):
            if label not in method_rows:
                continue
            rows = method_rows[label]
            sel = rows.query < k
            ev = extras[label]
            path = out / f"changes_{label}.csv"
            write_changes_csv(
                path,
                space.transform,
                rows.x[sel],
                ev["x_eval"][sel],
                rows.query[sel].tolist(),
                extra={
                    "target": [class_names[int(t)] for t in rows.target[sel]],
                    "valid": [bool(v) for v in ev["valid"][sel]],
                },
            )
            written.append(path.name)
    # Embeddings: originals (the queries) against each method's counterfactuals, by predicted
    # class, in the MMD feature space.
    for label in method_rows:
        if label.startswith("generator ("):
            continue
        path = out / f"embedding_{_slug(label)}.png"
        embedding_plot(
            path,
            query_feats,
            extras[label]["features"],
            pred,
            extras[label]["pred_cf"],
            class_names=class_names,
            title=f"{label}: queries (o) and counterfactuals (x), PCA of {space.kind} features",
        )
        written.append(path.name)
    if soft is not None:
        written.append(soft["figure"])
    return written


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")


# -------------------------------------------------------------------------------- report


def _conventions(space: _Space) -> dict[str, str]:
    out = {
        "validity": "argmax of the classifier on the counterfactual equals the target; "
        "'validity' on the row as used (tabular: after decode -> encode), 'validity_raw' on "
        "the method's own output",
        "mmd2": "unbiased MMD^2 (Gaussian kernel) between all of a method's counterfactuals "
        "and real training instances, in " + space.feature_space,
        "class_mmd2": "per class c: counterfactuals the classifier predicts as c against "
        "training instances labelled c (NaN/None with fewer than 2 on a side)",
        "diversity": "mean pairwise distance among a query's num_cfs counterfactuals "
        "(metrics.query_metrics), averaged over queries ('diversity_valid' in report.json: "
        "among its valid ones, over queries with at least two)",
        "seconds_per_cf": "steady state: the runner's chunk times without the first "
        "(compiling) chunk, per counterfactual, end to end (host steps, transfers, chunk "
        "files: on small models these dominate; benchmarks/amortised.py times the compute "
        "alone); DiCE: its per-query wall time / num_cfs",
    }
    if space.kind == "tabular":
        out["l1"] = (
            "sum over the numeric columns of |value_cf - value_query| / (training std of "
            "the column), on decoded rows, averaged over all counterfactuals"
        )
        out["l0"] = "features whose decoded value changed (categorical or numeric)"
        out["violations"] = (
            "immutable or fixed columns changed plus increasing columns lowered, summed over "
            "counterfactuals (decoded rows)"
        )
        out["diversity"] += (
            "; distance = standardised numeric L1 + number of categorical features that differ"
        )
    else:
        out["l1"] = "mean |x_cf - x| per element, averaged over all counterfactuals"
        out["diversity"] += "; distance = mean |a - b| per element"
    return out


def _fmt(v: Any, fmt: str, scale: float = 1.0) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "\u2014"
    return format(v * scale, fmt)


def _main_table(doc: Mapping[str, Any], space: _Space) -> str:
    tabular = space.kind == "tabular"
    names = doc["class_names"]
    per_class = len(names) <= 3
    head = ["method", "queries", "cfs", "validity %"]
    if tabular:
        head += ["validity before projection %"]
    head += ["MMD\u00b2"]
    head += [f"class MMD\u00b2 {c}" for c in names] if per_class else ["class MMD\u00b2 (mean)"]
    head += ["L1"] + (["L0", "violations"] if tabular else [])
    head += ["diversity", "ms per cf", "generator speed-up"]
    lines = ["| " + " | ".join(head) + " |", "| :--- |" + " ---: |" * (len(head) - 1)]
    for label, m in doc["methods"].items():
        cells = [label, str(m["queries"]), str(m["counterfactuals"])]
        cells += [_fmt(m["validity"], ".1f", 100)]
        if tabular:
            cells += [_fmt(m["validity_raw"], ".1f", 100)]
        cells += [_fmt(m["mmd2"], ".4f")]
        if per_class:
            cells += [_fmt(v, ".4f") for v in m["class_mmd2"]]
        else:
            cells += [_fmt(_mean([np.nan if v is None else v for v in m["class_mmd2"]]), ".4f")]
        cells += [_fmt(m["l1"], ".4f")]
        if tabular:
            cells += [_fmt(m["l0"], ".2f"), str(m["violations"])]
        cells += [
            _fmt(m["diversity"], ".3f"),
            _fmt(m["seconds_per_cf"], ".3g", 1e3),
            "1 (itself)"
            if m["method"] == "generator"
            else _fmt(m["generator_speedup"], ",.0f") + "x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    pub = doc.get("published")
    if pub:
        cells = ["paper (generator)", "\u2014", "\u2014", "\u2014"]
        if tabular:
            cells += ["\u2014"]
        cells += [_fmt(pub.get("mmd2"), ".4f")]
        cls = pub.get("class_mmd2") or [None] * len(names)
        cells += [_fmt(v, ".4f") for v in cls] if per_class else ["\u2014"]
        cells += [_fmt(pub.get("l1"), ".4f")]
        if tabular:
            cells += [_fmt(pub.get("l0"), ".2f"), "0"]
        cells += ["\u2014", "\u2014", "\u2014"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _class_table(doc: Mapping[str, Any]) -> str:
    names = doc["class_names"]
    head = ["method", *(f"{c}" for c in names)]
    lines = ["| " + " | ".join(head) + " |", "| :--- |" + " ---: |" * len(names)]
    for label, m in doc["methods"].items():
        cells = [
            f"{_fmt(v, '.4f')} ({n})"
            for v, n in zip(m["class_mmd2"], m["class_counts"], strict=True)
        ]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _report_markdown(doc: Mapping[str, Any], space: _Space) -> str:
    clf = doc["classifier"]
    gen = doc["generator"]
    bw = doc["bandwidth"]
    peers = ", ".join(f"{p} on the first {k}" for p, k in doc["peer_queries"].items())
    intro = (
        f"Data set **{doc['dataset']}**: {doc['queries']} test queries (a seeded draw), target "
        f"rule `{doc['target_rule']}`, {doc['num_cfs']} counterfactuals per query from the "
        f"generator"
        + (
            f"; peers: {peers} (Wachter: one counterfactual per query, its search is deterministic)"
            if peers
            else ""
        )
        + ". "
        f"Classifier: {(clf.get('model') or {}).get('kind')}, test accuracy "
        f"{_fmt(clf.get('test_accuracy'), '.4f')}. Generator trained "
        f"{gen.get('train_steps')} steps"
        + (
            f" (last validation: validity {_fmt(gen['last_validation'].get('val_validity'), '.3f')}"
            f", L1 {_fmt(gen['last_validation'].get('val_l1'), '.4f')})"
            if gen.get("last_validation")
            else ""
        )
        + ".\n\n"
        f"One kernel bandwidth for every method: s = {bw['value']:.4g}, the median heuristic on "
        f"{bw['reference_instances']} real training instances in {bw['space']}. Rows "
        "'generator (first k)' are the generator on the peers' queries, for a like-for-like "
        "comparison.\n"
    )
    for note in doc.get("left_out", {}).values():
        intro += f"\nNote: {note}.\n"
    conv = "\n".join(f"* **{k}**: {v}" for k, v in doc["conventions"].items())
    text = f"# Amortised counterfactual generator on {doc['dataset']}\n\n{intro}\n"
    text += _main_table(doc, space)
    if doc.get("published"):
        text += (
            "\n'paper (generator)': Van Looveren et al. (2021), their conditional generator's "
            "own numbers (other classifier, other training budget).\n"
        )
    real = doc["real_queries"]
    text += (
        f"\nFor scale: the {real['queries']} real test queries themselves (unchanged, by "
        f"predicted class) give MMD\u00b2 {_fmt(real['mmd2'], '.4f')}, class MMD\u00b2 "
        + " / ".join(_fmt(v, ".4f") for v in real["class_mmd2"])
        + ".\n"
    )
    text += "\nClass MMD\u00b2 per predicted class (counterfactuals predicted as the class):\n\n"
    text += _class_table(doc)
    soft = doc.get("soft_targets")
    if soft:
        text += (
            f"\n## Soft targets\n\nThe same generator (trained on flips only) on the first "
            f"{soft['queries']} queries with soft targets ({soft['rule']}): the classifier's "
            f"probability of the flip class lands within {soft['mae']:.3f} of p on average "
            f"(median {soft['median_abs_error']:.3f}; Pearson r "
            f"{_fmt(soft['pearson_r'], '.3f')}; before explaining, the mean gap was "
            f"{soft['mae_before']:.3f}); {100 * soft['within_tolerance']:.1f}% are within the "
            f"total-variation tolerance {soft['tolerance']}.\n\n![soft targets]"
            f"({soft['figure']})\n"
        )
    text += f"\n## Conventions\n\n{conv}\n\n## Figures\n\n"
    for f in doc["figures"]:
        if soft and f == soft["figure"]:
            continue  # shown with its section
        text += f"![{f}]({f})\n\n" if f.endswith(".png") else f"* [{f}]({f})\n\n"
    return text
