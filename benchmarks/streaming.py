"""Data larger than memory: a run over millions of on-disk queries with bounded host memory.

Writes ``--config.rows`` synthetic tabular queries (16 float32 features, 3 classes, targets drawn at
random) to ``WORKDIR/queries`` a block at a time, then explains them all with one-step FGSM on a
fixed linear classifier, streaming the queries from disk chunk by chunk
(:func:`jaxcf.runner.run_source`). It measures the growth of the process's peak resident memory
(``ru_maxrss``) over the run — after a warm-up run on a few chunks has compiled the programs and
allocated chunk-sized buffers — and the rows read from the source.

    jaxcf bench streaming --config.rows=16000000 --config.record=True   # the recorded large run
    python -m benchmarks.streaming --config.rows=1000000 --config.kill_after=3 \
        --config.json=True   # as the tests run it

``--config.kill_after=K`` kills the process (SIGKILL) once chunk ``K`` is on disk, to test
resuming; ``--config.json=True`` prints the measurements as one JSON line. See :class:`Config`
for the settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import cpus, device_name
from jaxcf import runner
from jaxcf.core import (
    RESULT_FILE,
    FunctionClassifier,
    validation,
    write_json_atomic,
    write_text_atomic,
)
from jaxcf.methods import FGSMConfig, make

FEATURES, CLASSES, BLOCK = 16, 3, 1 << 20
RESULTS = Path(__file__).parent / "results"


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench streaming``.

    Attributes:
      rows: synthetic queries written to disk and explained.
      chunk: rows per chunk of the runner.
      workdir: folder of the queries (``queries/``), the warm-up run and the run (``run/``).
      kill_after: kill the process (SIGKILL) once this chunk is on disk (None: run to the end).
      json: print the measurements as JSON (one line).
      record: write the measurements to benchmarks/results/ (JSON and markdown).
    """

    rows: int = 16_000_000
    chunk: int = 1 << 18
    workdir: str = "workdir/streaming"
    kill_after: int | None = None
    json: bool = False
    record: bool = False

    def __post_init__(self):
        validation.at_least(self, 1, "rows", "chunk")
        if self.kill_after is not None:
            validation.at_least(self, 0, "kill_after")


def _linear(params, x):
    return x @ params["w"] + params["b"][None, :]


def classifier() -> FunctionClassifier:
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w": jax.random.normal(k1, (FEATURES, CLASSES)),
        "b": 0.1 * jax.random.normal(k2, (CLASSES,)),
    }
    return FunctionClassifier(_linear, params)


def write_queries(directory: Path, rows: int) -> Path:
    """``rows`` synthetic queries, written a block at a time (deterministic)."""
    if (directory / "x.npy").exists() and len(runner.NpySource(directory)) == rows:
        return directory
    with runner.QueryWriter(directory, rows, x_shape=(FEATURES,)) as w:
        for start in range(0, rows, BLOCK):
            rng = np.random.default_rng(start)
            n = min(BLOCK, rows - start)
            w.append(
                rng.standard_normal((n, FEATURES), np.float32),
                rng.integers(0, CLASSES, n, dtype=np.int32),
            )
    return directory


class CountingSource(runner.NpySource):
    """An :class:`~jaxcf.runner.NpySource` that counts the rows read from it."""

    rows_read = 0

    def read(self, start, stop):
        CountingSource.rows_read += stop - start
        return super().read(start, stop)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(workdir: Path, rows: int, chunk: int, kill_after: int | None = None) -> dict:
    queries = write_queries(workdir / "queries", rows)
    explainer = make("fgsm", FGSMConfig(eps=0.5), classifier=classifier())
    config = runner.RunnerConfig(chunk_size=chunk)
    warm = workdir / "warm"
    shutil.rmtree(warm, ignore_errors=True)
    small = runner.ArraySource(*_first_rows(queries, 3 * chunk))
    runner.run_source(explainer, small, warm, config=config, progress=False)
    before = peak_rss_bytes()

    computed = []

    def on_chunk(c, info):
        computed.append(c)
        if kill_after is not None and c >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    source = CountingSource(queries)
    t0 = time.perf_counter()
    results = runner.run_source(
        explainer, source, workdir / "run", config=config, progress=False, on_chunk=on_chunk
    )
    seconds = time.perf_counter() - t0
    return {
        "rows": rows,
        "chunk_size": chunk,
        "data_bytes": os.path.getsize(queries / "x.npy") + os.path.getsize(queries / "target.npy"),
        "record_bytes": os.path.getsize(workdir / "run" / RESULT_FILE),
        "peak_rss_before_bytes": before,
        "peak_rss_growth_bytes": peak_rss_bytes() - before,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "chunks_computed": computed,
        "rows_read": CountingSource.rows_read,
        "success_rate": float(np.mean(results.success[: min(rows, 1 << 20)])),
        "device": device_name(),
        "cpus": cpus(),
    }


def _first_rows(directory: Path, n: int):
    block = runner.NpySource(directory).read(0, n)
    return block["x"], block["target"]


def write_record(m: dict) -> None:
    stem = RESULTS / f"streaming_{'cpu' if jax.default_backend() == 'cpu' else 'gpu'}"
    write_json_atomic(stem.with_suffix(".json"), m)
    mib = 1 << 20
    lines = [
        "# Data larger than memory (runner streaming from disk)",
        "",
        f"Device: {m['device']} ({m['cpus']} CPUs). One-step FGSM on a linear classifier over "
        f"{m['rows']:,} on-disk queries (16 float32 features), chunks of {m['chunk_size']:,} rows. "
        "Peak-memory growth is `ru_maxrss` after the run minus before it (after a warm-up run "
        "that compiled the programs).",
        "",
        "| rows | queries on disk | record written | peak RSS growth | time | rows/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {m['rows']:,} | {m['data_bytes'] / mib:,.0f} MiB | {m['record_bytes'] / mib:,.0f} MiB "
        f"| {m['peak_rss_growth_bytes'] / mib:,.1f} MiB | {m['seconds']:.1f} s "
        f"| {m['rows_per_second']:,.0f} |",
        "",
        f"Rows read from the source: {m['rows_read']:,} (every row once, plus the first chunk "
        "again for the up-front input check and a sample for the fingerprint).",
        "",
    ]
    write_text_atomic(stem.with_suffix(".md"), "\n".join(lines))


def run(config: Config) -> dict:
    """Measures the streamed run (bytes, seconds, rows per second), prints the measurements
    and returns them; with ``config.record``, writes them to ``benchmarks/results/``."""
    m = measure(Path(config.workdir), config.rows, config.chunk, config.kill_after)
    if config.json:
        print(json.dumps(m), flush=True)
    else:
        print(json.dumps(m, indent=2))
    if config.record:
        write_record(m)
    return m


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


if __name__ == "__main__":
    main()
