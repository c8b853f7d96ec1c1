"""Batched, jitted methods against plain per-query reference loops written here.

The references follow the published algorithms step by step for one query at a time, using JAX
only for the gradient of a single image; everything else is NumPy on the host.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcf.classifier import FunctionClassifier, as_pure
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
from jaxcf.methods.search import solve_jit

DEDUCE = DeDUCEConfig(max_iter=100)
JSMA = JSMAConfig(max_iter=100)
WACHTER = WachterConfig(max_iter=40, learning_rate=0.02)


# ----------------------------------------------------------------------------- references


def _single_grad_fns(classifier, density):
    """Jitted per-image probability and gradients (batch of one)."""
    clf = as_pure(classifier, need_features=density is not None)

    def probs(x):
        return jax.nn.softmax(clf.logits(x[None]))[0]

    def ce(x, t):
        return -jax.nn.log_softmax(clf.logits(x[None]))[0, t]

    def log_dens(x, t):
        return density.log_prob(clf.features(x[None]))[0, t]

    return (
        jax.jit(probs),
        jax.jit(jax.value_and_grad(ce)),
        None if density is None else jax.jit(jax.value_and_grad(log_dens)),
    )


def reference_deduce(classifier, density, x, t, cfg: DeDUCEConfig):
    """DeDUCE for one query, as a plain loop (DESIGN.md section 4)."""
    probs, ce_grad, dens_grad = _single_grad_fns(classifier, density)
    x = np.array(x, np.float32)
    changes = np.zeros(x.size, np.int64)
    mom = np.zeros(x.size, np.float32)
    n = 0
    while True:
        p = float(probs(jnp.asarray(x))[t])
        if p >= cfg.threshold:
            return x, True, n, p
        if n == cfg.max_iter:
            return x, False, n, p
        ce, g_ce = ce_grad(jnp.asarray(x), t)
        ld, g_ld = dens_grad(jnp.asarray(x), t)
        g = -cfg.density_weight * np.asarray(g_ld).ravel() / max(abs(float(ld)), 1e-12)
        g = g + cfg.ce_weight * np.asarray(g_ce).ravel() / max(abs(float(ce)), 1e-12)
        g[changes >= cfg.max_changes] = 0.0
        chosen = np.argsort(-np.abs(g), kind="stable")[: cfg.pixels]
        g = g + cfg.momentum * mom
        flat = x.ravel()
        flat[chosen] = np.clip(flat[chosen] - cfg.step * np.sign(g[chosen]), 0.0, 1.0)
        changes[chosen] += 1
        mom = g
        n += 1


def reference_jsma(classifier, x, t, cfg: JSMAConfig):
    """JSMA for one query, as a plain loop."""
    probs, ce_grad, _ = _single_grad_fns(classifier, None)
    x = np.array(x, np.float32)
    frozen = np.zeros(x.size, bool)
    n = 0
    while True:
        p = float(probs(jnp.asarray(x))[t])
        if p >= cfg.threshold:
            return x, True, n, p
        if n == cfg.max_iter:
            return x, False, n, p
        _, g = ce_grad(jnp.asarray(x), t)
        g = np.array(g).ravel()
        g[frozen] = 0.0
        chosen = np.argsort(-np.abs(g), kind="stable")[: cfg.pixels]
        flat = x.ravel()
        flat[chosen] = np.clip(flat[chosen] - cfg.step * np.sign(g[chosen]), 0.0, 1.0)
        frozen[chosen] |= (flat[chosen] == 0.0) | (flat[chosen] == 1.0)
        n += 1


def reference_wachter(classifier, x, t, cfg: WachterConfig):
    """Wachter's search for one query, with its own optax optimiser."""
    probs, ce_grad, _ = _single_grad_fns(classifier, None)
    tx = optax.adam(cfg.learning_rate) if cfg.optimizer == "adam" else optax.sgd(cfg.learning_rate)
    x0 = jnp.asarray(x)
    xc = x0
    state = tx.init(xc)
    n = 0
    while True:
        p = float(probs(xc)[t])
        if p >= cfg.threshold:
            return np.asarray(xc), True, n, p
        if n == cfg.max_iter:
            return np.asarray(xc), False, n, p
        _, g = ce_grad(xc, t)
        g = g + cfg.l1_weight * jnp.sign(xc - x0)
        updates, state = tx.update(g, state)
        xc = jnp.clip(xc + updates, 0.0, 1.0)
        n += 1


