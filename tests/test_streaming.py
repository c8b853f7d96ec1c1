"""Data larger than memory: a run over 2 million on-disk queries (130 MiB, record 300 MiB)
keeps the growth of its peak resident memory under :data:`BOUND`, is killed half-way (SIGKILL,
in its own process), resumes without re-reading the data set and ends with the record of an
uninterrupted run. The job is ``benchmarks/streaming.py``, which also records a larger run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxcf import runner
from jaxcf.core import ARRAY_FIELDS, RESULT_FILE

ROOT = Path(__file__).resolve().parents[1]
ROWS, CHUNK, KILL_AFTER = 2_000_000, 65536, 9  # 31 chunks
BOUND = 48 << 20  # bytes of peak-RSS growth allowed: about a third of the queries alone


def _job(workdir: Path, kill_after: int | None = None) -> tuple[int, dict | None, str]:
    args = [f"--config.rows={ROWS}", f"--config.chunk={CHUNK}", f"--config.workdir={workdir}"]
    args.append("--config.json=True")
    if kill_after is not None:
        args += [f"--config.kill_after={kill_after}"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.streaming", *args],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else None), proc.stderr


def test_streamed_run_has_bounded_memory_and_resumes(tmp_path):
    code, _, stderr = _job(tmp_path / "killed", kill_after=KILL_AFTER)
    assert code == -9, stderr[-3000:]
    chunks = sorted(p.name for p in (tmp_path / "killed" / "run" / "chunks").iterdir())
    assert chunks == [f"chunk_{c:05d}.npz" for c in range(KILL_AFTER + 1)]
    assert not (tmp_path / "killed" / "run" / RESULT_FILE).exists()

    code, resumed, stderr = _job(tmp_path / "killed")
    assert code == 0, stderr[-3000:]
    n_chunks = -(-ROWS // CHUNK)
    assert resumed["chunks_computed"] == list(range(KILL_AFTER + 1, n_chunks))
    remaining = ROWS - (KILL_AFTER + 1) * CHUNK
    # The remaining chunks, chunk 0 again for the up-front check, the fingerprint's sample.
    assert resumed["rows_read"] <= remaining + CHUNK + 2 * runner.SAMPLE_ROWS
    assert resumed["data_bytes"] > 2.5 * BOUND
    assert resumed["peak_rss_growth_bytes"] < BOUND, resumed

    code, whole, stderr = _job(tmp_path / "whole")
    assert code == 0, stderr[-3000:]
    assert whole["peak_rss_growth_bytes"] < BOUND, whole
    a = runner.load_results(tmp_path / "killed" / "run", mmap=True)
    b = runner.load_results(tmp_path / "whole" / "run", mmap=True)
    assert len(a) == ROWS and 0.5 < a.success[:CHUNK].mean() < 1.0
    for f in ARRAY_FIELDS:
        for lo in range(0, ROWS, 1 << 19):  # compared a block at a time
            hi = lo + (1 << 19)
            np.testing.assert_array_equal(getattr(a, f)[lo:hi], getattr(b, f)[lo:hi], err_msg=f)


def test_changed_queries_are_refused_on_resume(tmp_path):
    """A query directory that grew, or whose rows changed shape, between a run's start and its
    resume is refused with a clear error, and nothing more is written."""
    from benchmarks.streaming import classifier
    from jaxcf.methods import FGSMConfig, make

    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 16), np.float32), rng.integers(0, 3, 40, dtype=np.int32)
    queries = runner.save_queries(tmp_path / "queries", x, t)
    explainer = make("fgsm", FGSMConfig(eps=0.5), classifier=classifier())
    config = runner.RunnerConfig(chunk_size=8)

    def stop(c, info):
        if c == 1:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        runner.run_source(explainer, queries, out, config=config, progress=False, on_chunk=stop)
    before = sorted(p.name for p in (out / "chunks").iterdir())
    for changed in ((np.concatenate([x, x[:4]]), np.concatenate([t, t[:4]])), (x[:, :8], t)):
        runner.save_queries(queries, *changed)
        with pytest.raises(ValueError, match="its queries changed since it started"):
            runner.run_source(explainer, queries, out, config=config, progress=False)
        assert sorted(p.name for p in (out / "chunks").iterdir()) == before
        assert not (out / RESULT_FILE).exists()
