"""Method-specific checks of the public functions and the search drivers.

Per-query reference loops live in :mod:`tests.references`; :mod:`tests.test_contract` runs every
method's default configuration against them, through the runner, sharded and chunked. Here:
the DeDUCE and JSMA variants the contract does not cover, Wachter's class targets, the slot
pool, the stopping rules, compilation caching, classifier adapters and input errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcf.core import FunctionClassifier
from jaxcf.methods import (
    DeDUCEConfig,
    JSMAConfig,
    WachterConfig,
    deduce,
    deduce_search,
    jsma,
    jsma_search,
    solve,
    solve_pool,
    wachter,
    wachter_search,
)
from jaxcf.methods._search import solve_jit
from tests import references

DEDUCE = DeDUCEConfig(max_iter=100)
JSMA = JSMAConfig(max_iter=100)
WACHTER = WachterConfig(max_iter=40, learning_rate=0.02)


def _compare(result, refs, atol=0.0):
    for i, (x_ref, ok, n, s) in enumerate(refs):
        assert bool(result.success[i]) == ok, f"query {i}: success"
        assert int(result.n_iter[i]) == n, f"query {i}: n_iter {int(result.n_iter[i])} vs {n}"
        np.testing.assert_allclose(np.asarray(result.x_cf[i]), x_ref, atol=atol, err_msg=f"q{i}")
        np.testing.assert_allclose(float(result.score[i]), s, rtol=1e-4, atol=1e-5)


def _split(model):
    """The model as a user's plain functions of ``(state, x)``."""
    graphdef, state = nnx.split(model)
    fns = {
        name: (lambda s, x, name=name: getattr(nnx.merge(graphdef, s), name)(x))
        for name in ("logits", "features", "head")
    }
    return state, fns


# ----------------------------------------------------------------------------- equivalence


@dataclasses.dataclass(frozen=True)
class RefCase:
    name: str
    run: Callable  # (model, density, x, t) -> CFResult
    reference: Callable  # (model, density, x_i, t_i) -> (x_cf, ok, n, score)
    n: int  # queries (of the 12): 12 asks for both successes and failures


def _deduce_case(name, n=6, **changes):
    cfg = dataclasses.replace(DEDUCE, max_iter=40, **changes) if changes else DEDUCE
    return RefCase(
        name,
        lambda m, d, x, t: deduce(m, d, x, t, cfg),
        lambda m, d, x, t: references.reference_deduce(m, d, x, t, cfg),
        n,
    )


def _jsma_case(name, cfg, n):
    return RefCase(
        name,
        lambda m, d, x, t: jsma(m, x, t, cfg),
        lambda m, d, x, t: references.reference_jsma(m, x, t, cfg),
        n,
    )


# DeDUCE's default configuration is in the contract table; its variants and JSMA's class
# targets (the contract runs JSMA on soft targets) are here.
REFERENCE_CASES = [
    _deduce_case("deduce-pixels3", pixels=3),
    _deduce_case("deduce-no-density", density_weight=0.0),
    _deduce_case("deduce-weights", density_weight=0.5, ce_weight=2.0),
    _deduce_case("deduce-no-momentum-cap2", momentum=0.0, max_changes=2),
    _jsma_case("jsma", JSMA, 12),
    _jsma_case("jsma-pixels2-step05", JSMAConfig(max_iter=40, pixels=2, step=0.5), 6),
]


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=[c.name for c in REFERENCE_CASES])
def test_matches_reference_loop(trained, queries, case):
    model, density, _ = trained
    x, t = queries[0][: case.n], queries[1][: case.n]
    result = case.run(model, density, x, t)
    refs = [case.reference(model, density, x[i], int(t[i])) for i in range(case.n)]
    if case.n == len(queries[0]):
        assert 0 < sum(r[1] for r in refs) < case.n, "want both successes and failures"
    _compare(result, refs)


@pytest.mark.standard_promotion
def test_wachter_matches_reference_loop(trained, queries):
    """A continuous search: trajectories agree to float tolerance, so compare them over a fixed
    number of steps (a threshold of 1, never reached), where rounding cannot move a stop."""
    model, _, _ = trained
    x, t = queries
    cfg = dataclasses.replace(WACHTER, threshold=1.0, max_iter=25)
    result = wachter(model, x, t, cfg)
    refs = [references.reference_wachter(model, x[i], int(t[i]), cfg) for i in range(len(x))]
    assert not any(r[1] for r in refs) and np.all(np.asarray(result.n_iter) == 25)
    _compare(result, refs, atol=2e-5)
    # With the usual threshold most queries stop early, at (nearly) the reference's iteration.
    result = wachter(model, x, t, WACHTER)
    refs = [references.reference_wachter(model, x[i], int(t[i]), WACHTER) for i in range(len(x))]
    assert sum(r[1] for r in refs) > len(refs) // 2
    assert np.array_equal(np.asarray(result.success), [r[1] for r in refs])
    assert np.max(np.abs(np.asarray(result.n_iter) - [r[2] for r in refs])) <= 1


