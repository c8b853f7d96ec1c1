"""Attribution baselines (gradient saliency, Grad-CAM / HiResCAM) and their figure."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcf.core import FunctionClassifier, as_pure
from jaxcf.evaluation import attribution
from jaxcf.models import (
    BiLSTMConfig,
    MLPConfig,
    ResNetConfig,
    StandardResNetConfig,
    build,
)
from jaxcf.models._classifiers import avg_pool
from jaxcf.report import DIVERGING_CMAP, SEQUENTIAL_CMAP, attribution_grid


@pytest.fixture(scope="module")
def batch(trained, mnist_test):
    """64 real test images and the trained CNN's predicted class for each."""
    model, _, _ = trained
    x = np.asarray(mnist_test.images[:64])
    pred = np.argmax(np.asarray(model.logits(x)), axis=-1).astype(np.int32)
    return x, pred


def _bilinear(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix of bilinear interpolation with half-pixel centres, clamped at
    the edges (a hand-written counterpart of ``jax.image.resize(..., "bilinear")``)."""
    centre = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    lo = np.floor(centre).astype(int)
    frac = centre - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, np.clip(lo, 0, n_in - 1)), 1.0 - frac)
    np.add.at(m, (rows, np.clip(lo + 1, 0, n_in - 1)), frac)
    return m


def _random_model(config, seed: int):
    """``build(config)`` in eval mode with random weights drawn by numpy: the same modules and
    parameter shapes, without compiling one random program per kernel shape as ``build``'s
    initialisers do (seconds per ResNet on a shared CPU). He-normal kernels, small random
    biases, identity batch norm."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: build(config)))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if "['var']" in name or "['scale']" in name:
            value = np.ones(leaf.shape)
        elif "['mean']" in name:
            value = np.zeros(leaf.shape)
        elif len(leaf.shape) == 1:
            value = rng.normal(0.0, 0.1, leaf.shape)
        else:
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))
    model.eval()
    return model


@pytest.fixture(scope="module")
def resnet():
    """A small random ResNet18 (DDU layout, no spectral norm): its head is a global average
    pool and a linear layer."""
    return _random_model(ResNetConfig(base_width=4, blocks=(1, 1, 1, 1), coeff=None), 2)


def test_feature_map_hook_reproduces_the_logits(trained, resnet):
    standard = _random_model(StandardResNetConfig(base_width=4, blocks=(1, 1, 1, 1)), 1)
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))

    @jax.jit
    def run(pure, x):
        a = pure.feature_map(x)
        return a, pure.map_head(a), pure.logits(x)

    # side of the feature map, and parameter count (measured before the hook was added: the
    # hook adds none, so checkpoints load as before)
    for model, side, n_params in (
        (trained[0], 14, None),
        (resnet, 4, 19_046),
        (standard, 1, 19_990),
    ):
        a, from_map, logits = run(as_pure(model), x)  # eval mode
        assert a.ndim == 4 and a.shape[:3] == (3, side, side)
        assert np.all(np.isfinite(logits)) and np.std(logits) > 0
        np.testing.assert_allclose(from_map, logits, rtol=1e-5, atol=1e-6)
        if n_params is not None:
            assert sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == n_params
    # A 1x1 map (StandardResNet18 on 28x28) gives a constant Grad-CAM map: 1 or 0 everywhere.
    cam = np.asarray(attribution.grad_cam(standard, x, np.array([0, 1, 2], np.int32)))
    assert np.all(cam == cam[:, :1, :1]) and set(np.unique(cam)) <= {0.0, 1.0}


def test_saliency_of_the_predicted_class_lies_on_the_stroke(trained, batch):
    """On real MNIST digits, |d logit / d x| of the predicted class is several times larger per
    pixel on the ink (x > 0.5) than on the blank background (x == 0), for every query, and the
    ink (about 12% of the pixels) holds a far larger share of the saliency mass."""
    model, _, _ = trained
    x, pred = batch
    s = np.asarray(attribution.saliency(model, x, pred))
    assert s.shape == (64, 28, 28) and s.dtype == np.float32 and np.all(s >= 0)
    ink, blank = x[..., 0] > 0.5, x[..., 0] == 0.0
    per_pixel_ratio = np.array([s[i][ink[i]].mean() / s[i][blank[i]].mean() for i in range(64)])
    assert per_pixel_ratio.min() > 3.0, per_pixel_ratio.min()  # measured: min 5.2, median 9
    mass_on_ink = (s * ink).sum(axis=(1, 2)) / s.sum(axis=(1, 2))
    assert np.median(mass_on_ink) > 2.5 * ink.mean()  # measured: 0.45 against 0.12
    # target=None explains the predicted class.
    np.testing.assert_array_equal(attribution.saliency(model, x), s)