def _compare(result, refs, atol=0.0):
    for i, (x_ref, ok, n, p) in enumerate(refs):
        assert bool(result.success[i]) == ok, f"query {i}: success"
        assert int(result.n_iter[i]) == n, f"query {i}: n_iter {int(result.n_iter[i])} vs {n}"
        np.testing.assert_allclose(np.asarray(result.x_cf[i]), x_ref, atol=atol, err_msg=f"q{i}")
        np.testing.assert_allclose(float(result.target_prob[i]), p, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- equivalence


def test_deduce_matches_reference_loop(trained, queries):
    model, density, _ = trained
    x, t = queries
    result = deduce(model, density, x, t, DEDUCE)
    refs = [reference_deduce(model, density, x[i], int(t[i]), DEDUCE) for i in range(len(x))]
    assert 0 < sum(r[1] for r in refs) < len(refs), "want both successes and failures"
    _compare(result, refs)


@pytest.mark.parametrize(
    "changes",
    [{"pixels": 3}, {"density_weight": 0.0}, {"density_weight": 0.5, "ce_weight": 2.0}],
    ids=["pixels3", "no-density", "weights"],
)
def test_deduce_variants_match_reference(trained, queries, changes):
    model, density, _ = trained
    x, t = queries
    cfg = dataclasses.replace(DEDUCE, max_iter=40, **changes)
    result = deduce(model, density, x[:6], t[:6], cfg)
    _compare(result, [reference_deduce(model, density, x[i], int(t[i]), cfg) for i in range(6)])


def test_jsma_matches_reference_loop(trained, queries):
    model, _, _ = trained
    x, t = queries
    result = jsma(model, x, t, JSMA)
    refs = [reference_jsma(model, x[i], int(t[i]), JSMA) for i in range(len(x))]
    assert 0 < sum(r[1] for r in refs) < len(refs)
    _compare(result, refs)


def test_wachter_matches_reference_loop(trained, queries):
    """A continuous search: trajectories agree to float tolerance, so compare them over a fixed
    number of steps (an unreachable threshold), where a rounding difference cannot move a stop."""
    model, _, _ = trained
    x, t = queries
    cfg = dataclasses.replace(WACHTER, threshold=1.01, max_iter=25)
    result = wachter(model, x, t, cfg)
    refs = [reference_wachter(model, x[i], int(t[i]), cfg) for i in range(len(x))]
    _compare(result, refs, atol=2e-5)
    # With the usual threshold most queries stop early, at (nearly) the reference's iteration.
    result = wachter(model, x, t, WACHTER)
    refs = [reference_wachter(model, x[i], int(t[i]), WACHTER) for i in range(len(x))]
    assert sum(r[1] for r in refs) > len(refs) // 2
    assert np.array_equal(np.asarray(result.success), [r[1] for r in refs])
    assert np.max(np.abs(np.asarray(result.n_iter) - [r[2] for r in refs])) <= 1


@pytest.mark.parametrize("method", ["deduce", "jsma", "wachter"])
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
    # Identical decisions and counterfactuals; probabilities to rounding (batch of 12 vs 5).
    for field in ("x_cf", "success", "n_iter"):
        np.testing.assert_array_equal(getattr(batch, field), getattr(pooled, field), field)
    np.testing.assert_allclose(batch.target_prob, pooled.target_prob, rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(batch.extras), jax.tree.leaves(pooled.extras), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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
    assert not np.any(np.asarray(r.success[7:]))
    assert np.all(np.asarray(r.n_iter[7:]) == 0)


# ----------------------------------------------------------------------------- contracts


def test_target_already_reached_returns_at_once(trained, mnist_test):
    model, density, _ = trained
    x = mnist_test.images[:16]
    pred = np.asarray(jnp.argmax(model.logits(x), -1))
    p = np.asarray(jax.nn.softmax(model.logits(x)))[np.arange(16), pred]
    keep = p >= 0.5
    for result in (deduce(model, density, x, pred, DEDUCE), jsma(model, x, pred, JSMA)):
        assert np.all(np.asarray(result.success)[keep])
        assert np.all(np.asarray(result.n_iter)[keep] == 0)
        np.testing.assert_array_equal(np.asarray(result.x_cf)[keep], x[keep])


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


def test_function_classifier_and_user_module(trained, queries):
    """Any object offering the protocol works: a wrapped function or a user's own NNX module."""
    model, density, _ = trained
    x, t = queries
    graphdef, state = nnx.split(model)

    def logits_fn(s, xb):
        return nnx.merge(graphdef, s).logits(xb)

    clf = FunctionClassifier(logits_fn, state, input_shape=(28, 28, 1))
    a = jsma(clf, x[:4], t[:4], JSMA)
    b = jsma(model, x[:4], t[:4], JSMA)
    np.testing.assert_array_equal(np.asarray(a.x_cf), np.asarray(b.x_cf))

    class Linear(nnx.Module):  # a user's own module with the protocol
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


# ----------------------------------------------------------------------------- bad input


def _bad_cases(x, t):
    return [
        ("rank", x[0], t[:1], ValueError, "rank"),
        ("size", np.zeros((2, 32, 32, 1), np.float32), t[:2], ValueError, "shape"),
        ("range", x * 2.0 + 0.5, t, ValueError, "lie in"),
        ("nan", np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), t, ValueError, "NaN"),
        ("inf", np.full_like(x, np.inf), t, ValueError, "NaN or inf"),
        ("target_high", x, np.full_like(t, 10), ValueError, "outside"),
        ("target_low", x, np.full_like(t, -1), ValueError, "outside"),
        ("target_float", x, t.astype(np.float32), TypeError, "integer"),
        ("empty", x[:0], t[:0], ValueError, "empty"),
        ("length", x, t[:3], ValueError, "one per query"),
        ("strings", np.array([["a"]]), t[:1], TypeError, "numeric"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_bad_inputs_raise_before_compiling(trained, queries, case):
    model, density, _ = trained
    x, t = queries
    name, xb, tb, err, match = _bad_cases(x, t)[case]
    before = solve_jit._cache_size()
    with pytest.raises(err, match=match):
        deduce(model, density, xb, tb, DEDUCE)
    with pytest.raises(err, match=match):
        jsma(model, xb, tb, JSMA)
    with pytest.raises(err, match=match):
        wachter(model, xb, tb, WACHTER)
    assert solve_jit._cache_size() == before, name


def test_density_with_wrong_number_of_classes(trained, queries):
    from jaxcf.density import fit_gaussians

    model, _, _ = trained
    x, t = queries
    feats = np.asarray(model.features(x))
    wrong = fit_gaussians(np.concatenate([feats] * 3), np.arange(36) % 3, num_classes=3)
    with pytest.raises(ValueError, match="classes"):
        deduce(model, wrong, x, t % 3, DEDUCE)
    with pytest.raises(TypeError, match="log_prob"):
        deduce(model, object(), x, t, DEDUCE)


def test_classifier_without_features_is_a_clear_error(queries):
    x, t = queries
    clf = FunctionClassifier(lambda p, xb: xb.reshape(xb.shape[0], -1) @ p, jnp.zeros((784, 10)))
    with pytest.raises(TypeError, match="features"):
        deduce(clf, None, x, t, DEDUCE)
    with pytest.raises(TypeError, match="logits"):
        jsma(object(), x, t, JSMA)