# ----------------------------------------------------------------------------- slot pool


@pytest.mark.parametrize(
    "method",
    ["deduce", "jsma", pytest.param("wachter", marks=pytest.mark.standard_promotion)],
)
def test_pool_equals_batch(trained, queries, method):
    """Refilling finished slots changes nothing about any query's result."""
    model, density, _ = trained
    search = {
        "deduce": lambda: deduce_search(model, density, DEDUCE),
        "jsma": lambda: jsma_search(model, JSMA),
        "wachter": lambda: wachter_search(model, WACHTER),
    }[method]()
    x, t = search.check(*queries)
    batch = jax.jit(solve)(search, x, t)
    pooled = jax.jit(solve_pool, static_argnames=("slots", "segment"))(
        search, x, t, slots=5, segment=3
    )
    # Identical decisions and counterfactuals; scores to rounding (batch of 12 vs 5).
    for field in ("x_cf", "success", "n_iter"):
        np.testing.assert_array_equal(getattr(batch, field), getattr(pooled, field), field)
    np.testing.assert_allclose(batch.score, pooled.score, rtol=1e-5, atol=1e-7)
    assert set(batch.extras) == set(pooled.extras)
    for k in batch.extras:
        np.testing.assert_array_equal(np.asarray(batch.extras[k]), np.asarray(pooled.extras[k]))


@pytest.mark.parametrize(("slots", "taper"), [(6, (3, 1)), (12, (5,)), (4, ())])
def test_tapered_pool_equals_batch(trained, queries, slots, taper):
    """Compacting the stragglers into smaller batches changes no query's result."""
    model, density, _ = trained
    search = deduce_search(model, density, DEDUCE)
    x, t = search.check(*queries)
    batch = jax.jit(solve)(search, x, t)
    pooled, stats = jax.jit(
        solve_pool, static_argnames=("slots", "segment", "taper", "with_stats")
    )(search, x, t, slots=slots, segment=2, taper=taper, with_stats=True)
    np.testing.assert_array_equal(batch.x_cf, pooled.x_cf)
    np.testing.assert_array_equal(batch.n_iter, pooled.n_iter)
    np.testing.assert_array_equal(batch.success, pooled.success)
    # Every computed query-iteration is accounted for: at least the useful ones.
    assert int(stats["slot_iterations"]) >= int(np.sum(batch.n_iter))


def test_padding_queries_are_inert(trained, queries):
    model, density, _ = trained
    search = deduce_search(model, density, DEDUCE)
    x, t = search.check(*queries)
    valid = jnp.arange(len(x)) < 7
    r = jax.jit(solve_pool, static_argnames=("slots", "segment"))(
        search, x, t, slots=4, segment=2, valid=valid
    )
    full = jax.jit(solve)(search, x, t)
    np.testing.assert_array_equal(np.asarray(r.x_cf[:7]), np.asarray(full.x_cf[:7]))
    np.testing.assert_array_equal(np.asarray(r.n_iter[:7]), np.asarray(full.n_iter[:7]))
    assert not np.any(np.asarray(r.success[7:]))
    assert np.all(np.asarray(r.n_iter[7:]) == 0)


# ----------------------------------------------------------------------------- stopping rules


def test_target_already_reached_returns_at_once(trained, mnist_test):
    model, density, _ = trained
    x = mnist_test.images[:16]
    pred = np.asarray(jnp.argmax(model.logits(x), -1)).astype(np.int32)
    p = np.asarray(jax.nn.softmax(model.logits(x)))[np.arange(16), pred]
    keep = p >= 0.5
    assert keep.any()
    for result in (deduce(model, density, x, pred, DEDUCE), jsma(model, x, pred, JSMA)):
        assert np.all(np.asarray(result.success)[keep])
        assert np.all(np.asarray(result.n_iter)[keep] == 0)
        np.testing.assert_array_equal(np.asarray(result.x_cf)[keep], x[keep])
        np.testing.assert_allclose(np.asarray(result.score)[keep], p[keep], rtol=1e-5)


