"""Tests for jaxcf.metrics: distances against numpy, validity and realism on a tiny classifier,
per-query tables from every result form, and summaries with standard deviations over sets."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcf import metrics
from jaxcf.classifier import FunctionClassifier, as_pure
from jaxcf.density import fit_gaussians
from jaxcf.methods.search import CFResult
from jaxcf.models import MLPConfig, build

SHAPE = (6, 5, 3)  # H, W, C: small but NHWC with more than one channel


def _pair(b=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(b, *SHAPE)).astype(np.float32)
    x_cf = x.copy()
    mask = rng.uniform(size=x.shape) < 0.2
    x_cf[mask] = rng.uniform(size=mask.sum()).astype(np.float32)
    x_cf[0] = x[0]  # one unchanged query
    x_cf[1, 0, 0, 0] = x[1, 0, 0, 0] + 5e-7  # below atol: not a change
    return x, x_cf


def test_distances_match_numpy():
    x, x_cf = _pair()
    d = (x_cf.astype(np.float64) - x).reshape(len(x), -1)
    np.testing.assert_array_equal(metrics.l0(x, x_cf), (np.abs(d) > 1e-6).sum(1))
    np.testing.assert_allclose(metrics.l1(x, x_cf), np.abs(d).sum(1), rtol=1e-12)
    np.testing.assert_allclose(metrics.l2(x, x_cf), np.linalg.norm(d, axis=1), rtol=1e-12)
    assert metrics.l0(x, x_cf)[0] == 0 and metrics.l1(x, x_cf)[0] == 0
    assert metrics.l0(x, x_cf).shape == (len(x),)
    # atol moves the threshold; jax arrays are accepted.
    np.testing.assert_array_equal(
        metrics.l0(jnp.asarray(x), jnp.asarray(x_cf), atol=0.5), (np.abs(d) > 0.5).sum(1)
    )


def test_l0_counts_changed_pixels_exactly():
    x = np.zeros((2, 28, 28, 1), np.float32)
    x_cf = x.copy()
    x_cf[0, :3, :7, 0] = 0.2  # 21 pixels
    x_cf[1, 5, 5, 0] = 1.0
    np.testing.assert_array_equal(metrics.l0(x, x_cf), [21, 1])
    np.testing.assert_allclose(metrics.l1(x, x_cf), [21 * 0.2, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    "x, x_cf, error",
    [
        (np.zeros((2, 3)), np.zeros((3, 3)), ValueError),
        (np.zeros((0, 3)), np.zeros((0, 3)), ValueError),
        (np.zeros((2, 3)), np.full((2, 3), np.nan), ValueError),
        (np.float32(0.0), np.float32(0.0), ValueError),
    ],
)
def test_distances_reject_bad_input(x, x_cf, error):
    with pytest.raises(error):
        metrics.l1(x, x_cf)


@pytest.fixture(scope="module")
def tiny():
    """An untrained MLP on 28x28x1 and class Gaussians fitted on its features of random images."""
    model = build(MLPConfig(hidden=16))
    clf = as_pure(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(300, 28, 28, 1)).astype(np.float32)
    feats = np.asarray(clf.features(jnp.asarray(x)))
    labels = np.arange(len(x)) % 10
    density = fit_gaussians(feats, labels, 10)
    return model, clf, density, x[:37]


def test_validity_matches_argmax_and_is_chunk_independent(tiny):
    model, clf, _, x = tiny
    pred = np.asarray(jnp.argmax(clf.logits(jnp.asarray(x)), -1))
    target = np.where(np.arange(len(x)) % 2 == 0, pred, (pred + 1) % 10)
    expected = pred == target
    for batch_size in (5, 16, 512):  # padded last chunk, several chunks, one chunk
        got = metrics.validity(model, x, target, batch_size=batch_size)
        assert got.dtype == bool and got.shape == (len(x),)
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(metrics.predict(model, x, batch_size=8), pred)
    # A scalar target applies to every query.
    np.testing.assert_array_equal(metrics.validity(clf, x, 3), pred == 3)


def test_validity_with_plain_function_and_unregistered_object(tiny):
    _, clf, _, x = tiny
    w = jnp.asarray(np.random.default_rng(1).normal(size=(784, 4)), jnp.float32)
    fc = FunctionClassifier(lambda p, x: x.reshape(len(x), -1) @ p, w)
    pred = np.asarray(jnp.argmax(x.reshape(len(x), -1) @ w, -1))
    np.testing.assert_array_equal(metrics.validity(fc, x, pred, batch_size=10), True)

    class Plain:  # not a pytree: closed over instead of passed as an argument
        def logits(self, x):
            return clf.logits(x)

    np.testing.assert_array_equal(
        metrics.validity(Plain(), x, 0, batch_size=10), metrics.validity(clf, x, 0)
    )


def test_validity_rejects_bad_targets(tiny):
    model, _, _, x = tiny
    with pytest.raises(ValueError, match="out of range"):
        metrics.validity(model, x, np.full(len(x), 10))
    with pytest.raises(ValueError):
        metrics.validity(model, x, np.zeros(len(x) + 1, int))
    with pytest.raises(TypeError):
        metrics.validity(model, x, np.zeros(len(x)))  # float targets
    with pytest.raises(TypeError):
        metrics.validity(object(), x, 0)


def test_density_nll_is_minus_target_log_prob(tiny):
    model, clf, density, x = tiny
    target = np.arange(len(x)) % 10
    log_p = np.asarray(density.log_prob(clf.features(jnp.asarray(x))))
    expected = -log_p[np.arange(len(x)), target]
    got = metrics.density_nll(model, density, x, target, batch_size=16)
    assert got.shape == (len(x),)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="out of range"):
        metrics.density_nll(model, density, x, np.full(len(x), 11))


@pytest.mark.parametrize("form", ["cfresult", "dict", "npz"])
def test_per_query_metrics_from_every_result_form(tiny, tmp_path, form):
    model, _, density, x = tiny
    rng = np.random.default_rng(2)
    x_cf = np.clip(x + (rng.uniform(size=x.shape) < 0.05) * 0.3, 0, 1).astype(np.float32)
    b = len(x)
    fields = {
        "x_cf": x_cf,
        "success": rng.uniform(size=b) < 0.7,
        "n_iter": rng.integers(1, 50, size=b).astype(np.int32),
        "target_prob": rng.uniform(size=b).astype(np.float32),
    }
    if form == "cfresult":
        result = CFResult(**{k: jnp.asarray(v) for k, v in fields.items()}, extras={})
    elif form == "dict":
        result = fields
    else:
        np.savez(tmp_path / "r.npz", **fields)
        result = np.load(tmp_path / "r.npz")
    target = np.arange(b) % 10
    pq = metrics.per_query_metrics(result, x, target, classifier=model, density=density)
    assert set(pq) == {"l0", "l1", "l2", "success", "n_iter", "target_prob", "valid", "nll"}
    assert all(v.shape == (b,) for v in pq.values())
    np.testing.assert_array_equal(pq["l0"], metrics.l0(x, x_cf))
    np.testing.assert_array_equal(pq["success"], fields["success"])
    np.testing.assert_array_equal(pq["n_iter"], fields["n_iter"])
    np.testing.assert_array_equal(pq["valid"], metrics.validity(model, x_cf, target))
    plain = metrics.per_query_metrics(result, x, target)
    assert set(plain) == {"l0", "l1", "l2", "success", "n_iter", "target_prob"}


def test_per_query_metrics_errors():
    x, x_cf = _pair()
    b = len(x)
    ok = {
        "x_cf": x_cf,
        "success": np.ones(b, bool),
        "n_iter": np.ones(b),
        "target_prob": np.ones(b),
    }
    with pytest.raises(KeyError):
        metrics.per_query_metrics({"x_cf": x_cf}, x, 0)
    with pytest.raises(ValueError):
        metrics.per_query_metrics({**ok, "success": np.ones(b + 1, bool)}, x, 0)
    with pytest.raises(ValueError, match="classifier"):
        metrics.per_query_metrics(ok, x, 0, density=object())


def test_summarize_means_over_successes_and_std_over_sets():
    rng = np.random.default_rng(3)
    n = 40
    sets = np.repeat(np.arange(4), 10)
    success = rng.uniform(size=n) < 0.8
    success[sets == 0] = True  # every set has some successes
    pq = {
        "l0": rng.integers(1, 100, size=n),
        "l1": rng.uniform(0, 20, size=n),
        "l2": rng.uniform(0, 5, size=n),
        "n_iter": rng.integers(1, 700, size=n),
        "nll": rng.normal(size=n),
        "success": success,
        "valid": success | (rng.uniform(size=n) < 0.5),
        "target_prob": rng.uniform(size=n),
    }
    s = metrics.summarize(pq, sets=sets)
    json.dumps(s, allow_nan=False)  # plain, strict JSON
    assert s["n"] == n and s["n_success"] == success.sum() and s["n_sets"] == 4
    assert s["failure_rate"] == pytest.approx(1 - success.mean())
    for k in metrics.AVERAGED:
        assert s[k] == pytest.approx(np.mean(pq[k][success]))
        assert s[f"{k}_all"] == pytest.approx(np.mean(pq[k]))
        set_means = [pq[k][(sets == i) & success].mean() for i in range(4)]
        assert s[f"{k}_std_over_sets"] == pytest.approx(np.std(set_means, ddof=1))
    fail_by_set = [1 - success[sets == i].mean() for i in range(4)]
    assert s["failure_rate_std_over_sets"] == pytest.approx(np.std(fail_by_set, ddof=1))
    assert s["valid_rate"] == pytest.approx(pq["valid"].mean())
    assert all(type(v) in (int, float) for v in s.values())

    # By hand: two sets with L0 means 10 and 20 -> std (ddof=1) = sqrt(50).
    hand = metrics.summarize(
        {"l0": np.array([8, 12, 20, 20]), "success": np.array([True, True, True, True])},
        sets=np.array([0, 0, 1, 1]),
    )
    assert hand["l0"] == 15.0 and hand["l0_std_over_sets"] == pytest.approx(np.sqrt(50))
    assert hand["failure_rate"] == 0.0 and hand["failure_rate_std_over_sets"] == 0.0


def test_summarize_single_set_no_sets_and_no_successes():
    pq = {"l0": np.array([3, 5]), "l1": np.array([1.0, 2.0]), "success": np.array([True, False])}
    one = metrics.summarize(pq, sets=np.zeros(2, int))
    assert one["l0"] == 3.0 and one["l0_all"] == 4.0 and one["l0_std_over_sets"] == 0.0
    assert one["failure_rate"] == 0.5
    plain = metrics.summarize(pq)
    assert "n_sets" not in plain and "l0_std_over_sets" not in plain
    none = metrics.summarize({**pq, "success": np.array([False, False])})
    assert none["l0"] is None and none["failure_rate"] == 1.0
    json.dumps(none, allow_nan=False)
    with pytest.raises(ValueError):
        metrics.summarize(pq, sets=np.zeros(3, int))


def test_paired_comparison_on_shared_successes():
    # By hand: query 2 is unsolved by b and query 3 by a, so only queries 0, 1 and 4 count.
    a = {"l0": np.array([10, 20, 99, 0, 30]), "success": np.array([1, 1, 1, 0, 1], bool)}
    b = {"l0": np.array([12, 20, 0, 5, 26]), "success": np.array([1, 1, 0, 1, 1], bool)}
    c = metrics.paired_comparison(a, b, keys=("l0",), sets=np.array([0, 0, 0, 1, 1]))
    json.dumps(c, allow_nan=False)
    assert c["n"] == 3
    diff = np.array([-2.0, 0.0, 4.0])
    assert c["l0"]["a"] == 20.0 and c["l0"]["b"] == pytest.approx(58 / 3)
    assert c["l0"]["diff"] == pytest.approx(diff.mean())
    assert c["l0"]["stderr"] == pytest.approx(np.std(diff, ddof=1) / np.sqrt(3))
    assert c["l0"]["a_lower"] == pytest.approx(1 / 3) and c["l0"]["b_lower"] == pytest.approx(1 / 3)
    assert c["per_set"] == [
        {"set": 0, "n": 2, "l0_a": 15.0, "l0_b": 16.0},
        {"set": 1, "n": 1, "l0_a": 30.0, "l0_b": 26.0},
    ]
    with pytest.raises(KeyError, match="l1"):
        metrics.paired_comparison(a, b)
    with pytest.raises(ValueError, match="sets"):
        metrics.paired_comparison(a, b, keys=("l0",), sets=np.zeros(4, int))


def test_published_numbers():
    pub = metrics.PUBLISHED
    assert pub["deduce"] == {"l0": 21.16, "l1": 10.72, "failure_rate": 0.0, "seconds_per_cf": 2.99}
    assert pub["jsma"]["failure_rate"] == pytest.approx(0.0309)
    assert pub["cfproto"]["failure_rate"] == 0.0009 and pub["cfproto"]["l0"] == 155.4
    assert pub["revise"]["l0"] == 752 and pub["revise"]["failure_rate"] == pytest.approx(0.268)
    assert "wachter" not in pub
    assert metrics.published_for("DeDUCE") is pub["deduce"]
    assert metrics.published_for("CF-Proto") is pub["cfproto"]
    assert metrics.published_for("wachter") is None
    json.dumps(pub, allow_nan=False)
