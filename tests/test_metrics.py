"""Tests for jaxcf.evaluation.metrics: distances against numpy, validity of every target kind and
realism on
a tiny classifier, row metrics from the results record in every form, per-query aggregates by
hand, and summaries with standard deviations over sets."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcf.core import CFResult, FunctionClassifier, Results, as_pure
from jaxcf.evaluation import metrics
from jaxcf.models import MLPConfig, build, fit_gaussians

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
    with pytest.raises(ValueError, match="outside"):
        metrics.validity(model, x, np.full(len(x), 10))
    with pytest.raises(ValueError, match="one entry per query"):
        metrics.validity(model, x, np.zeros(len(x) + 1, int))
    with pytest.raises(ValueError, match="one output"):  # float [B]: regression, 10 outputs
        metrics.validity(model, x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="distributions"):
        metrics.validity(model, x, np.full((len(x), 10), 0.2))
    with pytest.raises(ValueError, match=r"\[B, 10\]"):
        metrics.validity(model, x, np.full((len(x), 4), 0.25))
    with pytest.raises(TypeError, match="bool"):
        metrics.validity(model, x, np.ones(len(x), bool))
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
    with pytest.raises(ValueError, match="outside"):
        metrics.density_nll(model, density, x, np.full(len(x), 11))
    with pytest.raises(TypeError, match="class targets"):
        metrics.density_nll(model, density, x, np.full((len(x), 10), 0.1))


def test_validity_of_soft_targets_is_total_variation_within_tolerance(tiny):
    _, clf, _, x = tiny
    p = np.asarray(jax.nn.softmax(clf.logits(jnp.asarray(x))), np.float64)
    b = len(x)
    # Half the queries aim at the model's own distribution (distance 0), the others at a
    # one-hot class: distance 1 - p_c by hand.
    c = np.arange(b) % 10
    one_hot = np.eye(10, dtype=np.float32)[c]
    soft = np.where((np.arange(b) % 2 == 0)[:, None], p.astype(np.float32), one_hot)
    soft = soft / soft.sum(axis=1, keepdims=True)
    tv = 0.5 * np.abs(p - soft).sum(axis=1)
    np.testing.assert_allclose(tv[1::2], 1.0 - p[np.arange(1, b, 2), c[1::2]], atol=1e-5)
    assert 0 < np.sum(tv <= 0.5) < b  # a real mix at the middle tolerance
    for tolerance in (1e-3, 0.5, 0.95):
        got = metrics.validity(clf, x, soft, tolerance=tolerance, batch_size=8)
        assert got.dtype == bool and got.shape == (b,)
        np.testing.assert_array_equal(got, tv <= tolerance)
    assert np.all(metrics.validity(clf, x, soft, tolerance=1e-3)[::2])


def _regressor():
    w = jnp.asarray(np.random.default_rng(4).normal(size=(784, 1)) / 28.0, jnp.float32)
    return FunctionClassifier(lambda p, x: x.reshape(len(x), -1) @ p, w), np.asarray(w)


def test_validity_of_regression_targets_is_absolute_error_within_tolerance(tiny):
    _, _, _, x = tiny
    reg, w = _regressor()
    out = x.reshape(len(x), -1).astype(np.float64) @ w.astype(np.float64)
    error = np.where(np.arange(len(x)) % 3 == 0, 0.05, 0.3) * np.where(np.arange(len(x)) % 2, 1, -1)
    target = (out[:, 0] + error).astype(np.float32)
    for tolerance, expected in ((0.01, np.zeros(len(x), bool)), (0.1, np.abs(error) < 0.1)):
        got = metrics.validity(reg, x, target, tolerance=tolerance, batch_size=16)
        np.testing.assert_array_equal(got, expected)
    assert np.all(metrics.validity(reg, x, target, tolerance=0.5))
    # An integer target is a class index, never a regression value: class 1 of a 1-output model.
    with pytest.raises(ValueError, match="outside"):
        metrics.validity(reg, x, np.ones(len(x), np.int32))


def _record(x, rng):
    """Random CFResult fields for queries ``x``."""
    b = len(x)
    x_cf = np.clip(x + (rng.uniform(size=x.shape) < 0.05) * 0.3, 0, 1).astype(np.float32)
    return {
        "x_cf": x_cf,
        "success": rng.uniform(size=b) < 0.7,
        "n_iter": rng.integers(1, 50, size=b).astype(np.int32),
        "score": rng.uniform(size=b).astype(np.float32),
    }


@pytest.mark.parametrize("form", ["from_batch", "fields", "npz"])
def test_row_metrics_from_every_results_form(tiny, tmp_path, form):
    model, _, density, x = tiny
    fields = _record(x, np.random.default_rng(2))
    b = len(x)
    target = (np.arange(b) % 10).astype(np.int32)
    if form == "from_batch":  # what an explainer returns, wrapped
        result = CFResult(**{k: jnp.asarray(v) for k, v in fields.items()}, extras={})
        results = Results.from_batch(result, x, target)
    else:
        results = Results(
            x=x,
            target=target,
            **fields,
            query=np.arange(b),
            cf=np.zeros(b, np.int32),
            group=np.arange(b) % 2,
            extras={"pixel_changes": np.ones(b, np.int32)},
        )
        if form == "npz":
            results.save(tmp_path / "run")
            results = Results.load(tmp_path / "run")
            assert results.extras["pixel_changes"].shape == (b,)
    pq = metrics.row_metrics(results, classifier=model, density=density)
    assert set(pq) == {"l0", "l1", "l2", "success", "n_iter", "score", "valid", "nll"}
    assert all(v.shape == (b,) for v in pq.values())
    np.testing.assert_array_equal(pq["l0"], metrics.l0(x, fields["x_cf"]))
    np.testing.assert_array_equal(pq["l1"], metrics.l1(x, fields["x_cf"]))
    np.testing.assert_array_equal(pq["success"], fields["success"])
    np.testing.assert_array_equal(pq["n_iter"], fields["n_iter"])
    np.testing.assert_array_equal(pq["score"], fields["score"].astype(np.float64))
    np.testing.assert_array_equal(pq["valid"], metrics.validity(model, fields["x_cf"], target))
    np.testing.assert_array_equal(
        pq["nll"], metrics.density_nll(model, density, fields["x_cf"], target)
    )
    plain = metrics.row_metrics(results)
    assert set(plain) == {"l0", "l1", "l2", "success", "n_iter", "score"}


def test_row_metrics_of_soft_and_regression_records(tiny):
    """Validity follows the record's target kind, with the tolerance passed."""
    _, clf, _, x = tiny
    fields = _record(x, np.random.default_rng(5))
    x_cf = fields["x_cf"]
    p = np.asarray(jax.nn.softmax(clf.logits(jnp.asarray(x_cf))), np.float32)
    soft = Results.from_batch(CFResult(**fields, extras={}), x, p / p.sum(1, keepdims=True))
    np.testing.assert_array_equal(metrics.row_metrics(soft, classifier=clf)["valid"], True)
    reg, w = _regressor()
    target = (x_cf.reshape(len(x), -1) @ w)[:, 0] + np.where(np.arange(len(x)) % 2, 0.2, 0.0)
    rows = metrics.row_metrics(
        Results.from_batch(CFResult(**fields, extras={}), x, target.astype(np.float32)),
        classifier=reg,
        tolerance=0.1,
    )
    np.testing.assert_array_equal(rows["valid"], np.arange(len(x)) % 2 == 0)


