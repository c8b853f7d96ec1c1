"""The latent-space searches (REVISE, xGEMs, AIP, AIP_R) beyond the contract table: configs,
model and input checks, and the published update rules step by step."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxcf.core import FunctionClassifier, targets
from jaxcf.methods import (
    AIPConfig,
    AIPRandomConfig,
    MethodSpec,
    REVISEConfig,
    XGEMsConfig,
    aip,
    aip_random,
    make,
    method_names,
    revise,
    xgems,
)
from jaxcf.methods._latent import l1_distance, safe_norm
from tests.conftest import TinyAttributeModel, tiny_attribute_model, tiny_vae

B = 6


def _linear_logits(w, x):
    return x.reshape(x.shape[0], -1) @ w


@pytest.fixture(scope="module")
def classifier():
    """A random linear 10-class classifier of 28x28 digits (fast; it need not be good)."""
    w = jax.random.normal(jax.random.key(5), (784, 10)) * 0.2
    return FunctionClassifier(_linear_logits, w, input_shape=(28, 28, 1), domain=(0.0, 1.0))


@pytest.fixture(scope="module")
def batch(mnist_test):
    return np.asarray(mnist_test.images[:B]), np.arange(B, dtype=np.int32) % 10


def _run_steps(search, x, t, n):
    """The states of ``n`` steps of a search from its start (compiled once)."""
    step = jax.jit(lambda s, st, tt: s.step(st, tt))
    states = [jax.jit(lambda s, xx, tt, k: s.init(xx, tt, k))(search, x, t, _keys(len(x)))]
    for _ in range(n):
        states.append(step(search, states[-1], t)[2])
    return states


def _keys(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "cls, bad",
    [
        (REVISEConfig, {"optimizer": "rmsprop"}),
        (REVISEConfig, {"learning_rate": 0.0}),
        (REVISEConfig, {"distance_weight": -1.0}),
        (REVISEConfig, {"max_iter": 0}),
        (REVISEConfig, {"threshold": 1.5}),
        (XGEMsConfig, {"tolerance": 0.0}),
        (XGEMsConfig, {"learning_rate": float("nan")}),
        (AIPConfig, {"beta": 0.0}),
        (AIPConfig, {"beta": 1.1}),
        (AIPConfig, {"mu": 0.0}),
        (AIPConfig, {"gamma": -3.0}),
        (AIPConfig, {"alpha": -0.5}),
        (AIPConfig, {"optimizer": "momentum"}),
        (AIPConfig, {"max_iter": 0}),
        (AIPConfig, {"step_scale": 0.0}),
        (AIPConfig, {"schedule": (4.0, -1.0)}),
        (AIPConfig, {"schedule": "4"}),
        (AIPRandomConfig, {"mu": -1.0}),
        (AIPRandomConfig, {"beta": 2.0}),
        (AIPRandomConfig, {"max_iter": 1.5}),
    ],
)
def test_configs_refuse_impossible_values(cls, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        cls(**bad)


def test_published_settings_are_the_defaults():
    assert dataclasses.astuple(AIPConfig())[:5] == (1.5, 0.9, 2.0, 3.0, "sgd")
    assert AIPConfig().max_iter == 500
    assert REVISEConfig().distance_weight == 1.0


def test_registry_builds_each_method_from_its_resources(classifier):
    assert {"revise", "xgems", "aip", "aip_random"} <= set(method_names())
    vae, model = tiny_vae(), tiny_attribute_model()
    for name in ("revise", "xgems"):
        assert make(name, classifier=classifier, vae=vae).config.max_iter == 1000
        with pytest.raises(ValueError, match="needs a 'vae'"):
            make(name, classifier=classifier, attribute_model=model)
    for name in ("aip", "aip_random"):
        assert make(name, classifier=classifier, attribute_model=model).config.max_iter == 500
        with pytest.raises(ValueError, match="needs a 'attribute_model'"):
            make(name, classifier=classifier, vae=vae)
    with pytest.raises(TypeError, match="takes a REVISEConfig"):
        MethodSpec("revise", XGEMsConfig())
    with pytest.raises(TypeError, match="takes a AIPRandomConfig"):
        MethodSpec("aip_random", AIPConfig())
    spec = MethodSpec("xgems", resources={"vae": "faces_vae"})
    assert make(spec, classifier=classifier, faces_vae=vae).search.vae is vae


# ----------------------------------------------------------------------------- models and inputs


class _Renamed(struct.PyTreeNode):
    """A model with some declarations or methods overridden (for the bad-model checks)."""

    inner: object
    overrides: dict = struct.field(pytree_node=False, default_factory=dict)

    def __getattr__(self, name):
        if name in ("inner", "overrides") or name.startswith("__"):
            raise AttributeError(name)
        if name in self.overrides:
            return self.overrides[name]
        return getattr(self.inner, name)


def test_models_that_do_not_fit_are_refused_before_compiling(classifier):
    vae, model = tiny_vae(), tiny_attribute_model()
    cases = [
        ("revise", {"vae": _Renamed(vae, {"image_shape": (32, 32, 1)})}, ValueError, "32, 32, 1"),
        ("xgems", {"vae": _Renamed(vae, {"image_shape": (28, 28, 3)})}, ValueError, "28, 28, 3"),
        ("revise", {"vae": _Renamed(vae, {"latent_dim": 5})}, ValueError, "latent_dim 5"),
        ("xgems", {"vae": _Renamed(vae, {"latent_dim": "8"})}, TypeError, "latent_dim"),
        ("revise", {"vae": _Renamed(vae, {"decode": None})}, TypeError, "decode"),
        ("revise", {"vae": _Renamed(vae, {"image_shape": (28, 28)})}, TypeError, "image_shape"),
        (
            "revise",
            {"vae": _Renamed(vae, {"decode": lambda z: vae.decode(z)[:, :14]})},
            ValueError,
            "VAE.decode gives images",
        ),
        ("aip", {"attribute_model": _Renamed(model, {"num_attributes": 4})}, ValueError, "4"),
        (
            "aip",
            {"attribute_model": _Renamed(model, {"attribute_names": ("a", "b")})},
            ValueError,
            "names 2 attributes",
        ),
        ("aip_random", {"attribute_model": _Renamed(model, {"latent_dim": 9})}, ValueError, "9"),
        (
            "aip",
            {"attribute_model": _Renamed(model, {"attribute_range": (1.0, 0.0)})},
            ValueError,
            "attribute_range",
        ),
        ("aip", {"attribute_model": _Renamed(model, {"attributes": None})}, TypeError, "attrib"),
        ("aip", {"attribute_model": vae}, TypeError, "attributes"),
        (
            "aip_random",
            {"attribute_model": _Renamed(model, {"image_shape": (32, 32, 1)})},
            ValueError,
            "classifier",
        ),
    ]
    for name, res, err, match in cases:
        with pytest.raises(err, match=match):
            make(name, classifier=classifier, **res)


@pytest.mark.parametrize("name", ["revise", "xgems", "aip", "aip_random"])
def test_bad_queries_raise_clear_errors(classifier, batch, name):
    x, t = batch
    res = {"vae": tiny_vae()} if name in ("revise", "xgems") else {}
    res.setdefault("attribute_model", tiny_attribute_model())
    explainer = make(name, classifier=classifier, **res)
    nan = x.copy()
    nan[0, 3, 3, 0] = np.nan
    for xb, tb, err, match in [
        (nan, t, ValueError, "NaN"),
        (x * 2.0 - 0.5, t, ValueError, r"\[0.0, 1.0\]"),
        (np.zeros((B, 32, 32, 1), np.float32), t, ValueError, "32, 32, 1"),
        (np.repeat(x, 3, axis=-1), t, ValueError, "28, 28, 3"),
        (x, t[:2], ValueError, "one entry per query"),
        (x, np.full(B, 10, np.int32), ValueError, "outside"),
    ]:
        with pytest.raises(err, match=match):
            explainer.check(xb, tb)
    soft = np.full((B, 10), 0.1, np.float32)
    assert explainer.check(x, soft)[1].shape == (B, 10)  # every kind of target


# ----------------------------------------------------------------------------- REVISE and xGEMs


def _revise_objective(search, z, x, t):
    img = search.vae.decode(z)
    return targets.target_loss(search.classifier.logits(img), t) + l1_distance(img, x)


def test_sgd_on_the_published_objective_decreases_it(classifier, batch):
    """Plain gradient steps (the published optimiser) with distance weight 1 lower every
    query's REVISE objective; the code starts at the encoder's mean."""
    x, t = batch
    config = REVISEConfig(optimizer="sgd", learning_rate=1e-3, distance_weight=1.0)
    search = make("revise", config, classifier=classifier, vae=tiny_vae()).search
    x, t = search.check(x, t)
    states = _run_steps(search, x, t, 10)
    np.testing.assert_allclose(states[0].z, search.vae.encode(x), rtol=1e-6)
    values = np.stack([np.asarray(_revise_objective(search, s.z, x, t)) for s in states])
    assert np.all(np.diff(values, axis=0) <= 1e-5), values  # [steps + 1, B]
    assert np.all(values[-1] < values[0] - 1e-3)


def test_revise_and_xgems_return_the_decoded_code(classifier, batch):
    x, t = batch
    vae = tiny_vae()
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam
        for fn, cfg in ((revise, REVISEConfig(max_iter=5)), (xgems, XGEMsConfig(max_iter=5))):
            r = fn(classifier, vae, x, t, cfg)
            assert r.extras["z"].shape == (B, vae.latent_dim) == r.extras["z0"].shape
            np.testing.assert_allclose(r.x_cf, vae.decode(r.extras["z"]), atol=1e-6)
            np.testing.assert_allclose(r.extras["z0"], vae.encode(jnp.asarray(x)), atol=1e-6)
            moved = np.asarray(r.n_iter) > 0
            assert moved.any()
            assert np.all(np.any(r.extras["z"][moved] != r.extras["z0"][moved], axis=1))


def test_norm_and_l1_have_zero_gradient_at_the_start():
    z = jnp.ones((2, 3))
    g = jax.grad(lambda z: jnp.sum(safe_norm(z - jnp.ones((2, 3)))))(z)
    np.testing.assert_array_equal(g, 0.0)
    g = jax.grad(lambda z: jnp.sum(l1_distance(z, jnp.ones((2, 3)))))(z)
    np.testing.assert_array_equal(g, 0.0)
    d = jnp.asarray([[3.0, 4.0]])
    np.testing.assert_allclose(jax.grad(lambda d: safe_norm(d)[0])(d), [[0.6, 0.8]])


# ----------------------------------------------------------------------------- AIP


def test_aip_step_sizes_decay_by_beta(classifier, batch):
    """Each step moves the code by mu * beta^n and the attributes by gamma * beta^n times the
    objective's gradient (attributes clipped to [0, 1])."""
    x, t = batch
    cfg = AIPConfig(alpha=1.5, beta=0.5, mu=0.2, gamma=0.3)
    search = make("aip", cfg, classifier=classifier, attribute_model=tiny_attribute_model()).search
    x, t = search.check(x, t)
    states = _run_steps(search, x, t, 3)
    for n in range(3):
        s, nxt = states[n], states[n + 1]
        np.testing.assert_allclose(nxt.decay, np.full(B, cfg.beta ** (n + 1)), rtol=1e-6)
        gz, ga = jax.grad(lambda z, a, s=s: search.loss(z, a, s.z0, s.a0, t)[0], (0, 1))(s.z, s.a)
        step = cfg.beta**n
        np.testing.assert_allclose(nxt.z, s.z - cfg.mu * step * gz, atol=1e-5)
        np.testing.assert_allclose(nxt.a, np.clip(s.a - cfg.gamma * step * ga, 0.0, 1.0), atol=1e-5)
    assert np.any(states[1].a != states[0].a)  # the attributes move too


