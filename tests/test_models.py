"""Classifier zoo: protocol, config round trip, soft spectral norm, the custom-VJP convolution,
the bidirectional LSTM for series."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcf.models import (
    BiLSTMConfig,
    CNNConfig,
    MLPConfig,
    ResNetConfig,
    SpectralConv,
    StandardResNetConfig,
    build,
    config_from_dict,
    config_to_dict,
    operator_norm,
    refine_spectral_norms,
)
from jaxcf.models._conv import conv2d

CONFIGS = [
    MLPConfig(hidden=32),
    CNNConfig(channels=(4, 8), hidden=16),
    ResNetConfig(base_width=4, coeff=4.0),
    ResNetConfig(base_width=4, coeff=None),
    StandardResNetConfig(base_width=4),
    BiLSTMConfig(input_shape=(12, 2), num_classes=3, hidden=8),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-{getattr(c, 'coeff', '')}")
def test_protocol_and_eval_mode_purity(config):
    model = build(config)
    model.eval()
    x = jax.random.uniform(jax.random.key(0), (3, *config.input_shape))
    # Through nnx.jit, not eagerly: eager calls compile every op of the network on its own.
    logits, via_features = nnx.jit(lambda m, x: (m.logits(x), m.head(m.features(x))))(model, x)
    assert logits.shape == (3, config.num_classes)
    np.testing.assert_allclose(via_features, logits, rtol=1e-6)
    # Eval mode is pure: calling again under jit changes no state and gives the same output.
    state_before = jax.tree.map(np.asarray, nnx.state(model))
    graphdef, state = nnx.split(model)
    out = jax.jit(lambda s, xb: nnx.merge(graphdef, s).logits(xb))(state, x)
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(state_before), jax.tree.leaves(nnx.state(model)), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


def _abstract(config):
    """The model of ``config`` with shapes only (nothing initialised or compiled)."""
    return nnx.eval_shape(lambda: build(config))


def _output_shape(fn, model, shape):
    return nnx.eval_shape(lambda m: fn(m, jnp.zeros(shape)), model).shape


def test_resnet_matches_paper_layout():
    model = _abstract(ResNetConfig())  # the paper's width
    assert _output_shape(lambda m, x: m.features(x), model, (1, 28, 28, 1)) == (1, 512)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert 10_900_000 < n_params < 11_200_000  # ResNet-18 without 1x1 shortcut convs
    sides = [b.conv1.u.shape[1] for b in model.blocks]
    assert sides == [28, 28, 28, 14, 14, 7, 7, 4]  # the input side each block sees


def test_standard_resnet_matches_paper_baseline_layout():
    model = _abstract(StandardResNetConfig())
    assert _output_shape(lambda m, x: m.features(x), model, (2, 28, 28, 1)) == (2, 512)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    # torchvision's ResNet-18 (11.69M) with a 1-channel stem and a 10-class head.
    assert 11_150_000 < n_params < 11_200_000

    def sides(m, x):
        h = nnx.max_pool(m.stem(x), (3, 3), (2, 2), ((1, 1), (1, 1)))
        out = []
        for block in m.blocks:
            out.append(h.shape[1])
            h = block(h)
        return out

    seen = []
    nnx.eval_shape(lambda m: seen.extend(sides(m, jnp.zeros((2, 28, 28, 1)))), model)
    assert seen == [7, 7, 7, 4, 4, 2, 2, 1]  # the input side each block sees


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.kind)
def test_config_round_trip(config):
    assert config_from_dict(config_to_dict(config)) == config
    hash(config)  # usable as a static jit argument


@pytest.mark.parametrize(
    ("size", "stride", "pad", "side", "c_in", "c_out"),
    [
        (3, 1, 1, 28, 1, 4),
        (3, 2, 1, 28, 4, 8),
        (3, 2, 1, 7, 8, 8),
        (7, 2, 3, 28, 1, 8),  # the standard ResNet's stem
        (1, 2, 0, 7, 8, 16),  # its projection shortcut
    ],
)
def test_conv2d_custom_vjp_equals_lax(size, stride, pad, side, c_in, c_out):
    x = jax.random.normal(jax.random.key(0), (2, side, side, c_in))
    k = jax.random.normal(jax.random.key(1), (size, size, c_in, c_out))

    def ref(x, k):
        return jax.lax.conv_general_dilated(
            x,
            k,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    y, vjp = jax.vjp(lambda a, b: conv2d(a, b, stride, pad), x, k)
    y_ref, vjp_ref = jax.vjp(ref, x, k)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jax.random.normal(jax.random.key(2), y.shape)
    for a, b in zip(vjp(g), vjp_ref(g), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_spectral_norm_stays_below_coefficient():
    """Train a spectrally normalised ResNet on real MNIST; every conv's operator norm <= c."""
    from jaxcf.data import load_mnist

    coeff = 1.5  # small, so the bound is active for most layers
    model = build(ResNetConfig(base_width=4, coeff=coeff, blocks=(1, 1, 1, 1)))
    data = load_mnist("train")
    optimizer = nnx.Optimizer(model, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    model.train()
    for i in range(150):
        sl = slice(64 * i, 64 * (i + 1))
        step(model, optimizer, jnp.asarray(data.images[sl]), jnp.asarray(data.labels[sl]))
    model.eval()
    layers = [m for _, m in nnx.iter_graph(model) if isinstance(m, SpectralConv)]
    assert len(layers) == 9
    # One power iteration per step tracks the norm from below: a few percent over at most.
    assert max(operator_norm(layer) for layer in layers) <= coeff * 1.05
    refine_spectral_norms(model)  # what training does before saving
    norms = [operator_norm(layer) for layer in layers]
    assert max(norms) <= coeff * (1 + 1e-3), norms
    raw = [operator_norm(_unnormalised(layer)) for layer in layers]
    assert max(raw) > coeff, "the bound should have been active somewhere"


def _unnormalised(layer: SpectralConv) -> SpectralConv:
    copy = nnx.clone(layer)
    copy.coeff = 1e9  # rescaling never triggers
    return copy


# ----------------------------------------------------------------------------- BiLSTM


def test_bilstm_features_are_final_forward_and_backward_states():
    config = BiLSTMConfig(input_shape=(20, 3), num_classes=2, hidden=6)
    model = build(config)
    assert model.domain is None  # standardised series are unbounded
    x = jax.random.normal(jax.random.key(0), (4, 20, 3))
    features = model.features(x)
    assert features.shape == (4, 12)  # [B, 2 * hidden]
    assert float(jnp.max(jnp.abs(features))) < 1.0  # o * tanh(c): bounded
    np.testing.assert_allclose(model.head(features), model.logits(x), rtol=1e-6)
    # With the backward cell's weights set to the forward one's, reading x backwards is reading
    # the flipped series forwards: the two halves swap.
    nnx.update(model.backward, nnx.state(model.forward))
    ahead, back = np.split(np.asarray(model.features(x)), 2, axis=-1)
    flipped_ahead, flipped_back = np.split(np.asarray(model.features(x[:, ::-1])), 2, axis=-1)
    np.testing.assert_allclose(back, flipped_ahead, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ahead, flipped_back, rtol=1e-5, atol=1e-6)
    # The forward state has read the whole series: the first step still matters.
    nudged = x.at[:, 0].add(1.0)
    assert not np.allclose(np.split(np.asarray(model.features(nudged)), 2, -1)[0], ahead)


def test_bilstm_is_jittable_in_every_form():
    from jaxcf.core import as_pure

    model = build(BiLSTMConfig(hidden=8))  # the paper's (140, 1) series, 2 classes
    x = jax.random.normal(jax.random.key(1), (2, 140, 1))
    expected = model.logits(x)
    pure = as_pure(model, need_features=True)
    assert pure.input_shape == (140, 1) and pure.domain is None
    for out in (
        jax.jit(lambda p, xb: p.logits(xb))(pure, x),
        nnx.jit(lambda m, xb: m.logits(xb))(model, x),
        jax.jit(lambda xb: model.logits(xb))(x),  # a module captured by a plain transform
    ):
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    shape = jax.eval_shape(lambda xb: model.features(xb), jax.ShapeDtypeStruct(x.shape, x.dtype))
    assert shape.shape == (2, 16)
    grad = jax.grad(lambda xb: pure.logits(xb)[:, 1].sum())(x)  # what gradient methods take
    assert grad.shape == x.shape and bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.parametrize(
    "shape",
    [(2, 139, 1), (2, 140, 2), (2, 140), (140, 1), (2, 1, 140)],
    ids=["short", "channels", "no-channel-axis", "no-batch-axis", "channels-first"],
)
def test_bilstm_rejects_inputs_of_another_shape(shape):
    model = build(BiLSTMConfig(hidden=4))
    x = jnp.zeros(shape)
    message = r"BiLSTM takes series \[B, T, C\] = \[B, 140, 1\], got shape"
    for call in (model.logits, model.features, jax.jit(lambda xb: model.logits(xb))):
        with pytest.raises(ValueError, match=message):
            call(x)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (140,)},
        {"input_shape": (140, 0)},
        {"input_shape": (140.0, 1)},
        {"num_classes": 1},
        {"hidden": 0},
        {"hidden": True},
    ],
)
def test_bilstm_config_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError, match="BiLSTMConfig"):
        BiLSTMConfig(**kwargs)


