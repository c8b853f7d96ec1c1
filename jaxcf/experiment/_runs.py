"""Running an experiment's methods, each finished run reused by any experiment that asks for it.

A method's run lives in a *run store* (by default ``<workdir>/runs``; several experiments can
share one) under a folder named by the method's label and a key: the hash of everything that
determines its results (the explainer with its configuration and arrays, the queries, targets
and groups, the seed and the number of counterfactuals per query; not the chunking, which the
results do not depend on). Any experiment asking for the same explainer, queries and seed finds
the finished run and reads it instead of computing it again; an interrupted run resumes there
(with the chunk size it started with).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.core import RESULT_FILE, DamagedFileError, Results, to_jsonable
from jaxcf.methods import MethodSpec, make
from jaxcf.runner import ArraySource, QuerySource, RunnerConfig, fingerprint, run_source

RUNS_DIR = "runs"
"""The default run store: ``<workdir>/runs``."""


def _source(x: Any, target: Any, group: Any) -> QuerySource:
    """``x`` itself when it is a query source (``target`` and ``group`` then unused), else the
    arrays as one."""
    if isinstance(x, QuerySource) and not isinstance(x, np.ndarray):
        if target is not None or group is not None:
            raise ValueError("give a query source alone: its targets and groups are inside it")
        return x
    return ArraySource(x, target, group)


def run_key(
    explainer: Any, x: Any, target: Any = None, group: Any = None, *, num_cfs: int, seed: int
) -> str:
    """The key of a run: a hash of everything its results depend on (16 hex digits). ``x`` is
    the queries (with ``target`` and ``group``) or a query source holding all three."""
    source = _source(x, target, group)
    identity = {"num_cfs": num_cfs, "seed": seed, **source.identity()}
    return fingerprint(explainer, {}, identity)[:16]


def run_dir(store: str | Path, label: str, key: str) -> Path:
    """``<store>/<label>-<key>``."""
    return Path(store) / f"{label}-{key}"


def _config_dict(spec: MethodSpec) -> dict[str, Any]:
    config = spec.resolved_config()
    return to_jsonable(dataclasses.asdict(config)) if dataclasses.is_dataclass(config) else {}


def run_methods(
    specs: Sequence[MethodSpec],
    resources: Mapping[str, Any],
    x: Any,
    target: Any,
    workdir: str | Path,
    *,
    group: Any = None,
    config: RunnerConfig | None = None,
    num_cfs: int = 1,
    seed: int = 0,
    progress: bool = True,
    store: str | Path | None = None,
) -> dict[str, Results]:
    """Runs every method on the same pairs (or reads its finished run); returns label ->
    results.

    Args:
      specs: the methods (labels must be distinct).
      resources: what the methods need, by key (``"classifier"``, ``"density"``, ...).
      x, target: ``[N, ...]`` queries and their targets, or a query source
        (:class:`~jaxcf.runner.QuerySource`, read a chunk at a time) and ``None``.
      workdir: the experiment's workdir; runs go to ``store`` (default ``<workdir>/runs``).
      group: optional ``[N]`` group id per query (a protocol's sets).
      config, num_cfs, seed: passed to :func:`jaxcf.runner.run`.
      progress: progress bars.
      store: the run store, shared between experiments to reuse each other's runs.

    Returns:
      ``{label: results}``, in the order of ``specs``.
    """
    labels = [s.key for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"method labels must be distinct, got {labels}")
    out = {}
    for spec in specs:
        out[spec.key] = run_explainer(
            spec.key,
            make(spec, **resources),
            x,
            target,
            workdir,
            group=group,
            config=config,
            num_cfs=num_cfs,
            seed=seed,
            progress=progress,
            store=store,
            meta={"method": spec.name, "config": _config_dict(spec), "precision": spec.precision},
        )
    return out


def run_explainer(
    label: str,
    explainer: Any,
    x: Any,
    target: Any,
    workdir: str | Path,
    *,
    group: Any = None,
    config: RunnerConfig | None = None,
    num_cfs: int = 1,
    seed: int = 0,
    progress: bool = True,
    store: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Results:
    """Runs one explainer through :func:`jaxcf.runner.run` into the run store, or reads its
    finished run there (see the module docstring); ``label`` names the run's folder and its
    progress bar, ``meta`` is stored in the record."""
    store = Path(store) if store is not None else Path(workdir) / RUNS_DIR
    source = _source(x, target, group)
    key = run_key(explainer, source, num_cfs=num_cfs, seed=seed)
    where = run_dir(store, label, key)
    if (where / RESULT_FILE).is_file():
        try:
            done = Results.load(where, mmap=True)
        except DamagedFileError as exc:  # the runner rebuilds the record from its chunks
            warnings.warn(f"{exc}; running {label} again where it is missing", stacklevel=2)
        else:
            if progress:
                print(f"{label}: reusing the finished run in {where}", flush=True)
            return done
    return run_source(
        explainer,
        source,
        where,
        config=config or RunnerConfig(),
        num_cfs=num_cfs,
        seed=seed,
        desc=label,
        progress=progress,
        meta=meta,
    )


def steady_timing(results: Results) -> dict[str, Any]:
    """Seconds per counterfactual from the runner's chunk timings, leaving out the first chunk
    (which compiled) when there are several; with one chunk, its time includes compiling."""
    secs = [float(s) for s in results.timings.get("chunk_seconds", [])]
    rows = len(results)
    chunk = int(results.meta.get("chunk", rows))
    counts = [min(chunk, rows - c * chunk) for c in range(len(secs))]
    if len(secs) >= 2:
        per_cf = sum(secs[1:]) / sum(counts[1:])
        return {
            "seconds_per_cf": per_cf,
            "steady_state": True,
            "compile_seconds_estimate": max(0.0, secs[0] - per_cf * counts[0]),
            "chunks": len(secs),
            "total_seconds": sum(secs),
        }
    total = sum(secs) if secs else float("nan")
    return {
        "seconds_per_cf": total / max(rows, 1),
        "steady_state": False,
        "compile_seconds_estimate": None,
        "chunks": len(secs),
        "total_seconds": total,
    }
