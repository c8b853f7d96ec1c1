"""Runner: sharding over fake devices, chunking and padding, progress within a chunk, atomic and
resumable output, refused arguments. (Every method through the runner, sharded and chunked, is
in :mod:`tests.test_contract`; here are the runner's own settings and its files.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxcf import runner
from jaxcf.core import ARRAY_FIELDS, RESULT_FILE, Results
from jaxcf.methods import (
    DeDUCEConfig,
    FGSMConfig,
    JSMAConfig,
    SearchExplainer,
    deduce,
    deduce_search,
    make,
)
from jaxcf.runner import _progress
from tests import runner_job
from tests.conftest import FAKE_DEVICES, mesh

JOB = str(Path(__file__).with_name("runner_job.py"))
N = 22  # not a multiple of any chunk size below: the last chunk is padded


def _assert_same(a: Results, b: Results):
    """Identical counterfactuals and decisions; scores to float rounding (a different batch
    size may sum a convolution in another order)."""
    for f in ARRAY_FIELDS:
        if f == "score":
            np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert set(a.extras) == set(b.extras)
    for k in a.extras:
        np.testing.assert_array_equal(a.extras[k], b.extras[k], err_msg=k)


def test_sharded_equals_unsharded_and_chunking_is_invisible(trained_dir, tmp_path):
    """4 fake devices, each running its share of a padded chunk as one batch (chunk 6, rounded
    up to 8 rows), against one device, one chunk, refillable slots; groups follow their rows."""
    explainer, x, target = runner_job.job(trained_dir / "checkpoint", N)
    group = np.arange(N) % 3
    sharded = runner.run(
        explainer,
        x,
        target,
        tmp_path / "four",
        config=runner.RunnerConfig(chunk_size=6, slots=None),
        mesh=mesh(4),
        group=group,
        progress=False,
    )
    single = runner.run(
        explainer,
        x,
        target,
        tmp_path / "one",
        config=runner.RunnerConfig(chunk_size=32, slots=4, segment=3),
        mesh=mesh(1),
        group=group,
        progress=False,
    )
    _assert_same(sharded, single)
    assert 0 < single.success.sum() < N  # a real mix of outcomes
    np.testing.assert_array_equal(single.group, group)
    assert sharded.timings["devices"] == FAKE_DEVICES and single.timings["devices"] == 1
    assert len(sharded.timings["chunk_seconds"]) == 3  # 22 rows in chunks of 8
    assert sharded.meta["chunk"] == 8 and single.meta["chunk"] == 22  # fewer rows than 32


def test_runner_matches_public_function(trained, mnist_test, tmp_path):
    model, density, _ = trained
    config = DeDUCEConfig(max_iter=100)
    x = np.asarray(mnist_test.images[:N])
    target = ((mnist_test.labels[:N] + 1 + np.arange(N) % 9) % 10).astype(np.int32)
    direct = deduce(model, density, x, target, config)
    explainer = SearchExplainer(deduce_search(model, density, config))
    chunks = []

    def run_again(**changes):
        kwargs = {"config": runner.RunnerConfig(chunk_size=6, slots=4), "seed": 0, **changes}
        return runner.run(
            explainer,
            kwargs.pop("x", x),
            kwargs.pop("target", target),
            tmp_path,
            progress=False,
            on_chunk=lambda c, info: chunks.append(c),
            **kwargs,
        )

    out = run_again()  # default mesh: the 4 fake devices
    np.testing.assert_array_equal(out.x_cf, np.asarray(direct.x_cf))
    np.testing.assert_array_equal(out.n_iter, np.asarray(direct.n_iter))
    np.testing.assert_array_equal(out.success, np.asarray(direct.success))
    np.testing.assert_allclose(out.score, np.asarray(direct.score), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(
        out.extras["pixel_changes"], np.asarray(direct.extras["pixel_changes"])
    )
    np.testing.assert_array_equal(out.x, x)
    np.testing.assert_array_equal(out.target, target)
    np.testing.assert_array_equal(out.query, np.arange(N))
    assert out.meta["explainer"] == "SearchExplainer" and out.meta["num_cfs"] == 1
    assert out.timings["devices"] == FAKE_DEVICES
    assert chunks == [0, 1, 2]  # 22 rows in chunks of 8 (6 rounded up to the 4 devices)
    assert not list(Path(tmp_path).rglob("*.tmp")), "no temporary files left behind"
    _assert_same(out, runner.load_results(tmp_path))
    # Same arguments again: everything is on disk, nothing is recomputed or compiled.
    compiled = runner.program_cache_size()
    _assert_same(out, run_again())
    assert chunks == [0, 1, 2] and runner.program_cache_size() == compiled
    # Different arguments into the same directory are refused, not mixed.
    for changes in (
        {"target": (target + 1) % 10},
        {"x": np.clip(x + 0.01, 0.0, 1.0)},
        {"seed": 1},
        {"num_cfs": 2},
        {"config": runner.RunnerConfig(chunk_size=12, slots=4)},
    ):
        with pytest.raises(ValueError, match="different arguments"):
            run_again(**changes)
    other = SearchExplainer(deduce_search(model, density, DeDUCEConfig(max_iter=99)))
    with pytest.raises(ValueError, match="different arguments"):
        runner.run(other, x, target, tmp_path, config=runner.RunnerConfig(6, 4), progress=False)
    assert chunks == [0, 1, 2]
    _assert_same(out, runner.load_results(tmp_path))  # the refused runs wrote nothing


def test_progress_moves_within_a_chunk(trained, queries, tmp_path, monkeypatch):
    """With a short progress interval the bar advances several times inside one chunk, with
    growing counts; the interval changes no result."""
    model, _, _ = trained
    x, t = queries
    explainer = make("jsma", JSMAConfig(max_iter=60), classifier=model)
    events = []
    show, chunk_done = _progress.Progress.show, _progress.Progress.chunk_done

    def recording_show(self, done, solved):
        show(self, done, solved)
        events.append((done, solved, self.bar.n))

    def recording_chunk_done(self, rows, solved):
        events.append("chunk")
        chunk_done(self, rows, solved)

    monkeypatch.setattr(_progress.Progress, "show", recording_show)
    monkeypatch.setattr(_progress.Progress, "chunk_done", recording_chunk_done)

    def run(name, seconds):
        events.clear()
        config = runner.RunnerConfig(chunk_size=64, slots=2, segment=1, progress_seconds=seconds)
        out = runner.run(explainer, x, t, tmp_path / name, config=config, mesh=mesh(1))
        assert events.count("chunk") == 1  # one chunk holds every query
        return out, events[: events.index("chunk")]

    often, inside = run("often", 1e-6)
    done = [e[0] for e in inside]
    assert len(set(done)) >= 4, f"the bar moved only to {done} within the chunk"
    assert done == sorted(done) and done[-1] == len(x)
    assert all(0 <= s <= d for d, s, _ in inside)
    assert [e[2] for e in inside] == done  # the bar shows the rows finished so far
    assert inside[-1][1] == often.success.sum()
    rarely, inside_rarely = run("rarely", 1e6)
    assert len(inside_rarely) < len(inside)
    _assert_same(often, rarely)
    assert 0 < often.success.sum() < len(x)


def _job(checkpoint, out, chunk, slots, pause=0.0, wait=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = [sys.executable, JOB, str(checkpoint), str(out), str(N), str(chunk), str(slots)]
    proc = subprocess.Popen(
        [*args, str(pause)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if not wait:
        return proc
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "done" in stdout
    return runner.load_results(out)


def test_resume_after_kill(trained_dir, tmp_path):
    """A run killed between chunks (in its own process) and restarted resumes from the chunks
    on disk and ends with the results of an uninterrupted run (here, in this process)."""
    checkpoint = trained_dir / "checkpoint"
    explainer, x, target = runner_job.job(checkpoint, N)
    reference = runner.run(
        explainer,
        x,
        target,
        tmp_path / "whole",
        config=runner_job.config(4, 2),
        mesh=mesh(1),
        progress=False,
    )

    out = tmp_path / "killed"
    proc = _job(checkpoint, out, chunk=4, slots=2, pause=30.0, wait=False)
    deadline = time.time() + 300
    # The job pauses 30 s after chunk 1 (and each later one): the kill lands between chunks.
    while not (out / "chunks" / "chunk_00001.npz").exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / RESULT_FILE).exists()
    done = sorted(p.name for p in (out / "chunks").glob("chunk_*.npz"))
    assert done == ["chunk_00000.npz", "chunk_00001.npz"]

    resumed = _job(checkpoint, out, chunk=4, slots=2)
    _assert_same(resumed, reference)
    done = sorted(p.name for p in (out / "chunks").glob("chunk_*.npz"))
    assert done == [f"chunk_{c:05d}.npz" for c in range(6)]
    assert json.loads((out / runner.MANIFEST_FILE).read_text())["processes"] == 1


def test_resume_recomputes_only_missing_chunks(trained, queries, tmp_path):
    """Chunk files are the only record of progress: a run restarted with one chunk file gone
    (and no record) recomputes that chunk alone and ends with the uninterrupted results."""
    model, _, _ = trained
    x, t = queries
    explainer = make("fgsm", FGSMConfig(eps=0.1), classifier=model)
    config = runner.RunnerConfig(chunk_size=4)

    def run(path, **kwargs):
        return runner.run(
            explainer, x, t, path, config=config, mesh=mesh(1), progress=False, **kwargs
        )

    reference = run(tmp_path / "whole")
    out = tmp_path / "killed"
    run(out)
    (out / "chunks" / "chunk_00002.npz").unlink()
    (out / RESULT_FILE).unlink()
    computed = []
    resumed = run(out, on_chunk=lambda c, info: computed.append(c))
    assert computed == [2]
    _assert_same(resumed, reference)


def test_bad_arguments(trained, tmp_path):
    model, density, _ = trained
    search = deduce_search(model, density, DeDUCEConfig(max_iter=3))
    explainer = SearchExplainer(search)
    x = np.zeros((3, 28, 28, 1), np.float32)
    t = np.zeros(3, np.int32)
    cases = [
        ("search", (search, x, t), {}, TypeError, "not an explainer"),
        ("empty", (explainer, x[:0], t[:0]), {}, ValueError, "empty"),
        ("length", (explainer, x, t[:2]), {}, ValueError, "one entry per query"),
        ("num_cfs", (explainer, x, t), {"num_cfs": 0}, ValueError, "num_cfs"),
        ("group", (explainer, x, t), {"group": np.zeros(2, int)}, ValueError, "group"),
        ("group_float", (explainer, x, t), {"group": np.zeros(3)}, ValueError, "group"),
    ]
    for name, args, kwargs, err, match in cases:
        with pytest.raises(err, match=match):
            runner.run(*args, tmp_path / name, progress=False, **kwargs)
        assert not (tmp_path / name).exists(), name
