"""One chunk through an iterative search (:class:`ChunkRun`). Searches
(:class:`~jaxcf.methods.SearchExplainer`) run through refillable slots (:mod:`jaxcf.methods`),
which stop spending compute on finished queries; the slot pool advances in host-visible steps
of a few seconds (its state stays on the device, donated from call to call, and the processes
keep the steps in step), so the progress bar moves *within* a chunk. A
:class:`~jaxcf.core.Retry` around a search runs each attempt through the slots too, on the rows
still unsolved, with the keys and results ``Retry`` itself would give.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxcf.core import CFResult, Retry, compiler_options_for, tree_where
from jaxcf.methods import SearchExplainer, stage_sizes
from jaxcf.runner import distributed
from jaxcf.runner._config import RunnerConfig
from jaxcf.runner._programs import pool_programs, solve_program
from jaxcf.runner._progress import Progress, Silent
from jaxcf.runner._share import Share, replicated_value


def _run_pool(search, mesh, config, inputs, n_valid: int, progress, attempt: int | None):
    """One chunk through per-device slot pools, advanced a few seconds at a time. Returns the
    pools' results, ``[devices, rows per device, ...]`` per leaf."""
    per_device = inputs[1].shape[0] // mesh.size
    sizes = stage_sizes(config.slots, per_device, config.taper)
    options = tuple(sorted(compiler_options_for(search).items()))
    programs = pool_programs(mesh, sizes, config.segment, attempt, options)
    start, advances, compacts = (
        programs[0],
        programs[1 : 1 + len(sizes)],
        programs[1 + len(sizes) :],
    )
    pool = start(search, *inputs)
    segments = 1  # grows to about progress_seconds worth once a call has been timed
    for k in range(len(sizes)):
        if k:
            pool, status = compacts[k](pool)
            if not replicated_value(status)[2]:
                continue
        while True:
            t0 = time.perf_counter()
            pool, status = advances[k](search, pool, jnp.asarray(segments, jnp.int32))
            done, solved, running = replicated_value(status)
            per_segment = (time.perf_counter() - t0) / segments
            # Every process must pass the same count: process 0's timing decides.
            segments = distributed.broadcast(
                int(np.clip(config.progress_seconds / max(per_segment, 1e-6), 1, 1 << 20))
            )
            progress.show(min(int(done), n_valid), int(solved))
            if not running:
                break
    return pool.out


def searches_of(explainer: Any) -> list[Any] | None:
    """The searches the runner drives through its own loops, one per attempt: the search of a
    :class:`~jaxcf.methods.SearchExplainer`, or of each attempt of a
    :class:`~jaxcf.core.Retry` around one; None for any other explainer (run as a whole)."""
    if isinstance(explainer, SearchExplainer):
        return [explainer.search]
    if isinstance(explainer, Retry) and isinstance(explainer.explainer, SearchExplainer):
        return [explainer.attempt(i).search for i in range(len(explainer.schedule))]
    return None


@dataclasses.dataclass
class ChunkRun:
    """One chunk through a search (:func:`searches_of`), results on the host (this process's
    rows, padding included)."""

    mesh: Mesh
    config: RunnerConfig
    share: Share
    inputs: tuple  # (run key, x, target, query, cf, valid): global arrays
    valid: np.ndarray  # [rows of this process] bool: not padding
    n_valid: int  # rows of the chunk that are not padding (all processes)

    def search(self, searches: list[Any], explainer: Any, bar: Progress) -> CFResult:
        """A search's rows; for a :class:`~jaxcf.core.Retry`, each further attempt runs
        through the same loops on the rows every earlier attempt failed (the slots stay full of
        live queries) and the results merge as ``Retry.__call__`` merges them: same keys, same
        counterfactuals, same ``extras``."""
        if len(searches) == 1 and not isinstance(explainer, Retry):
            return self.run_attempt(searches[0], self.inputs, None, bar, self.n_valid)
        result = self.run_attempt(searches[0], self.inputs, 0, bar, self.n_valid)
        attempt = np.zeros(len(self.valid), np.int32)
        for i in range(1, len(searches)):
            todo = self.valid & ~result.success
            if not distributed.gather(np.asarray(todo.any())).any():
                break  # as Retry skips an attempt no row needs
            value = explainer.schedule[i]
            bar.note(f"retrying {explainer.field}={value:g}")
            inputs = (*self.inputs[:-1], self.share.put(todo))
            new = self.run_attempt(searches[i], inputs, i, Silent(), int(todo.sum()))
            result = tree_where(todo, new, result, xp=np)
            attempt[todo] = i
        values = np.asarray(explainer.schedule, np.float32)[attempt]
        extras = {**result.extras, "attempt": attempt, explainer.field: values}
        return result._replace(extras=extras)

    def run_attempt(self, search, inputs, attempt: int | None, progress, n_valid: int) -> CFResult:
        """One pass of ``search`` over the rows ``inputs`` marks valid (``attempt``: the key fold,
        None outside a Retry)."""
        if self.config.slots is None:
            options = tuple(sorted(compiler_options_for(search).items()))
            result = solve_program(self.mesh, attempt, options)(search, *inputs)
            return self.share.fetch(jax.block_until_ready(result), False)
        result = _run_pool(search, self.mesh, self.config, inputs, n_valid, progress, attempt)
        return self.share.fetch(jax.block_until_ready(result), True)
