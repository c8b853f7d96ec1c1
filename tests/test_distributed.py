"""One run over two processes (2 CPU devices each, gloo collectives) equals the same run in one
process over 4 devices, bitwise; survives a kill of either process; refuses processes started
with different arguments and a resume with another process count."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxcf import runner
from jaxcf.core import ARRAY_FIELDS, RESULT_FILE
from jaxcf.runner import distributed
from tests import distributed_job
from tests.conftest import mesh

JOB = str(Path(__file__).with_name("distributed_job.py"))
N = 14  # queries: 4 chunks of 4 rows, the last one padded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(checkpoint, queries, out, seeds=(0, 0), pause=0.0):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return [
        subprocess.Popen(
            [sys.executable, JOB, str(p), "2", str(port), str(checkpoint), str(queries), str(out)]
            + [str(seeds[p]), str(pause)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]


def _finish(procs, ok=True):
    outputs = [p.communicate(timeout=600) for p in procs]
    if ok:
        for p, (stdout, stderr) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, stderr[-3000:]
            assert "done" in stdout
    return outputs


def _assert_same(a, b):
    for f in ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.extras.keys() == b.extras.keys()
    for k in a.extras:
        np.testing.assert_array_equal(a.extras[k], b.extras[k], err_msg=k)


@pytest.fixture(scope="module")
def job(trained_dir, mnist_test, tmp_path_factory):
    """``(checkpoint, queries directory, reference {name: Results})``: the reference is the job
    run here, in one process over 4 devices."""
    x = np.asarray(mnist_test.images[:N])
    target = ((mnist_test.labels[:N] + 1 + np.arange(N) % 9) % 10).astype(np.int32)
    queries = runner.save_queries(tmp_path_factory.mktemp("queries"), x, target)
    out = tmp_path_factory.mktemp("reference")
    assert runner.data_mesh().size == 4
    reference = distributed_job.explain(trained_dir / "checkpoint", queries, out)
    return trained_dir / "checkpoint", queries, reference


def test_two_processes_equal_one(job, tmp_path):
    checkpoint, queries, reference = job
    _finish(_launch(checkpoint, queries, tmp_path))
    for name, ref in reference.items():
        got = runner.load_results(tmp_path / name)
        _assert_same(got, ref)
        assert got.timings["processes"] == 2 and got.timings["devices"] == 4
        parts = sorted(p.name for p in (tmp_path / name / "chunks").iterdir())
        assert parts == [f"chunk_{c:05d}_p{p}.npz" for c in range(4) for p in range(2)]
    deduce = reference["deduce"]
    assert deduce.success.any() and not deduce.success.all()
    assert np.any(deduce.extras["attempt"][deduce.success] == 1)  # the retry solved some


def test_resume_after_a_kill(job, tmp_path):
    """Process 0, the coordinator, is killed after two chunks, then process 1 (as a scheduler
    tears the job down); the restarted job finishes with the uninterrupted results. (Which
    process dies first does not matter to the resume: each writes only its own chunk files.)"""
    checkpoint, queries, reference = job
    chunks = tmp_path / "deduce" / "chunks"
    procs = _launch(checkpoint, queries, tmp_path, pause=30.0)
    deadline = time.time() + 300
    while not all((chunks / f"chunk_{1:05d}_p{p}.npz").exists() for p in range(2)):
        assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    for victim in (0, 1):
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
    _finish(procs, ok=False)
    assert not (tmp_path / "deduce" / RESULT_FILE).exists()
    _finish(_launch(checkpoint, queries, tmp_path))
    for name, ref in reference.items():
        _assert_same(runner.load_results(tmp_path / name), ref)


def test_processes_with_different_arguments_are_refused(job, tmp_path):
    checkpoint, queries, _ = job
    outputs = _finish(_launch(checkpoint, queries, tmp_path, seeds=(0, 1)), ok=False)
    for _, stderr in outputs:
        assert "processes [1] were started with other arguments" in stderr
    assert not (tmp_path / "deduce" / runner.MANIFEST_FILE).exists()


def test_resume_with_another_process_count_is_refused(job, tmp_path):
    checkpoint, queries, _ = job
    explainer = distributed_job.explainers(checkpoint)["fgsm"]
    config = runner.RunnerConfig(chunk_size=4)
    runner.run_source(explainer, queries, tmp_path, config=config, progress=False, mesh=mesh(4))
    manifest = json.loads((tmp_path / runner.MANIFEST_FILE).read_text())
    (tmp_path / runner.MANIFEST_FILE).write_text(json.dumps({**manifest, "processes": 2}))
    with pytest.raises(ValueError, match="started with 2 processes"):
        runner.run_source(explainer, queries, tmp_path, config=config, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_processes": 0, "process_id": 0}, "num_processes must be a positive int"),
        ({"num_processes": 2, "process_id": 2}, "outside 0 .. 1"),
        ({"num_processes": 2, "process_id": -1}, "outside 0 .. 1"),
        ({"num_processes": 2, "process_id": 1.0}, "process_id must be an int"),
    ],
)
def test_initialize_refuses_impossible_ids(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distributed.initialize("localhost:1", **kwargs)