def test_batched_equals_a_per_query_loop_and_user_jit(trained, batch):
    model, _, _ = trained
    x, pred = batch
    x, target = x[:5], (pred[:5] + np.arange(5, dtype=np.int32)) % 10  # not only predictions
    calls = {
        "gradient": lambda xb, tb: attribution.saliency(model, xb, tb),
        "gradient_x_input": lambda xb, tb: attribution.saliency(
            model, xb, tb, method="gradient_x_input"
        ),
        "grad_cam": lambda xb, tb: attribution.grad_cam(model, xb, tb),
        "hires_cam": lambda xb, tb: attribution.grad_cam(model, xb, tb, weighting="elementwise"),
    }
    for name, call in calls.items():
        batched = np.asarray(call(x, target))
        looped = np.concatenate(
            [np.asarray(call(x[i : i + 1], target[i : i + 1])) for i in range(5)]
        )
        np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6, err_msg=name)
    # The unchecked bodies run inside a user's jit on the pure classifier.
    pure, xj, tj = as_pure(model), jnp.asarray(x), jnp.asarray(target, jnp.int32)
    np.testing.assert_allclose(
        jax.jit(attribution.grad_cam_unchecked)(pure, xj, tj),
        attribution.grad_cam(model, x, target),
        rtol=1e-6,
    )
    # gradient x input is signed: it credits ink that supports a class and ink that opposes it.
    gxi = np.asarray(calls["gradient_x_input"](x, target))
    assert gxi.min() < 0 < gxi.max()


def test_grad_cam_matches_a_hand_written_reference(trained, batch):
    model, _, _ = trained
    x, pred = batch
    maps = {
        w: np.asarray(attribution.grad_cam(model, x, pred, weighting=w))
        for w in ("mean", "elementwise")
    }
    for w, m in maps.items():
        assert m.shape == (64, 28, 28) and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
        top = m.max(axis=(1, 2))
        # Every map is scaled to a maximum of 1, except all-zero ones (guarded, not NaN).
        assert np.all((np.abs(top - 1.0) <= 1e-6) | (top == 0.0)), w
    # Behind a dense head the Grad-CAM means cancel: some maps are all zero; HiResCAM's are not.
    assert (maps["mean"].max(axis=(1, 2)) == 0).any()
    assert (maps["elementwise"].max(axis=(1, 2)) > 0.999).all()

    # One query, written out from the model's layers (not feature_map / map_head).
    i = int(np.argmax(maps["mean"].max(axis=(1, 2)) > 0.999))
    xi, t = jnp.asarray(x[i : i + 1]), int(pred[i])
    a = nnx.relu(model.conv2(avg_pool(nnx.relu(model.conv1(xi)), 2)))  # [1, 14, 14, K]

    def logit(a):
        flat = avg_pool(a, 2).reshape(1, -1)
        return model.out(nnx.relu(model.fc(flat)))[0, t]

    grad, act = np.asarray(jax.grad(logit)(a))[0], np.asarray(a)[0]
    up = _bilinear(28, 14)
    for w, cam in (
        ("mean", np.maximum(act @ grad.mean(axis=(0, 1)), 0.0)),
        ("elementwise", np.maximum((grad * act).sum(axis=-1), 0.0)),
    ):
        ref = up @ cam @ up.T
        np.testing.assert_allclose(maps[w][i], ref / ref.max(), atol=2e-5, err_msg=w)


def test_grad_cam_weightings_agree_behind_global_pooling(resnet):
    """A global average pool then a linear layer gives every position the same gradient."""
    model = resnet
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    target = np.array([0, 3, 7], np.int32)
    mean = attribution.grad_cam(model, x, target)
    np.testing.assert_allclose(
        mean, attribution.grad_cam(model, x, target, weighting="elementwise"), atol=1e-5
    )
    assert mean.shape == (3, 28, 28) and float(jnp.max(mean)) > 0.999


