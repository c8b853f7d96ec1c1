"""The jaxcf side of ``benchmarks/relax_peer.py`` at a toy size, without ReLax.

The benchmark's numbers come from running it with ReLax's own environment (see
``benchmarks/README.md``); no test needs ReLax. Checked here: the shared MLP trains on real
Adult rows, the three jaxcf schedules run on them and keep their contracts (the slot pool returns
the one-batch search's counterfactuals; the fixed budget spends every step), the .npz handed to
the ReLax side holds the trained weights, and a missing or ReLax-less interpreter is refused
with a clear error before anything is computed.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from benchmarks import relax_peer
from benchmarks.relax_peer import Config, jaxcf_schedules, prepare, run, run_jaxcf, write_inputs
from jaxcf.evaluation import metrics

TOY = Config(jaxcf_only=True, rows="6,12", steps=5, epochs=1, batch_size=512, slots=4, repeats=1)


@pytest.mark.standard_promotion  # optax's Adam (training and Wachter's steps)
def test_jaxcf_side_runs_on_adult_rows_and_exports_the_weights(tmp_path):
    shared = prepare(TOY)
    assert shared["x"].shape == (12, 85)
    assert shared["model"]["layers"] == [85, 64, 32, 16, 2]
    # One epoch already puts the MLP well above the majority class (76% of the test split).
    assert shared["model"]["test_accuracy"] > 0.8
    clf, x, t = shared["classifier"], shared["x"], shared["target"]
    assert np.array_equal(t, 1 - np.asarray(clf.logits(x)).argmax(1))  # the other class

    records, cfs = run_jaxcf(clf, x, t, TOY)
    assert set(records) == set(jaxcf_schedules(TOY))
    np.testing.assert_array_equal(cfs["first valid, slots"], cfs["first valid"])
    fixed = records["fixed budget"]
    assert fixed["mean_iterations"] == fixed["max_iterations"] == TOY.steps
    for name, r in records.items():
        valid = metrics.validity(clf, cfs[name], t)
        assert r["success_rate"] == pytest.approx(valid.mean()), name
        assert r["first_call_seconds"] > 0 and r["steady_seconds"] > 0

    path = tmp_path / "inputs.npz"
    write_inputs(path, shared, TOY)
    with np.load(path) as f:
        assert int(f["n_layers"]) == len(shared["params"]) == 4
        for i, (w, b) in enumerate(shared["params"]):
            np.testing.assert_array_equal(f[f"w{i}"], np.asarray(w))
            np.testing.assert_array_equal(f[f"b{i}"], np.asarray(b))
        np.testing.assert_array_equal(f["x"], x)
        assert list(f["sizes"]) == [6, 12] and int(f["n_steps"]) == TOY.steps


def test_relax_is_required_and_checked_before_any_computation(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="--relax-python"):
        run(Config())
    # Our own interpreter has no ReLax: the probe fails with the reason and the way out.
    with pytest.raises(RuntimeError, match="ReLax is not importable.*README"):
        run(Config(relax_python=sys.executable))
    with pytest.raises(RuntimeError, match="cannot run"):
        run(Config(relax_python=str(tmp_path / "no-such-python")))

    seen = []
    monkeypatch.setattr(relax_peer, "run", seen.append)
    relax_peer.main(["--relax-python", "py-a", "--config.steps=7"])
    relax_peer.main(["--relax-python=py-b"])
    assert [(c.relax_python, c.steps) for c in seen] == [("py-a", 7), ("py-b", 100)]