def test_row_metrics_errors():
    x, x_cf = _pair()
    b = len(x)
    ok = {
        "x": x,
        "target": np.zeros(b, np.int32),
        "x_cf": x_cf,
        "success": np.ones(b, bool),
        "n_iter": np.ones(b, np.int32),
        "score": np.ones(b, np.float32),
        "query": np.arange(b),
        "cf": np.zeros(b, np.int32),
        "group": np.zeros(b, np.int32),
    }
    with pytest.raises(TypeError, match="Results"):
        metrics.row_metrics(ok)  # a dict of fields is not a record
    with pytest.raises(ValueError, match="missing"):
        Results.from_arrays({"x_cf": x_cf})
    with pytest.raises(ValueError, match="success"):
        Results(**{**ok, "success": np.ones(b + 1, bool)})
    with pytest.raises(ValueError, match="shape"):
        Results(**{**ok, "x_cf": x_cf[..., :1]})
    with pytest.raises(ValueError, match="classifier"):
        metrics.row_metrics(Results(**ok), density=object())


def test_query_metrics_by_hand():
    """Three queries, rows out of order: query 0 with three successes, query 1 with one, query 2
    with none."""
    x = np.zeros((7, 4), np.float32)
    x_cf = np.array(
        [
            [9, 9, 9, 9],  # query 2, failed
            [0, 0, 0, 0],  # query 2, failed
            [1, 0, 0, 0],  # query 0: L0 1, L1 1
            [0, 2, 1, 0],  # query 0: L0 2, L1 3
            [3, 3, 3, 0],  # query 0: L0 3, L1 9
            [0, 0, 0, 4],  # query 1: L0 1, L1 4
            [1, 1, 1, 1],  # query 1, failed
        ],
        np.float32,
    )
    success = np.array([0, 0, 1, 1, 1, 1, 0], bool)
    results = Results(
        x=x,
        target=np.zeros(7, np.int32),
        x_cf=x_cf,
        success=success,
        n_iter=np.ones(7, np.int32),
        score=np.ones(7, np.float32),
        query=np.array([2, 2, 0, 0, 0, 1, 1]),
        cf=np.array([0, 1, 0, 1, 2, 0, 1]),
        group=np.zeros(7, np.int32),
    )
    assert results.num_queries == 3
    rows = metrics.row_metrics(results)
    q = metrics.query_metrics(results, rows)
    np.testing.assert_array_equal(q["query"], [0, 1, 2])
    np.testing.assert_array_equal(q["success"], [True, True, False])
    np.testing.assert_array_equal(q["n_success"], [3, 1, 0])
    nan = np.nan
    np.testing.assert_array_equal(q["l0_best"], [1, 1, nan])
    np.testing.assert_array_equal(q["l0_mean"], [2, 1, nan])
    np.testing.assert_array_equal(q["l1_best"], [1, 4, nan])
    np.testing.assert_allclose(q["l1_mean"], [13 / 3, 4, nan])
    # Pairwise L1 among query 0's successes: |a-b| = 4, |a-c| = 8, |b-c| = 6 -> mean 6; one
    # success (query 1) or none (query 2) has no diversity.
    np.testing.assert_array_equal(q["diversity"], [6, nan, nan])
    q2 = metrics.query_metrics(results, rows, keys=("l2",))
    assert "l2_best" in q2 and "l0_best" not in q2
    np.testing.assert_allclose(q2["l2_best"], [1, 4, nan])


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
        "score": rng.uniform(size=n),
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
    assert s["score_all"] == pytest.approx(pq["score"].mean())
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