def test_aip_reports_codes_and_attributes(classifier, batch):
    x, t = batch
    model = tiny_attribute_model()
    r = aip(classifier, model, x, t, AIPConfig(max_iter=10))
    k, m = model.latent_dim, model.num_attributes
    assert r.extras["z"].shape == r.extras["z0"].shape == (B, k)
    assert r.extras["a"].shape == r.extras["a0"].shape == (B, m)
    np.testing.assert_allclose(r.extras["a0"], model.attributes(jnp.asarray(x)), atol=1e-6)
    np.testing.assert_allclose(r.x_cf, model.decode(r.extras["z"], r.extras["a"]), atol=1e-6)
    assert np.all((r.extras["a"] >= 0.0) & (r.extras["a"] <= 1.0))
    with jax.numpy_dtype_promotion("standard"):
        adam = aip(classifier, model, x, t, AIPConfig(max_iter=10, optimizer="adam"))
    assert not np.allclose(adam.extras["z"], r.extras["z"])


def test_a_stalled_aip_stops_with_the_result_of_all_its_updates(classifier, batch):
    """With steps too small to flip anything, the decaying updates round to nothing after a
    while: stopping there gives bitwise the result of spending all ``max_iter`` updates, in
    fewer of them."""
    x, t = batch
    model = tiny_attribute_model()
    cfg = AIPConfig(mu=1e-3, gamma=1e-3, threshold=0.999, max_iter=400)
    full = aip(classifier, model, x, t, dataclasses.replace(cfg, stop_when_stalled=False))
    short = aip(classifier, model, x, t, cfg)
    assert not full.success.any() and np.all(full.n_iter == 400)
    assert np.all(short.n_iter < 400) and np.all(short.n_iter > 50)  # every query stalled
    for name in ("x_cf", "success", "score"):
        np.testing.assert_array_equal(getattr(short, name), getattr(full, name), err_msg=name)
    for name in ("z", "a"):
        np.testing.assert_array_equal(short.extras[name], full.extras[name], err_msg=name)
    # Adam's moments keep moving, so its queries run to max_iter whatever the flag says.
    with jax.numpy_dtype_promotion("standard"):
        adam = aip(classifier, model, x, t, dataclasses.replace(cfg, optimizer="adam"))
    assert np.all(adam.n_iter == 400)


