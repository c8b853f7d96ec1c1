"""Convolutional VAEs: configs that validate, shapes at the project's image sizes, the loss
against its closed forms, a tiny VAE trained briefly on real digits that reconstructs held-out
ones clearly better than the mean image, reproducible and resumable training, and loading as a
pure, jittable model that refuses checkpoints it does not match."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcf.models import (
    CELEBA_VAE,
    MNIST_VAE,
    VAE,
    VAEConfig,
    VAEModel,
    checkpoint,
    gaussian_kl,
    load_vae,
)
from jaxcf.training import VAETask, VAETrainConfig, fit, reconstruction_nll, train_vae

pytestmark = pytest.mark.standard_promotion  # optax's Adam runs in the training tests

TINY = VAEConfig(input_shape=(28, 28, 1), latent_dim=8, widths=(8, 16), hidden=64)


def _tiny_config(**overrides) -> VAETrainConfig:
    base = VAETrainConfig(
        model=TINY,
        dataset="mnist",
        loss="bernoulli",
        learning_rate=5e-3,
        warmup_steps=20,
        grad_clip=5.0,
        batch_size=32,
        steps=250,
        eval_every=250,
        save_every=250,
        train_examples=1024,
        val_examples=128,
        samples=8,
    )
    return dataclasses.replace(base, **overrides)


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_shape=(28, 28)),
        dict(input_shape=(28, 28, 0)),
        dict(input_shape=(30, 30, 1)),  # not a multiple of 4
        dict(input_shape=(28, 28, 1), widths=(8, 16, 32)),  # 28 is not a multiple of 8
        dict(widths=()),
        dict(widths=(8, 0)),
        dict(latent_dim=0),
        dict(kernel_size=1),
        dict(hidden=-1),
        dict(kind="unet"),
    ],
    ids=str,
)
def test_bad_vae_configs_raise(kwargs):
    with pytest.raises(ValueError):
        VAEConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(loss="mse"),
        dict(scale=0.0),
        dict(beta=-1.0),
        dict(learning_rate=0.0),
        dict(grad_clip=0.0),
        dict(kl_warmup_steps=-1),
        dict(batch_size=0),
        dict(steps=0),
        dict(val_examples=0),
        dict(train_examples=0),
        dict(dataset=""),
    ],
    ids=str,
)
def test_bad_train_configs_raise(kwargs):
    with pytest.raises(ValueError):
        VAETrainConfig(**kwargs)


def test_configs_round_trip_through_dicts():
    for config in (MNIST_VAE, CELEBA_VAE, TINY):
        assert VAEConfig.from_dict(dataclasses.asdict(config)) == config
    train = _tiny_config()
    assert VAETrainConfig(**train.to_dict()) == train
    with pytest.raises(TypeError, match="VAEConfig"):
        VAETrainConfig(model=CELEBA_VAE.input_shape)


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    "config",
    [
        MNIST_VAE,
        CELEBA_VAE,
        VAEConfig(input_shape=(32, 32, 3), latent_dim=4, widths=(4, 8, 8), kernel_size=4),
    ],
    ids=lambda c: "x".join(map(str, c.input_shape)),
)
def test_shapes(config):
    # Abstract evaluation: shapes without compiling (the values are checked on trained models).
    graphdef, state = nnx.split(nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0))))

    def shape_of(method, *args):
        return jax.eval_shape(
            lambda s, *a: getattr(nnx.merge(graphdef, s), method)(*a), state, *args
        )

    x = jax.ShapeDtypeStruct((3, *config.input_shape), jnp.float32)
    mean, logvar = shape_of("encode", x)
    assert mean.shape == logvar.shape == (3, config.latent_dim)
    assert shape_of("decode", mean).shape == x.shape
    logits, m, _ = shape_of("__call__", x, jax.random.key(0))
    assert logits.shape == x.shape and m.shape == mean.shape
    with pytest.raises(ValueError, match="takes images"):
        shape_of("encode", jax.ShapeDtypeStruct((3, 8, 8, 1), jnp.float32))
    with pytest.raises(ValueError, match="decodes codes"):
        shape_of("decode", jax.ShapeDtypeStruct((3, config.latent_dim + 1), jnp.float32))


def test_loss_matches_its_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 4, 4, 1)).astype(np.float32)
    logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(2, -1).sum(1)
    got = reconstruction_nll(jnp.asarray(logits), jnp.asarray(x), "bernoulli")
    np.testing.assert_allclose(got, bce, rtol=1e-5)
    s = 0.2
    gauss = (((x - p) ** 2) / (2 * s**2) + 0.5 * math.log(2 * math.pi * s**2)).reshape(2, -1)
    got = reconstruction_nll(jnp.asarray(logits), jnp.asarray(x), "gaussian", s)
    np.testing.assert_allclose(got, gauss.sum(1), rtol=1e-5)
    lap = (np.abs(x - p) / s + math.log(2 * s)).reshape(2, -1).sum(1)
    got = reconstruction_nll(jnp.asarray(logits), jnp.asarray(x), "laplace", s)
    np.testing.assert_allclose(got, lap, rtol=1e-5)
    mean = rng.normal(size=(2, 3)).astype(np.float32)
    logvar = rng.normal(size=(2, 3)).astype(np.float32)
    kl = 0.5 * (np.exp(logvar) + mean**2 - 1 - logvar).sum(1)
    np.testing.assert_allclose(gaussian_kl(jnp.asarray(mean), jnp.asarray(logvar)), kl, rtol=1e-5)
    assert float(jnp.max(jnp.abs(gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3)))))) == 0.0


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vae")
    model, meta = train_vae(_tiny_config(), workdir)
    return model, meta, workdir


@pytest.mark.xdist_group("tiny_vae")  # one worker trains the fixture
def test_a_trained_vae_reconstructs_held_out_digits_better_than_the_mean_image(
    tiny_run, mnist_test
):
    model, meta, workdir = tiny_run
    last = meta["history"][-1]
    # 250 steps of a tiny VAE halve the mean image's errors (to about 0.46 and 0.50 of them).
    assert last["val_mse"] < 0.6 * last["mean_image_mse"], last
    assert last["val_l1"] < 0.65 * last["mean_image_l1"], last
    assert last["val_elbo"] > -250.0 and last["val_kl"] > 1.0, last  # the code is used
    for name in ("recon.png", "samples.png", "samples/recon_0000250.png"):
        assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # Digits the periodic evaluation never saw, through the loaded model.
    loaded, loaded_meta = load_vae(workdir, image_shape=(28, 28, 1), dataset="mnist")
    assert loaded_meta["history"] == meta["history"]
    x = jnp.asarray(mnist_test.images[200:328])
    err = float(jnp.mean((loaded.reconstruct(x) - x) ** 2))
    # The mean of these very digits: a stronger baseline than the mean training image.
    baseline = float(jnp.mean((jnp.mean(x, axis=0, keepdims=True) - x) ** 2))
    assert err < 0.6 * baseline, (err, baseline)


@pytest.mark.xdist_group("tiny_vae")  # one worker trains the fixture
def test_load_vae_round_trips_and_the_pure_model_is_jittable(tiny_run):
    model, meta, workdir = tiny_run
    loaded, _ = load_vae(workdir / "checkpoint")
    assert isinstance(loaded, VAEModel)
    assert loaded.latent_dim == 8 and loaded.image_shape == (28, 28, 1)
    for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    encode = jax.jit(lambda m, x: m.encode(x))
    decode = jax.jit(lambda m, z: m.decode(z))
    x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1))
    z = encode(loaded, x)
    assert z.shape == (4, 8)
    np.testing.assert_allclose(z, loaded.posterior(x)[0], atol=1e-5)
    y = decode(loaded, z)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, loaded.decode(z), atol=1e-5)
    again, _ = load_vae(workdir)  # another load of the same checkpoint: equal static parts
    encode(again, x + 0.1)
    decode(model, z + 1.0)
    assert encode._cache_size() == 1 and decode._cache_size() == 1
    # The decoder is differentiable in the code (the latent-space searches need it).
    g = jax.jit(jax.grad(lambda z: jnp.sum(again.decode(z) ** 2)))(z)
    assert g.shape == z.shape and bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
    assert again.sample(jax.random.key(1), 5).shape == (5, 28, 28, 1)


@pytest.mark.xdist_group("tiny_vae")  # one worker trains the fixture
def test_load_vae_refuses_checkpoints_it_does_not_match(tiny_run, tmp_path):
    _, _, workdir = tiny_run
    with pytest.raises(ValueError, match="VAE of \\(28, 28, 1\\) images"):
        load_vae(workdir, image_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="trained on 'mnist'"):
        load_vae(workdir, dataset="celeba")
    # Another kind of checkpoint.
    other = VAE(TINY, rngs=nnx.Rngs(0))
    checkpoint.save(tmp_path / "other", {"unet": other}, metadata={"configs": {"unet": {}}})
    with pytest.raises(ValueError, match="not a VAE checkpoint"):
        load_vae(tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        load_vae(tmp_path / "nowhere")
    # Weights that do not fit the stored config (here, a tampered latent width).
    bad = tmp_path / "bad"
    shutil.copytree(workdir / "checkpoint", bad)
    meta = json.loads((bad / "metadata.json").read_text())
    meta["configs"]["vae"]["latent_dim"] = 16
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointMismatchError):
        load_vae(bad)


@pytest.mark.xdist_group("tiny_vae")  # one worker trains the fixture
def test_training_is_reproducible_resumable_and_checks_its_data(
    tiny_run, mnist_test, tmp_path, monkeypatch
):
    cfg = _tiny_config(steps=6, eval_every=6, kl_warmup_steps=4)
    images = np.asarray(mnist_test.images[:160])
    task = VAETask(cfg, images[128:], images[:128].mean(axis=0))
    data = {"x": images[:128]}
    loop = cfg.loop_config()
    a = fit(task, data, loop)
    b = fit(task, data, loop)
    for u, v in zip(
        jax.tree.leaves(nnx.state(a.modules["vae"])),
        jax.tree.leaves(nnx.state(b.modules["vae"])),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    # KL warm-up: beta (t + 1) / 4 at step t, then 1.
    assert a.history[-1]["beta"] == pytest.approx((0.25 + 0.5 + 0.75 + 1 + 1 + 1) / 6)
    # A run killed after its step-3 progress checkpoint resumes to bitwise the same model.
    original = VAETask.train_step
    calls = []

    def crashing(self, modules, batch, key):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return original(self, modules, batch, key)

    monkeypatch.setattr(VAETask, "train_step", crashing)
    progress = tmp_path / "progress"
    resumable = dataclasses.replace(loop, save_every=3)
    with pytest.raises(RuntimeError, match="killed"):
        fit(task, data, resumable, progress_dir=progress)
    monkeypatch.setattr(VAETask, "train_step", original)
    c = fit(task, data, resumable, progress_dir=progress)
    assert c.resumed_from == 3 and c.history == a.history
    for u, v in zip(
        jax.tree.leaves(nnx.state(a.modules["vae"])),
        jax.tree.leaves(nnx.state(c.modules["vae"])),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    # train_vae checks its workdir and data before training.
    with pytest.raises(FileExistsError):
        train_vae(cfg, tiny_run[2])
    shape = dataclasses.replace(TINY, input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="VAE expects"):
        train_vae(dataclasses.replace(cfg, model=shape), tmp_path / "d")
