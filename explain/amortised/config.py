"""The explanation protocol's settings: :class:`ExplainConfig`, its checks against itself and
against the job it explains, and the names its fields choose from."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from explain.amortised.job import GeneratorJob
from jaxcf.core import load_config, validation
from jaxcf.methods import CFProtoConfig, WachterConfig
from jaxcf.runner import RunnerConfig

PEERS: tuple[str, ...] = ("wachter", "dice", "cfproto")
TARGET_RULES: tuple[str, ...] = ("flip",)
DICE_METHODS: tuple[str, ...] = ("random", "genetic", "kdtree")


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
        through the runner), ``"dice"`` (DiCE, tabular only) and/or ``"cfproto"`` (CFProto's
        prototype-guided FISTA search with input-space prototypes, through the runner; it
        moves rows freely, like Wachter, so it refuses ``fixed`` columns).
      wachter: Wachter's config.
      wachter_queries: Wachter explains the first this many queries, one counterfactual each
        (its search is deterministic: more would be copies); ``None``: all.
      cfproto: CFProto's config (default: :class:`~jaxcf.methods.CFProtoConfig`'s defaults,
        alibi's constructor weights, with ``theta=10``, the weight of alibi's k-d-tree example
        for prototypes in input space).
      cfproto_queries: CFProto explains the first this many queries, one counterfactual each
        (deterministic, like Wachter); ``None``: all.
      cfproto_rows: tabular only: CFProto checks, measures and keeps the rows its iterates
        decode to (``project=transform.projection()``: one-hot blocks snapped to their
        argmax, numbers rounded and re-encoded), so every counterfactual it returns is a
        valid row; ``False`` judges the raw 85-d iterates (most then decode back to the
        query's class).
      prototype_examples: CFProto's prototype bank holds the first this many training inputs,
        labelled by the classifier (``None``: all of them).
      dice_method: DiCE's method (``"random"``, ``"genetic"``, ``"kdtree"``).
      dice_queries: DiCE explains the first this many queries, ``num_cfs`` counterfactuals
        each.
      extra_generators: further generators explaining the same queries, each a ``(name,
        job)`` pair (``job`` a :class:`GeneratorJob` or its train config file) reported as the
        row ``generator (name)``. Each job must explain the same data set with the same
        classifier config as ``job``; its generator lives in
        ``<workdir>/models/generator_<name>`` (``name``: lowercase letters, digits, ``_``).
      soft_queries: if > 0, the generator also explains the first this many queries towards
        soft targets (probability ``p ~ U(0, 1)`` on the flip class, ``1 - p`` on the predicted
        one) and the report says how close it gets.
      mmd_reference: training instances (a seeded draw) the counterfactuals are compared with
        by MMD; the kernel bandwidth is the median heuristic on them, one for every method.
      runner: chunking of the generator's run (several chunks, so that the steady-state time
        can leave out the first, compiling one).
      wachter_runner: chunking and slots of Wachter's run.
      cfproto_runner: chunking and slots of CFProto's run.
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
    cfproto: Any = None
    cfproto_queries: int | None = 100
    cfproto_rows: bool = True
    prototype_examples: int | None = None
    dice_method: str = "random"
    dice_queries: int = 100
    extra_generators: tuple[tuple[str, Any], ...] = ()
    soft_queries: int = 0
    mmd_reference: int = 5000
    runner: Any = None
    wachter_runner: Any = None
    cfproto_runner: Any = None
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
        for name in ("queries", "wachter_queries", "cfproto_queries", "prototype_examples"):
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
            counts = {
                "wachter": "wachter_queries",
                "dice": "dice_queries",
                "cfproto": "cfproto_queries",
            }
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
        if self.cfproto is None:
            object.__setattr__(self, "cfproto", CFProtoConfig(theta=10.0))
        if not isinstance(self.cfproto, CFProtoConfig):
            raise TypeError(
                f"ExplainConfig.cfproto must be a CFProtoConfig, got {type(self.cfproto).__name__}"
            )
        if "cfproto" in self.peers and self.fixed:
            raise ValueError(
                "the CFProto peer moves the encoded row freely and cannot keep ExplainConfig.fixed "
                f"columns {self.fixed!r}: drop 'cfproto' from peers or the fixed columns"
            )
        if self.runner is None:
            object.__setattr__(self, "runner", RunnerConfig(chunk_size=512))
        if self.wachter_runner is None:
            object.__setattr__(self, "wachter_runner", RunnerConfig(chunk_size=64, slots=32))
        if self.cfproto_runner is None:
            object.__setattr__(self, "cfproto_runner", RunnerConfig(chunk_size=64, slots=32))
        for name in ("runner", "wachter_runner", "cfproto_runner"):
            if not isinstance(getattr(self, name), RunnerConfig):
                raise TypeError(f"ExplainConfig.{name} must be a RunnerConfig")
        _check_extra_generators(self)
        if isinstance(self.job, GeneratorJob):
            _check_job(self, self.job)

    def resolved_extra_jobs(self, job: GeneratorJob) -> tuple[tuple[str, GeneratorJob], ...]:
        """The ``extra_generators`` as ``(name, GeneratorJob)`` pairs (config files loaded),
        each checked against ``job`` (the resolved main job).

        Raises:
          ValueError: an extra job explains another data set or another classifier.
        """
        out = []
        for name, extra in self.extra_generators:
            if not isinstance(extra, GeneratorJob):
                extra = load_config(extra)
                if not isinstance(extra, GeneratorJob):
                    raise TypeError(
                        f"extra generator {name!r}: get_config() returned "
                        f"{type(extra).__name__}, not a job"
                    )
            if extra.dataset != job.dataset or extra.classifier != job.classifier:
                raise ValueError(
                    f"extra generator {name!r} must explain the job's classifier: same data set "
                    f"and classifier config (it has {extra.dataset!r}, "
                    f"{'the same' if extra.classifier == job.classifier else 'another'} "
                    "classifier config)"
                )
            _check_job(self, extra)
            out.append((name, extra))
        return tuple(out)

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
        # Imported here, not at the top: every step of the protocol takes this config, so the
        # protocol imports this module; only this convenience method reaches back up to it.
        from explain.amortised.protocol import run_protocol

        return run_protocol(self, workdir)


def _is_tabular_job(job: GeneratorJob) -> bool:
    return getattr(job.generator.generator, "kind", "") == "tabular_generator"


_NAME = re.compile(r"[a-z0-9_]+")


def _check_extra_generators(config: ExplainConfig) -> None:
    extra = config.extra_generators
    if isinstance(extra, str) or not all(
        isinstance(e, tuple | list) and len(e) == 2 for e in extra
    ):
        raise ValueError(f"ExplainConfig.extra_generators must be (name, job) pairs, got {extra!r}")
    extra = tuple((name, job) for name, job in extra)
    names = [name for name, _ in extra]
    bad = [n for n in names if not isinstance(n, str) or not _NAME.fullmatch(n)]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            "ExplainConfig.extra_generators names must be distinct and made of lowercase "
            f"letters, digits and '_', got {names!r}"
        )
    for name, job in extra:
        if not isinstance(job, GeneratorJob | str | Path):
            raise TypeError(
                f"extra generator {name!r} must be a GeneratorJob or a config file path, got "
                f"{type(job).__name__}"
            )
    object.__setattr__(config, "extra_generators", extra)


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
