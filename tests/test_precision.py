"""Mixed precision (:mod:`jaxcf.core`): a classifier run in bfloat16 behind a float32
interface, chosen per method through the registry, run through the runner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcf import runner
from jaxcf.core import FunctionClassifier, MixedPrecision, as_pure, with_precision
from jaxcf.methods import DeDUCEConfig, JSMAConfig, MethodSpec, make
from jaxcf.models import MLPConfig, build, fit_gaussians, load_classifier


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
    assert all(a.dtype == jnp.bfloat16 for a in _float_leaves(half))
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
