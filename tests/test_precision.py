"""Mixed precision (:mod:`jaxcf.core`): a classifier run in bfloat16 behind a float32
interface, chosen per method through the registry, run through the runner; the float32
classifier decides success (every reported success is a float32 success)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcf import runner
from jaxcf.core import (
    FunctionClassifier,
    MixedPrecision,
    as_pure,
    decision_classifier,
    with_precision,
)
from jaxcf.evaluation import metrics
from jaxcf.methods import (
    AIPConfig,
    DeDUCEConfig,
    FGSMConfig,
    JSMAConfig,
    MethodSpec,
    WachterConfig,
    XGEMsConfig,
    make,
    solve,
    solve_pool,
)
from jaxcf.methods._search import default_keys, on_rows
from jaxcf.models import MLPConfig, build, fit_gaussians, load_classifier
from tests.conftest import tiny_attribute_model, tiny_vae


@pytest.fixture(scope="module")
def shipped():
    """The shipped width-32 ResNet-18 (weights already bfloat16-representable)."""
    model, density, _ = load_classifier("bundled:demo_resnet_w32")
    return model, density


@pytest.fixture(scope="module")
def tiny(mnist_test):
    """A random-feature MLP whose output layer is fitted by ridge regression on 1,000 test
    images (about 60% accurate, in milliseconds), a Gaussian density on its features, and 8
    queries aimed at their runner-up class: DeDUCE solves some within 30 steps, not all."""
    model = build(MLPConfig(hidden=64), seed=0)
    model.eval()
    images, labels = np.asarray(mnist_test.images[:1000]), np.asarray(mnist_test.labels[:1000])
    feats = np.asarray(model.features(images), np.float64)
    a = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
    w = np.linalg.solve(a.T @ a + 1e-2 * np.eye(a.shape[1]), a.T @ (8.0 * np.eye(10)[labels]))
    model.out.kernel[...] = jnp.asarray(w[:-1], jnp.float32)
    model.out.bias[...] = jnp.asarray(w[-1], jnp.float32)
    density = fit_gaussians(feats, labels, num_classes=10)
    x = images[:8]
    target = np.argsort(np.asarray(model.logits(x)), axis=-1)[:, -2].astype(np.int32)
    return model, density, x, target


def _float_leaves(tree):
    return [a for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)]


def test_outputs_are_float32_and_close_to_float32(shipped, mnist_test):
    model, _ = shipped
    x = jnp.asarray(mnist_test.images[:16])
    full, half = as_pure(model), with_precision(model, "bfloat16")
    assert isinstance(half, MixedPrecision)
    assert half.domain == (0.0, 1.0) and half.input_shape == (28, 28, 1)
    assert all(a.dtype == jnp.bfloat16 for a in _float_leaves(half.inner))
    # The float32 form rides along, to decide success: the model's own arrays.
    assert decision_classifier(half) is half.reference
    for a, b in zip(jax.tree.leaves(half.reference), jax.tree.leaves(full), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    ref = np.asarray(jax.jit(lambda m, x: m.logits(x))(full, x))

    @jax.jit
    def outputs(m, x):  # one program: compiling the ResNet is the test's main cost
        feats = m.features(x)
        grad = jax.grad(lambda x: jnp.sum(m.logits(x)[:, 3]))(x)
        return m.logits(x), feats, m.head(feats), grad

    out, feats, head, grad = outputs(half, x)
    assert out.dtype == feats.dtype == head.dtype == jnp.float32
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation); through 18
    # layers the logits drift by about 1% of their range, never enough to move a prediction.
    scale = np.max(np.abs(ref))
    err = np.max(np.abs(np.asarray(out) - ref))
    assert 0 < err < 0.03 * scale  # nonzero: it really computed in bfloat16
    np.testing.assert_array_equal(np.argmax(np.asarray(out), -1), np.argmax(ref, -1))
    np.testing.assert_allclose(np.asarray(head), np.asarray(out), atol=0.03 * scale)
    # The gradient with respect to the input comes back float32 (a search's iterate dtype).
    assert grad.dtype == jnp.float32 and grad.shape == x.shape


def test_only_float_leaves_are_cast():
    params = {"w": jnp.ones((4, 3)), "scale": jnp.asarray(2, jnp.int32)}
    clf = FunctionClassifier(lambda p, x: (x @ p["w"]) * p["scale"].astype(x.dtype), params)
    half = with_precision(clf, "bfloat16")
    assert half.inner.params["w"].dtype == jnp.bfloat16
    assert half.inner.params["scale"].dtype == jnp.int32
    out = half.logits(jnp.ones((2, 4)))
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, np.full((2, 3), 8.0))
    assert clf.params["w"].dtype == jnp.float32  # the user's classifier is untouched
    assert half.reference.params["w"].dtype == jnp.float32
    assert decision_classifier(clf) is clf
    assert with_precision(half, "bfloat16") is half
    assert with_precision(clf, "float32") is clf  # the default path changes nothing


@pytest.mark.parametrize("bad", ["float16", "bf16", "FLOAT32", jnp.bfloat16, None])
def test_bad_precision_names_raise(bad):
    clf = FunctionClassifier(lambda p, x: x @ p, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="precision must be one of"):
        with_precision(clf, bad)
    with pytest.raises(ValueError, match="precision must be one of"):
        MethodSpec("jsma", precision=bad)
    if bad is not None:  # make's None keeps the spec's precision
        with pytest.raises(ValueError, match="precision must be one of"):
            make("jsma", precision=bad, classifier=clf)


def test_rewrapping_at_another_precision_is_refused():
    half = with_precision(FunctionClassifier(lambda p, x: x @ p, jnp.ones((4, 3))), "bfloat16")
    with pytest.raises(ValueError, match="already computes in bfloat16"):
        with_precision(half, "float32")


def test_make_wraps_the_classifier_only_when_asked(tiny):
    model, density, _, _ = tiny
    assert not isinstance(make("jsma", classifier=model).search.classifier, MixedPrecision)
    half = make("deduce", DeDUCEConfig(), precision="bfloat16", classifier=model, density=density)
    assert isinstance(half.search.classifier, MixedPrecision)
    assert half.search.density.mean.dtype == jnp.float32  # only the classifier changes
    spec = MethodSpec("jsma", JSMAConfig(), precision="bfloat16")
    assert isinstance(make(spec, classifier=model).search.classifier, MixedPrecision)
    # A precision given to make overrides the spec's.
    assert not isinstance(
        make(spec, precision="float32", classifier=model).search.classifier, MixedPrecision
    )


def test_runner_runs_bfloat16_and_a_second_run_compiles_nothing(tiny, tmp_path):
    model, density, x, target = tiny
    spec = MethodSpec("deduce", DeDUCEConfig(max_iter=30), precision="bfloat16")
    config = runner.RunnerConfig(chunk_size=8, slots=4)

    def run(out_dir):
        explainer = make(spec, classifier=model, density=density)  # a fresh wrap each time
        return runner.run(explainer, x, target, out_dir, config=config, progress=False)

    first = run(tmp_path / "a")
    assert first.x_cf.dtype == np.float32 and first.success.any()
    assert np.all((first.x_cf >= 0) & (first.x_cf <= 1))
    compiled = runner.program_cache_size()
    second = run(tmp_path / "b")  # a new directory: computed again, with the same programs
    assert runner.program_cache_size() == compiled
    np.testing.assert_array_equal(second.x_cf, first.x_cf)
    np.testing.assert_array_equal(second.n_iter, first.n_iter)
    # The precision is part of the run's fingerprint: a float32 run cannot resume it.
    full = make(spec, precision="float32", classifier=model, density=density)
    with pytest.raises(ValueError, match="different arguments"):
        runner.run(full, x, target, tmp_path / "a", config=config, progress=False)


# ----------------------------------------------------------------- the float32 network decides


def _edge_logits(p, x):
    """Two classes; class 1's logit is ``s * (sum(x) - c)``."""
    s = p["s"] * (jnp.sum(x, axis=-1) - p["c"])
    return jnp.stack([jnp.zeros_like(s), s], axis=-1)