class _Overconfident(TinyAttributeModel):
    """Attribute "probabilities" outside [0, 1]."""

    def attributes(self, x):
        return 3.0 * super().attributes(x) - 1.0


def test_attributes_outside_the_range_are_clipped_into_it(classifier, batch):
    x, t = batch
    base = tiny_attribute_model()
    model = _Overconfident(base.vae, base.att, base.mix, base.attribute_names)
    raw = np.asarray(model.attributes(jnp.asarray(x)))
    assert raw.min() < 0.0 or raw.max() > 1.0
    r = aip(classifier, model, x, t, AIPConfig(max_iter=3))
    np.testing.assert_allclose(r.extras["a0"], np.clip(raw, 0.0, 1.0), atol=1e-6)


# ----------------------------------------------------------------------------- AIP_R


def test_aip_random_keeps_only_improving_proposals(classifier, batch):
    x, t = batch
    cfg = AIPRandomConfig(alpha=0.5, beta=0.95, mu=1.0, gamma=1.0)
    search = make(
        "aip_random", cfg, classifier=classifier, attribute_model=tiny_attribute_model()
    ).search
    x, t = search.check(x, t)
    states = _run_steps(search, x, t, 12)
    accepted = rejected = 0
    for s, nxt in zip(states[:-1], states[1:], strict=True):
        z, a, _ = search.propose(s)  # the proposal this step drew
        loss, logits = search.objective(z, a, s.z0, s.a0, t)
        better = np.asarray(loss < s.loss)
        took = np.asarray(nxt.accepted - s.accepted) == 1
        np.testing.assert_array_equal(took, better)
        np.testing.assert_allclose(nxt.z[took], z[took], atol=1e-6)
        np.testing.assert_array_equal(nxt.z[~took], s.z[~took])
        np.testing.assert_array_equal(nxt.a[~took], s.a[~took])
        assert np.all(np.asarray(nxt.loss) <= np.asarray(s.loss))
        # The kept objective and logits belong to the kept point.
        now, now_logits = search.objective(nxt.z, nxt.a, s.z0, s.a0, t)
        np.testing.assert_allclose(nxt.loss, now, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(nxt.logits, now_logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(nxt.decay, s.decay * cfg.beta, rtol=1e-6)
        accepted, rejected = accepted + took.sum(), rejected + (~took).sum()
    assert accepted > 0 and rejected > 0


def test_aip_random_proposals_have_the_step_lengths(classifier, batch):
    """Proposals are Gaussian with typical lengths mu * beta^n (code) and gamma * beta^n."""
    x, t = batch
    cfg = AIPRandomConfig(beta=0.5, mu=3.0, gamma=1e-6)
    model = tiny_attribute_model()
    search = make("aip_random", cfg, classifier=classifier, attribute_model=model).search
    x, t = search.check(jnp.repeat(jnp.asarray(x[:1]), 400, axis=0), jnp.repeat(t[:1], 400))
    state = search.init(x, t, _keys(400))
    z, _, _ = search.propose(state)
    lengths = np.linalg.norm(np.asarray(z - state.z), axis=1)
    assert abs(lengths.mean() - 3.0) < 0.3
    z, _, _ = search.propose(state.replace(decay=state.decay * 0.5))
    assert abs(np.linalg.norm(np.asarray(z - state.z), axis=1).mean() - 1.5) < 0.15


def test_aip_random_depends_on_the_key(classifier, batch):
    x, t = batch
    model = tiny_attribute_model()
    cfg = AIPRandomConfig(max_iter=8, alpha=0.1)
    one = aip_random(classifier, model, x, t, cfg, key=jax.random.key(1))
    again = aip_random(classifier, model, x, t, cfg, key=jax.random.key(1))
    other = aip_random(classifier, model, x, t, cfg, key=jax.random.key(2))
    np.testing.assert_array_equal(one.x_cf, again.x_cf)
    assert not np.array_equal(one.extras["z"], other.extras["z"])
    assert set(one.extras) == {"z", "z0", "a", "a0", "accepted"}
    assert np.all(np.asarray(one.extras["accepted"]) <= np.asarray(one.n_iter))
