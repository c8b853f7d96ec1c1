"""Damaged files on disk: chunk files and ``results.npz`` carry a SHA-256 of their content, so a
file truncated (a partial copy, a full disk) or garbled (a file system's hiccup) after it was
written is named, not loaded. A resumed run recomputes only the damaged chunk and ends with the
undamaged run's results, bitwise; a damaged record is rebuilt from the chunks; a record written
before checksums existed still loads.

Every test damages real files of a real run (a user-written one-pass explainer on a linear
classifier: cheap, but each row's counterfactual depends on its key)."""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxcf import runner
from jaxcf.core import (
    ARRAY_FIELDS,
    RESULT_FILE,
    CFResult,
    DamagedFileError,
    FunctionClassifier,
    Results,
    checks,
    npz_problem,
    targets,
)
from jaxcf.runner import _run as run_module
from tests.conftest import mesh

N, FEATURES, CLASSES, NUM_CFS = 20, 16, 3, 2
CONFIG = runner.RunnerConfig(chunk_size=8)  # 40 rows: 5 chunks of 8


def _linear(params, x):
    return x @ params["w"] + params["b"][None, :]


class NoisyStep(struct.PyTreeNode):
    """What a user writes: a random start around the query (from the row's own key), then one
    normalised gradient step towards the target."""

    classifier: Any
    sigma: float = struct.field(pytree_node=False, default=0.5)
    step: float = struct.field(pytree_node=False, default=1.0)

    def check(self, x, target):
        return checks.check_inputs(self.classifier, x, target, domain=None, kinds=targets.KINDS)

    def __call__(self, x, target, key):
        noise = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(key)
        start = x + self.sigma * noise

        def loss(z):
            return jnp.sum(targets.target_loss(self.classifier.logits(z), target))

        g = jax.grad(loss)(start)
        x_cf = start - self.step * g / (jnp.linalg.norm(g, axis=1, keepdims=True) + 1e-12)
        score, ok = targets.score_outputs(
            self.classifier.logits(x_cf), target, threshold=0.5, tolerance=0.2
        )
        return CFResult(x_cf, ok, jnp.ones(x.shape[0], jnp.int32), score, {"noise": noise})


@pytest.fixture(scope="module")
def problem():
    """``(explainer, x [N, FEATURES], target [N])``."""
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.standard_normal((FEATURES, CLASSES)), jnp.float32),
        "b": jnp.asarray(0.1 * rng.standard_normal(CLASSES), jnp.float32),
    }
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    target = rng.integers(0, CLASSES, N).astype(np.int32)
    return NoisyStep(FunctionClassifier(_linear, params)), x, target


def _run(problem, out: Path) -> tuple[Results, list[int], list[str]]:
    """The run into ``out``: its results, the chunks it computed and the warnings it gave."""
    explainer, x, target = problem
    computed = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = runner.run(
            explainer,
            x,
            target,
            out,
            config=CONFIG,
            num_cfs=NUM_CFS,
            mesh=mesh(1),
            progress=False,
            on_chunk=lambda c, info: computed.append(c),
        )
    return results, computed, [str(w.message) for w in caught]


def _arrays(results: Results) -> dict[str, np.ndarray]:
    """Copies of every array of a record (its file may be replaced later)."""
    out = {f: np.array(getattr(results, f)) for f in ARRAY_FIELDS}
    out.update({f"extra_{k}": np.array(v) for k, v in results.extras.items()})
    return out


def _assert_bitwise_equal(results: Results, expected: dict[str, np.ndarray]):
    got = _arrays(results)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and got[k].tobytes() == v.tobytes(), k


def _truncate(path: Path) -> None:
    """What a partial copy leaves: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path, member: str = "x_cf") -> None:
    """Flips 4 bytes in the middle of one member's array data: the archive still opens."""
    with zipfile.ZipFile(path) as zf:
        stored = zf.read(member + ".npy")
    data = bytearray(path.read_bytes())
    at = data.index(stored) + len(stored) // 2  # past the .npy header (at most 128 bytes)
    data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    path.write_bytes(bytes(data))
    with np.load(path) as f:
        assert member in f.files  # it still opens, as a garbled file would


def _chunk(out: Path, c: int) -> Path:
    return out / "chunks" / f"chunk_{c:05d}.npz"


def _fresh(problem, out: Path) -> dict[str, np.ndarray]:
    """A whole run into ``out``; its arrays."""
    results, computed, caught = _run(problem, out)
    assert computed == list(range(5)) and not caught
    return _arrays(results)