@pytest.fixture(scope="module")
def edge():
    """A classifier that bfloat16 misjudges by construction: its threshold ``c = 0.501``
    rounds to 0.5 in bfloat16 (spacing 2^-8 there), so at ``sum(x) = 0.5`` bfloat16 gives class
    1 probability exactly 0.5 (a success at threshold 0.5) and float32 ``sigmoid(-0.1)``."""
    params = {"s": jnp.float32(100.0), "c": jnp.float32(0.501)}
    clf = FunctionClassifier(_edge_logits, params, input_shape=(4,), domain=(0.0, 1.0))
    return clf, jnp.zeros((3, 4)), jnp.ones(3, jnp.int32)


def _deciding_in_bfloat16(search):
    """The same search with the bfloat16 network deciding too (no float32 reference)."""
    return search.replace(classifier=search.classifier.replace(reference=None))


def test_a_candidate_float32_rejects_keeps_searching(edge):
    clf, x, t = edge
    # JSMA steps of 0.25 on pixel 0 (every gradient ties, the lowest index wins): sum(x) goes
    # 0.25, 0.5, 0.75. bfloat16 alone stops at 0.5; with float32 deciding it goes on to 0.75.
    search = make("jsma", JSMAConfig(step=0.25), precision="bfloat16", classifier=clf).search
    pool = jax.jit(lambda s, x, t: solve_pool(s, x, t, slots=2, segment=1))
    for run in (jax.jit(solve), pool):
        checked, alone = run(search, x, t), run(_deciding_in_bfloat16(search), x, t)
        np.testing.assert_array_equal(alone.n_iter, [2, 2, 2])
        np.testing.assert_allclose(np.sum(np.asarray(alone.x_cf), -1), 0.5)
        assert np.all(alone.success) and not metrics.validity(clf, alone.x_cf, t).any()
        np.testing.assert_array_equal(checked.n_iter, [3, 3, 3])
        np.testing.assert_allclose(np.sum(np.asarray(checked.x_cf), -1), 0.75)
        assert np.all(checked.success) and metrics.validity(clf, checked.x_cf, t).all()
        # The score reported is float32's (sigmoid(100 * (0.75 - 0.501))).
        np.testing.assert_allclose(checked.score, 1 / (1 + np.exp(-24.9)), rtol=1e-6)
    # float32 itself: the same as the checked bfloat16 search.
    full = jax.jit(solve)(make("jsma", JSMAConfig(step=0.25), classifier=clf).search, x, t)
    np.testing.assert_array_equal(full.n_iter, [3, 3, 3])
    # A one-pass method reports the float32 verdict on its output (FGSM: every pixel + 0.125).
    keys = default_keys(3)
    call = jax.jit(lambda e, *a: e(*a))
    fgsm = make("fgsm", FGSMConfig(eps=0.125), precision="bfloat16", classifier=clf)
    assert not call(fgsm, x, t, keys).success.any()
    lax = fgsm.replace(classifier=fgsm.classifier.replace(reference=None))
    assert call(lax, x, t, keys).success.all()


