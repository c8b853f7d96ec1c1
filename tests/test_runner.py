"""Runner: chunking, sharding over (fake) devices, padding, atomic and resumable output."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxcf import runner
from jaxcf.methods import DeDUCEConfig, deduce, deduce_search

JOB = str(Path(__file__).with_name("runner_job.py"))
N = 22  # not a multiple of any chunk size below: the last chunk is padded


def _job(checkpoint, out, chunk, slots, devices=1, pause=0.0, wait=True):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    args = [sys.executable, JOB, str(checkpoint), str(out), str(N), str(chunk), str(slots)]
    proc = subprocess.Popen(
        [*args, str(pause)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if not wait:
        return proc
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert f"devices={devices} done" in stdout
    return runner.load_results(out)


def _assert_same(a, b):
    """Identical counterfactuals and decisions; probabilities to float rounding (a different
    batch size may sum a convolution in another order)."""
    assert set(a) == set(b)
    for key in a:
        if key == "target_prob":
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_sharded_equals_unsharded_and_chunking_is_invisible(trained_dir, tmp_path):
    checkpoint = trained_dir / "checkpoint"
    # 4 fake CPU devices, refillable slots, chunks of 8 (2 queries per device)...
    sharded = _job(checkpoint, tmp_path / "four", chunk=8, slots=1, devices=4)
    # ...against one device, one big chunk, plain while-loop.
    single = _job(checkpoint, tmp_path / "one", chunk=32, slots=0, devices=1)
    _assert_same(sharded, single)
    assert 0 < single["success"].sum() < N  # a real mix of outcomes


def test_runner_matches_public_function(trained, mnist_test, tmp_path):
    model, density, _ = trained
    config = DeDUCEConfig(max_iter=100)
    x = mnist_test.images[:N]
    target = ((mnist_test.labels[:N] + 1 + np.arange(N) % 9) % 10).astype(np.int32)
    direct = deduce(model, density, x, target, config)
    search = deduce_search(model, density, config)
    run_again = functools.partial(
        runner.run,
        search,
        x,
        target,
        tmp_path,
        config=runner.RunnerConfig(chunk_size=6, slots=4),
        progress=False,
    )
    out = run_again()
    np.testing.assert_array_equal(out["counterfactuals"], np.asarray(direct.x_cf))
    np.testing.assert_array_equal(out["iterations"], np.asarray(direct.n_iter))
    np.testing.assert_array_equal(out["queries"], x)
    np.testing.assert_array_equal(out["targets"], target)
    assert not list(Path(tmp_path).rglob("*.tmp")), "no temporary files left behind"
    # Same arguments again: everything is on disk, nothing is recomputed.
    _assert_same(out, run_again())
    # Different arguments into the same directory are refused, not mixed.
    with pytest.raises(ValueError, match="different arguments"):
        runner.run(search, x, (target + 1) % 10, tmp_path, progress=False)


def test_resume_after_kill(trained_dir, tmp_path):
    checkpoint = trained_dir / "checkpoint"
    reference = _job(checkpoint, tmp_path / "whole", chunk=4, slots=2)

    out = tmp_path / "killed"
    proc = _job(checkpoint, out, chunk=4, slots=2, pause=30.0, wait=False)
    deadline = time.time() + 300
    while not (out / "chunks" / "chunk_00001.npz").exists():  # pauses 30 s after each chunk
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / runner.RESULT_FILE).exists()
    done = sorted(p.name for p in (out / "chunks").glob("chunk_*.npz"))
    assert done == ["chunk_00000.npz", "chunk_00001.npz"]

    resumed = _job(checkpoint, out, chunk=4, slots=2)
    _assert_same(resumed, reference)
    manifest = (out / runner.MANIFEST_FILE).read_text()
    assert '"0"' in manifest and '"5"' in manifest


def test_bad_arguments(trained, tmp_path):
    model, density, _ = trained
    search = deduce_search(model, density, DeDUCEConfig(max_iter=3))
    x = np.zeros((3, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="empty"):
        runner.run(search, x[:0], np.zeros(0, np.int32), tmp_path, progress=False)
    with pytest.raises(ValueError, match="queries"):
        runner.run(search, x, np.zeros(2, np.int32), tmp_path, progress=False)