def test_bad_inputs_raise_clear_errors(trained, batch):
    model, _, _ = trained
    x, pred = batch
    x, pred = x[:4], pred[:4]
    with pytest.raises(ValueError, match=r"\[B, H, W, C\].*x\[None\]"):
        attribution.saliency(model, x[0], pred[:1])
    nan = x.copy()
    nan[1, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attribution.grad_cam(model, nan, pred)
    with pytest.raises(ValueError, match=r"target 10 is outside \[0, 10\)"):
        attribution.saliency(model, x, np.array([0, 1, 2, 10], np.int32))
    with pytest.raises(ValueError, match="one entry per query"):
        attribution.grad_cam(model, x, pred[:3])
    with pytest.raises(TypeError, match="class targets"):
        attribution.saliency(model, x, np.full((4, 10), 0.1, np.float32))
    with pytest.raises(ValueError, match="per-query shape"):
        attribution.saliency(model, np.zeros((2, 32, 32, 1), np.float32), 0)
    with pytest.raises(ValueError, match="method must be one of"):
        attribution.saliency(model, x, pred, method="smoothgrad")
    with pytest.raises(ValueError, match="weighting must be one of"):
        attribution.grad_cam(model, x, pred, weighting="max")

    mlp = _random_model(MLPConfig(hidden=8), 3)
    lstm = _random_model(BiLSTMConfig(input_shape=(20, 1), num_classes=3, hidden=4), 4)
    fn = FunctionClassifier(lambda p, xb: xb.reshape(len(xb), -1) @ p, jnp.zeros((784, 10)))
    for clf, name in ((mlp, "MLP"), (lstm, "BiLSTM"), (fn, "FunctionClassifier")):
        with pytest.raises(TypeError, match=rf"classifier {name} has no feature_map"):
            attribution.grad_cam(clf, x, pred)
    # Saliency needs only logits: the MLP and a plain function are fine.
    assert attribution.saliency(mlp, x, pred).shape == (4, 28, 28)
    assert attribution.saliency(fn, x, pred).shape == (4, 28, 28)


def test_second_call_of_the_same_shape_does_not_recompile(trained, batch):
    model, _, _ = trained
    x, pred = batch
    attribution.saliency(model, x[:8], pred[:8])
    attribution.grad_cam(model, x[:8], pred[:8])
    compiled = attribution._saliency_jit._cache_size(), attribution._grad_cam_jit._cache_size()
    attribution.saliency(model, x[8:16], pred[8:16])
    attribution.grad_cam(model, x[8:16], (pred[8:16] + 1) % 10)
    after = attribution._saliency_jit._cache_size(), attribution._grad_cam_jit._cache_size()
    assert after == compiled


def test_attribution_grid_writes_a_png_with_a_colormap_per_kind_of_map(trained, batch, tmp_path):
    model, _, _ = trained
    x, pred = batch
    x, pred = x[:3], pred[:3]
    diff = np.clip(x + np.where(x > 0.5, -0.4, 0.3), 0.0, 1.0) - x  # signed, [B, H, W, 1]
    maps = {
        "saliency": attribution.saliency(model, x, pred),
        "Grad-CAM": attribution.grad_cam(model, x, pred),
        "counterfactual difference": diff,
    }
    path = tmp_path / "attribution.png"
    fig = attribution_grid(path, x, maps, pred=pred, target=pred, limits={"Grad-CAM": 1.0})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = [ax for ax in fig.axes if ax.images][: 3 * 4]  # 3 rows x (image + 3 maps)
    for row in range(3):
        sal, cam, dif = (cells[4 * row + j].images[-1] for j in (1, 2, 3))
        assert sal.get_cmap().name == SEQUENTIAL_CMAP and sal.get_clim() == (0.0, 1.0)
        assert cam.get_cmap().name == SEQUENTIAL_CMAP and cam.get_clim() == (0.0, 1.0)
        assert dif.get_cmap().name == DIVERGING_CMAP and dif.get_clim() == (-1.0, 1.0)
        np.testing.assert_allclose(np.abs(dif.get_array()).max(), 1.0)  # scaled per query
    with pytest.raises(ValueError, match="declared non-negative"):
        attribution_grid(path, x, maps, signed={"counterfactual difference": False})
    with pytest.raises(ValueError, match="expected"):
        attribution_grid(path, x, {"saliency": np.zeros((3, 14, 14))})