def test_float32_searches_recheck_nothing(edge, tiny):
    clf, x, t = edge
    search = make("jsma", JSMAConfig(), classifier=clf).search
    state = search.init(x, t, default_keys(3))
    claimed, score = jnp.ones(3, bool), jnp.zeros(3)
    out = search.recheck(state, t, claimed, score)
    assert out[0] is claimed and out[1] is score  # the float32 program is traced unchanged
    half = _deciding_in_bfloat16(make("jsma", precision="bfloat16", classifier=clf).search)
    out = half.recheck(state, t, claimed, score)
    assert out[0] is claimed and out[1] is score


@pytest.mark.parametrize("count", [0, 1, 2, 3, 16])
def test_on_rows_computes_the_masked_rows_only(count):
    b = 16  # blocks of 2 rows: 0 masked rows skip, 1-2 gather, more take the whole batch
    a = jnp.arange(b, dtype=jnp.float32)
    rows = np.arange(b) if count == b else np.asarray([3, 7, 11][:count], int)
    mask = jnp.asarray(np.isin(np.arange(b), rows))
    fill = (jnp.full(b, -1.0), jnp.zeros(b, bool))
    out = jax.jit(
        lambda mask, a: on_rows(lambda r, s: (r * s["k"], r > 5), mask, (a, {"k": a}), fill)
    )(mask, a)
    np.testing.assert_array_equal(out[0], np.where(mask, a * a, -1.0))
    np.testing.assert_array_equal(out[1], np.asarray(mask) & (np.asarray(a) > 5))


@pytest.fixture(scope="module")
def bfloat16_cases(trained, queries):
    """Every method that takes a precision (the searches, FGSM, a latent search and AIP) on the
    shared trained CNN in bfloat16, on the 12 shared queries (the latent ones through the
    untrained tiny VAE and attribute model: their decodings reach some targets)."""
    model, density, _ = trained
    x, target = queries
    specs = {
        "deduce": (DeDUCEConfig(max_iter=80), {"density": density}),
        "jsma": (JSMAConfig(max_iter=80), {}),
        "wachter": (WachterConfig(max_iter=80), {}),
        "wachter_rounds": (WachterConfig(max_iter=30, rounds=2, patience=5, min_found=2), {}),
        "fgsm": (FGSMConfig(eps=0.1), {}),
        "xgems": (XGEMsConfig(max_iter=60, learning_rate=0.2), {"vae": tiny_vae()}),
        "aip": (AIPConfig(max_iter=60), {"attribute_model": tiny_attribute_model()}),
    }
    out = {}
    for name, (config, resources) in specs.items():
        method = name.split("_")[0]
        explainer = make(method, config, precision="bfloat16", classifier=model, **resources)
        xs, ts = explainer.check(x, target)
        keys = default_keys(len(xs))
        out[name] = (config, jax.jit(lambda e, *a: e(*a))(explainer, xs, ts, keys))
    return model, target, out


@pytest.mark.parametrize(
    "name", ["deduce", "jsma", "wachter", "wachter_rounds", "fgsm", "xgems", "aip"]
)
def test_every_bfloat16_success_is_a_float32_success(bfloat16_cases, name):
    model, target, out = bfloat16_cases
    config, result = out[name]
    probs = jax.nn.softmax(metrics.outputs(model, result.x_cf), axis=-1)
    p = np.asarray(probs)[np.arange(len(target)), target]
    success = np.asarray(result.success)
    if name != "fgsm":  # FGSM's single step flips few of these; the searches solve some
        assert success.any(), name
    assert np.all(p[success] >= config.threshold), (name, p[success])
    # The reported score of a success is the float32 network's target probability.
    np.testing.assert_allclose(np.asarray(result.score)[success], p[success], rtol=1e-5)