@pytest.mark.parametrize(
    ("damage", "what"), [(_truncate, "truncated"), (_garble, "SHA-256 checksum")]
)
def test_damaged_chunk_is_named_and_recomputed(problem, tmp_path, damage, what):
    """A run stopped before its record, whose chunk 2 was then damaged: resuming names that
    file, recomputes that chunk alone and ends with the undamaged run's results, bitwise."""
    out = tmp_path / "run"
    expected = _fresh(problem, out)
    (out / RESULT_FILE).unlink()  # as if stopped before the record was written
    damage(_chunk(out, 2))
    assert what in npz_problem(_chunk(out, 2))

    results, computed, caught = _run(problem, out)
    assert computed == [2]
    assert len(caught) == 1 and str(_chunk(out, 2)) in caught[0] and what in caught[0], caught
    assert "computing its chunk again" in caught[0]
    _assert_bitwise_equal(results, expected)
    _assert_bitwise_equal(Results.load(out), expected)
    assert npz_problem(_chunk(out, 2)) is None  # replaced by a whole file
    assert not list(out.rglob("*.tmp"))


def test_processes_agree_on_damaged_chunks(problem, tmp_path, monkeypatch):
    """Each process checks only its own part of each chunk; the processes AND their answers
    (``distributed.all_true``), so a chunk whose part is damaged on another process is
    recomputed by this one too. The other process is simulated: its part of chunk 3 is
    damaged, this one's part of chunk 1."""
    out = tmp_path / "run"
    expected = _fresh(problem, out)
    _garble(_chunk(out, 1))
    asked = []
    one_process = runner.distributed.all_true

    def two_processes(flags):
        asked.append(list(flags))
        other = np.ones(len(flags), bool)
        other[3] = False
        return one_process(flags) & other

    monkeypatch.setattr(runner.distributed, "all_true", two_processes)
    results, computed, caught = _run(problem, out)
    assert asked == [[True, False, True, True, True]]  # this process's own answer
    assert computed == [1, 3]
    assert len(caught) == 1 and str(_chunk(out, 1)) in caught[0]
    _assert_bitwise_equal(results, expected)


@pytest.mark.parametrize(
    ("damage", "what"), [(_truncate, "truncated"), (_garble, "SHA-256 checksum")]
)
def test_damaged_record_is_named_and_rebuilt(problem, tmp_path, damage, what):
    """Loading a damaged ``results.npz`` raises an error naming it and what is wrong (not zip's
    own error); running again rebuilds it from the chunks, computing nothing."""
    out = tmp_path / "run"
    expected = _fresh(problem, out)
    record = out / RESULT_FILE
    damage(record)
    for mmap in (False, True):
        with pytest.raises(DamagedFileError, match=re.escape(str(record))) as error:
            Results.load(out, mmap=mmap)
        assert what in str(error.value) and error.value.path == record
        assert not isinstance(error.value, zipfile.BadZipFile)

    results, computed, caught = _run(problem, out)
    assert computed == []
    assert len(caught) == 1 and str(record) in caught[0] and what in caught[0], caught
    assert "rebuilding it from the chunks" in caught[0]
    _assert_bitwise_equal(results, expected)
    _assert_bitwise_equal(Results.load(out, mmap=True), expected)


def test_files_without_checksums_still_load(problem, tmp_path):
    """A record and a chunk file written by ``np.savez`` (as before checksums existed) load
    and count as done; such a record, garbled, is still caught (by zip's CRC-32)."""
    out = tmp_path / "run"
    expected = _fresh(problem, out)
    record = out / RESULT_FILE
    legacy = tmp_path / "legacy.npz"
    np.savez(legacy, **Results.load(out).to_arrays())
    assert npz_problem(legacy) is None
    for mmap in (False, True):
        _assert_bitwise_equal(Results.load(legacy, mmap=mmap), expected)
    with np.load(_chunk(out, 0)) as f:
        old_chunk = {k: f[k] for k in f.files if k != "sha256"}
    np.savez(_chunk(out, 0), **old_chunk)
    record.unlink()

    results, computed, caught = _run(problem, out)
    assert computed == [] and not caught
    _assert_bitwise_equal(results, expected)

    _garble(legacy)
    with pytest.raises(DamagedFileError, match="CRC-32"):
        Results.load(legacy)


def test_chunk_damaged_after_the_check_is_named(problem, tmp_path, monkeypatch):
    """A chunk file damaged between the resume's check and the record's merge (here: a run
    that skips the check) stops the merge with an error naming it, not zip's own error."""
    out = tmp_path / "run"
    _fresh(problem, out)
    (out / RESULT_FILE).unlink()
    _garble(_chunk(out, 2))
    monkeypatch.setattr(run_module, "chunk_on_disk", lambda path: path.exists())
    with pytest.raises(DamagedFileError, match=re.escape(str(_chunk(out, 2)))) as error:
        _run(problem, out)
    assert "run again" in str(error.value)
    assert not (out / RESULT_FILE).exists()