def test_finished_queries_stay_in_domain_and_failures_keep_last_iterate(trained, queries):
    model, density, _ = trained
    x, t = queries
    r = deduce(model, density, x, t, DeDUCEConfig(max_iter=5))
    xc = np.asarray(r.x_cf)
    assert xc.min() >= 0.0 and xc.max() <= 1.0
    failed = ~np.asarray(r.success)
    assert failed.any()
    # A failure is the last iterate (5 single-pixel updates), never a zero image.
    changed = (np.abs(xc - x) > 0).reshape(len(x), -1).sum(1)
    assert np.all(changed[failed] >= 1) and np.all(changed[failed] <= 5)
    assert np.all(np.asarray(r.n_iter)[failed] == 5)
    assert np.all(np.asarray(r.extras["pixel_changes"])[failed] == 5)
    assert np.all(np.asarray(r.score)[failed] < 0.5)


# ----------------------------------------------------------------------------- compilation


def test_no_recompilation(trained, queries):
    model, density, _ = trained
    x, t = queries
    deduce(model, density, x, t, DEDUCE)
    jsma(model, x, t, JSMA)
    compiled = solve_jit._cache_size()
    # Same shapes and config, other values and another model instance of the same architecture.
    other = nnx.clone(model)
    deduce(other, density, x[::-1].copy(), t[::-1].copy(), DEDUCE)
    deduce(model, density, x, t, DeDUCEConfig(max_iter=100))  # equal config, new object
    jsma(other, x, (t + 1) % 10, JSMA)
    assert solve_jit._cache_size() == compiled


# ----------------------------------------------------------------------------- adapters


@pytest.mark.standard_promotion
def test_function_classifier_and_user_module(trained, queries):
    """Any object offering the protocol works: a wrapped function or a user's own NNX module."""
    model, density, _ = trained
    x, t = queries
    state, fns = _split(model)
    clf = FunctionClassifier(fns["logits"], state, input_shape=(28, 28, 1), domain=(0.0, 1.0))
    a = jsma(clf, x[:4], t[:4], JSMA)
    b = jsma(model, x[:4], t[:4], JSMA)
    np.testing.assert_array_equal(np.asarray(a.x_cf), np.asarray(b.x_cf))
    np.testing.assert_array_equal(np.asarray(a.n_iter), np.asarray(b.n_iter))

    class Linear(nnx.Module):  # a user's own module with the protocol, no declared domain
        def __init__(self):
            self.w = nnx.Linear(784, 10, rngs=nnx.Rngs(0))

        def features(self, xb):
            return xb.reshape(xb.shape[0], -1)

        def head(self, f):
            return self.w(f)

        def logits(self, xb):
            return self.head(self.features(xb))

    r = wachter(Linear(), x[:4], t[:4], WachterConfig(max_iter=3))
    assert r.x_cf.shape == (4, 28, 28, 1)
    assert np.all(np.asarray(r.n_iter) <= 3) and np.any(np.asarray(r.x_cf) != x[:4])


def test_pixel_searches_need_a_bounded_domain(trained, queries):
    """Without a domain on the classifier or the config, JSMA and DeDUCE refuse to run (JSMA
    freezes pixels at the bounds); a config domain stands in for the classifier's."""
    model, density, _ = trained
    x, t = queries[0][:4], queries[1][:4]
    state, fns = _split(model)
    clf = FunctionClassifier(fns["logits"], state, features_fn=fns["features"], head_fn=fns["head"])
    before = solve_jit._cache_size()
    with pytest.raises(ValueError, match="bounded input domain"):
        jsma(clf, x, t, JSMA)
    with pytest.raises(ValueError, match="bounded input domain"):
        deduce(clf, density, x, t, DEDUCE)
    assert solve_jit._cache_size() == before
    cfg = DeDUCEConfig(max_iter=30, domain=(0.0, 1.0))
    a = deduce(clf, density, x, t, cfg)
    b = deduce(model, density, x, t, dataclasses.replace(cfg, domain=None))
    np.testing.assert_array_equal(np.asarray(a.x_cf), np.asarray(b.x_cf))
    np.testing.assert_array_equal(np.asarray(a.n_iter), np.asarray(b.n_iter))
    a = jsma(clf, x, t, JSMAConfig(max_iter=30, domain=(0.0, 1.0)))
    b = jsma(model, x, t, JSMAConfig(max_iter=30))
    np.testing.assert_array_equal(np.asarray(a.x_cf), np.asarray(b.x_cf))


