"""Classifier zoo: protocol, config round trip, soft spectral norm, the custom-VJP convolution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcf.models import (
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
from jaxcf.models.conv import conv2d

CONFIGS = [
    MLPConfig(hidden=32),
    CNNConfig(channels=(4, 8), hidden=16),
    ResNetConfig(base_width=4, coeff=4.0),
    ResNetConfig(base_width=4, coeff=None),
    StandardResNetConfig(base_width=4),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-{getattr(c, 'coeff', '')}")
def test_protocol_and_eval_mode_purity(config):
    model = build(config)
    model.eval()
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    logits = model.logits(x)
    assert logits.shape == (3, 10)
    np.testing.assert_allclose(model.head(model.features(x)), logits, rtol=1e-6)
    # Eval mode is pure: calling again under jit changes no state and gives the same output.
    state_before = jax.tree.map(np.asarray, nnx.state(model))
    graphdef, state = nnx.split(model)
    out = jax.jit(lambda s, xb: nnx.merge(graphdef, s).logits(xb))(state, x)
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(state_before), jax.tree.leaves(nnx.state(model)), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_resnet_matches_paper_layout():
    model = build(ResNetConfig())  # the paper's width
    x = jnp.zeros((1, 28, 28, 1))
    assert model.features(x).shape == (1, 512)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert 10_900_000 < n_params < 11_200_000  # ResNet-18 without 1x1 shortcut convs
    sides = [b.conv1.u[...].shape[1] for b in model.blocks]
    assert sides == [28, 28, 28, 14, 14, 7, 7, 4]  # the input side each block sees


def test_standard_resnet_matches_paper_baseline_layout():
    model = build(StandardResNetConfig())
    x = jnp.zeros((2, 28, 28, 1))
    assert model.features(x).shape == (2, 512)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    # torchvision's ResNet-18 (11.69M) with a 1-channel stem and a 10-class head.
    assert 11_150_000 < n_params < 11_200_000
    h = nnx.max_pool(model.stem(x), (3, 3), (2, 2), ((1, 1), (1, 1)))
    sides = []
    for block in model.blocks:
        sides.append(h.shape[1])
        h = block(h)
    assert sides == [7, 7, 7, 4, 4, 2, 2, 1]  # the input side each block sees


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