@pytest.mark.standard_promotion  # optax's Adam
def test_bilstm_trains_saves_and_reloads_on_ecg5000(tmp_path):
    """train_and_evaluate / load_classifier take the series model unchanged (shape check,
    feature density on its final states, rebuilt from the stored config)."""
    from jaxcf.data import load_dataset
    from jaxcf.models import load_classifier
    from jaxcf.training import TrainConfig, train_and_evaluate

    try:
        test = load_dataset("ecg5000", "test")
    except FileNotFoundError:
        pytest.skip("no ECG5000 files")
    config = TrainConfig(
        model=BiLSTMConfig(hidden=8),
        dataset="ecg5000",
        optimizer="adam",
        learning_rate=1e-2,
        lr_boundaries=(),
        epochs=1,
        batch_size=128,
        train_examples=1024,
    )
    model, density, meta = train_and_evaluate(config, tmp_path)
    assert meta["data"]["input_shape"] == [140, 1] and meta["data"]["domain"] is None
    assert meta["data"]["class_names"] == ["normal", "abnormal"]
    assert meta["test_accuracy"] > 0.6  # 8 steps of a tiny network: well above chance
    loaded, loaded_density, _ = load_classifier(tmp_path / "checkpoint")
    x = jnp.asarray(test.inputs[:16])
    np.testing.assert_allclose(loaded.logits(x), model.logits(x), rtol=1e-6)
    features = loaded.features(x)
    assert features.shape == (16, 16)
    np.testing.assert_allclose(
        loaded_density.log_prob(features), density.log_prob(features), rtol=1e-6
    )