# ----------------------------------------------------------------------------- bad input


def _bad_cases(x, t):
    """(name, x, target, error, message): the same for every method unless a dict says per
    method."""
    nan = np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x)
    return [
        ("rank", x.reshape(-1), t[:1], ValueError, "rank"),
        ("size", np.zeros((2, 32, 32, 1), np.float32), t[:2], ValueError, "shape"),
        ("range", x * 2.0 + 0.5, t, ValueError, "lie in"),
        ("nan", nan, t, ValueError, "NaN"),
        ("inf", np.full_like(x, np.inf), t, ValueError, "NaN or inf"),
        ("target_high", x, np.full_like(t, 10), ValueError, "outside"),
        ("target_low", x, np.full_like(t, -1), ValueError, "outside"),
        (  # a float [B] target is a regression value: DeDUCE takes none, the others need 1 output
            "target_float",
            x,
            t.astype(np.float32),
            {"deduce": TypeError, "jsma": ValueError, "wachter": ValueError},
            {"deduce": "class targets", "jsma": "one output", "wachter": "one output"},
        ),
        ("target_bool", x, t > 3, TypeError, "dtype bool"),
        ("empty", x[:0], t[:0], ValueError, "empty"),
        ("length", x, t[:3], ValueError, "one entry per query"),
        ("strings", np.array([["a"]]), t[:1], TypeError, "numeric"),
    ]


BAD_NAMES = [c[0] for c in _bad_cases(np.zeros((2, 28, 28, 1)), np.zeros(2, np.int32))]


@pytest.mark.parametrize("case", BAD_NAMES)
def test_bad_inputs_raise_before_compiling(trained, queries, case):
    model, density, _ = trained
    x, t = queries
    name, xb, tb, err, match = next(c for c in _bad_cases(x, t) if c[0] == case)
    calls = {
        "deduce": lambda: deduce(model, density, xb, tb, DEDUCE),
        "jsma": lambda: jsma(model, xb, tb, JSMA),
        "wachter": lambda: wachter(model, xb, tb, WACHTER),
    }
    before = solve_jit._cache_size()
    for method, call in calls.items():
        e = err[method] if isinstance(err, dict) else err
        m = match[method] if isinstance(match, dict) else match
        with pytest.raises(e, match=m):
            call()
    assert solve_jit._cache_size() == before, name


def test_deduce_takes_class_targets_only(trained, queries):
    """DeDUCE's density is per class: soft and regression targets are a TypeError, before any
    compilation, from the public function and the search's check alike."""
    model, density, _ = trained
    x, t = queries
    soft = np.full((len(x), 10), 0.1, np.float32)
    regression = np.linspace(0.0, 1.0, len(x), dtype=np.float32)
    search = deduce_search(model, density, DEDUCE)
    before = solve_jit._cache_size()
    for target, kind in ((soft, "soft"), (regression, "regression")):
        with pytest.raises(TypeError, match=f"takes class targets, got a {kind} target"):
            deduce(model, density, x, target, DEDUCE)
        with pytest.raises(TypeError, match="class targets"):
            search.check(x, target)
    assert solve_jit._cache_size() == before
    # The same soft target is fine for JSMA (it takes every kind).
    assert jsma_search(model, JSMA).check(x, soft)[1].shape == (len(x), 10)


def test_density_with_wrong_number_of_classes(trained, queries):
    from jaxcf.models import fit_gaussians

    model, _, _ = trained
    x, t = queries
    feats = np.asarray(model.features(x))
    wrong = fit_gaussians(np.concatenate([feats] * 3), np.arange(36) % 3, num_classes=3)
    with pytest.raises(ValueError, match="10 classes"):
        deduce(model, wrong, x, t % 3, DEDUCE)
    with pytest.raises(TypeError, match="log_prob"):
        deduce(model, object(), x, t, DEDUCE)


def test_classifier_without_features_is_a_clear_error(trained, queries):
    _, density, _ = trained
    x, t = queries
    clf = FunctionClassifier(
        lambda p, xb: xb.reshape(xb.shape[0], -1) @ p, jnp.zeros((784, 10)), domain=(0.0, 1.0)
    )
    with pytest.raises(TypeError, match="lacks features, head"):
        deduce(clf, density, x, t, DEDUCE)
    with pytest.raises(TypeError, match="logits"):
        jsma(object(), x, t, JSMA)
