"""The WGAN and the AnoGAN realism score: the batched, chunked search equals a per-image,
per-restart reference loop written out here (both optimisers, the rate cut, padding of the last
chunk); the best restart is kept; images of another size than the WGAN's are refused before
anything compiles; the gradient penalty against its closed form on a linear critic; WGAN-GP
training steps that are reproducible from a seed and resume bitwise, a trained checkpoint that
loads back and that the score takes by path."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcf.evaluation import AGANConfig, agan_score
from jaxcf.models import WGANConfig, WGANModel, build_wgan, load_wgan
from jaxcf.training import WGANTask, WGANTrainConfig, fit, gradient_penalty, train_wgan

TINY = WGANConfig(
    image_shape=(6, 6, 1), latent_dim=4, generator_widths=(16,), critic_widths=(12, 8)
)
TINY_MNIST = WGANConfig(latent_dim=4, generator_widths=(16,), critic_widths=(16, 8))


def _tiny_wgan(seed: int = 0) -> WGANModel:
    return WGANModel.of(*build_wgan(TINY, seed))


def _reference(wgan: WGANModel, x: np.ndarray, config: AGANConfig, seed: int):
    """Each image's restarts one at a time, each update a separate call: ``(losses [N, R],
    codes [N, R, k])``. The starting codes follow the documented contract: image ``i`` draws
    ``normal(fold_in(key(seed), i), (R, k))``."""

    def loss(z, xi):
        g = wgan.generate(z[None])[0]
        fx = wgan.features(xi[None])[0]
        fg = wgan.features(g[None])[0]
        return jnp.sum(jnp.abs(g - xi)) + config.weight * jnp.sum(jnp.abs(fg - fx))

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    cut = round(config.decay_at * config.steps)
    losses = np.zeros((len(x), config.restarts), np.float32)
    codes = np.zeros((len(x), config.restarts, wgan.latent_dim), np.float32)
    for i, xi in enumerate(jnp.asarray(x)):
        starts = jax.random.normal(
            jax.random.fold_in(jax.random.key(seed), i), (config.restarts, wgan.latent_dim)
        )
        for j in range(config.restarts):
            z = starts[j]
            m = v = jnp.zeros_like(z)
            for t in range(config.steps):
                _, g = value_and_grad(z, xi)
                lr = config.learning_rate * (config.decay if t > cut else 1.0)
                if config.optimizer == "sgd":
                    z = z - lr * g
                else:
                    m = 0.9 * m + 0.1 * g
                    v = 0.999 * v + 0.001 * g * g
                    m_hat = m / (1.0 - 0.9 ** (t + 1))
                    v_hat = v / (1.0 - 0.999 ** (t + 1))
                    z = z - lr * m_hat / (jnp.sqrt(v_hat) + 1e-8)
            losses[i, j] = float(value_and_grad(z, xi)[0])
            codes[i, j] = np.asarray(z)
    return losses, codes


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_batched_search_equals_a_per_image_reference_loop(optimizer):
    wgan = _tiny_wgan()
    x = np.asarray(jax.random.uniform(jax.random.key(5), (5, 6, 6, 1)))
    # 5 images in chunks of 2: three compiled calls of one shape, the last one padded.
    config = AGANConfig(
        steps=12, restarts=3, optimizer=optimizer, decay_at=0.5, chunk_size=2, learning_rate=0.05
    )
    out = agan_score(wgan, x, config, seed=3, progress=False)
    losses, codes = _reference(wgan, x, config, seed=3)
    np.testing.assert_allclose(out.losses, losses, rtol=1e-4, atol=1e-4)
    # The search moved: the final losses are not the starting ones.
    start = _reference(wgan, x, dataclasses.replace(config, steps=1, learning_rate=1e-9), 3)[0]
    assert np.all(np.abs(losses - start) > 1e-3)
    # The best restart is kept: its loss, its code and its two terms.
    best = np.argmin(losses, axis=1)
    np.testing.assert_allclose(out.score, losses.min(axis=1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.z, codes[np.arange(5), best], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(out.residual + 0.1 * out.feature, out.score, rtol=1e-5)
    assert out.score.shape == (5,) and out.losses.shape == (5, 3) and out.z.shape == (5, 4)
    # The restarts differ, so keeping the best matters.
    assert np.all(losses.max(axis=1) - losses.min(axis=1) > 1e-3)
    # A score does not depend on the chunking.
    whole = agan_score(wgan, x, dataclasses.replace(config, chunk_size=8), seed=3, progress=False)
    np.testing.assert_allclose(whole.score, out.score, rtol=1e-5, atol=1e-5)


def test_cached_scores_are_reused_and_keyed_by_images_seed_and_wgan(tmp_path, monkeypatch):
    from explain.deduce import realism

    wgan = _tiny_wgan()
    x = np.asarray(jax.random.uniform(jax.random.key(5), (3, 6, 6, 1)))
    config = AGANConfig(steps=4, restarts=2, chunk_size=4)
    first = realism.cached_agan_scores(wgan, x, config, seed=1, cache=tmp_path)
    np.testing.assert_array_equal(first, agan_score(wgan, x, config, seed=1).score)
    assert len(list(tmp_path.glob("agan-*.npy"))) == 1
    calls = []
    real = realism.agan_score
    monkeypatch.setattr(realism, "agan_score", lambda *a, **k: calls.append(1) or real(*a, **k))
    np.testing.assert_array_equal(
        realism.cached_agan_scores(wgan, x.copy(), config, seed=1, cache=tmp_path), first
    )
    assert not calls  # read back, not searched again
    realism.cached_agan_scores(wgan, x, config, seed=2, cache=tmp_path)
    realism.cached_agan_scores(wgan, x[:2], config, seed=1, cache=tmp_path)
    realism.cached_agan_scores(_tiny_wgan(seed=1), x, config, seed=1, cache=tmp_path)
    assert len(calls) == 3 and len(list(tmp_path.glob("agan-*.npy"))) == 4
    assert not list(tmp_path.glob("*.tmp*"))


def test_images_of_another_size_are_refused_before_compiling(monkeypatch):
    def compiled(*args, **kwargs):
        raise AssertionError("the search ran")

    monkeypatch.setattr("jaxcf.evaluation._anogan._search", compiled)
    wgan = _tiny_wgan()
    with pytest.raises(ValueError, match=r"trained on \(6, 6, 1\) images and cannot score"):
        agan_score(wgan, np.zeros((2, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agan_score(wgan, np.full((2, 6, 6, 1), 2.0, np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        agan_score(wgan, np.zeros((0, 6, 6, 1), np.float32))
    with pytest.raises(TypeError, match="WGANModel"):
        agan_score(object(), np.zeros((2, 6, 6, 1), np.float32))
    with pytest.raises(ValueError, match="restarts"):
        AGANConfig(restarts=0)
    with pytest.raises(ValueError, match="optimizer"):
        AGANConfig(optimizer="lbfgs")


def test_the_gradient_penalty_of_a_linear_critic_is_its_closed_form():
    _, critic = build_wgan(TINY)
    w = np.asarray(jax.random.normal(jax.random.key(1), (36,)))

    class Linear(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.asarray(w))

        def __call__(self, x):
            return x.reshape(x.shape[0], -1) @ self.w[...]

    x = jax.random.uniform(jax.random.key(2), (4, 6, 6, 1))
    expected = (np.linalg.norm(w) - 1.0) ** 2
    np.testing.assert_allclose(float(gradient_penalty(Linear(), x)), expected, rtol=1e-5)
    assert critic(x).shape == (4,) and critic.features(x).shape == (4, 8)


def _tiny_train(**overrides) -> WGANTrainConfig:
    base = WGANTrainConfig(
        model=TINY_MNIST,
        critic_steps=2,
        batch_size=8,
        steps=4,
        eval_every=4,
        save_every=4,
        train_examples=64,
        val_examples=16,
        samples=8,
    )
    return dataclasses.replace(base, **overrides)


def _params(module) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(nnx.state(module, nnx.Param))]


@pytest.mark.standard_promotion  # optax's Adam
def test_training_is_reproducible_resumable_and_loads_back(mnist_test, tmp_path, monkeypatch):
    images = np.asarray(mnist_test.images[:80], np.float32)
    cfg = _tiny_train()
    task = WGANTask(cfg, images[64:])
    data = {"x": images[:64]}
    a = fit(task, data, cfg.loop_config())
    b = fit(task, data, cfg.loop_config())
    other = fit(task, data, dataclasses.replace(cfg.loop_config(), seed=1))
    for name in ("generator", "critic"):
        pa, pb, po = (_params(r.modules[name]) for r in (a, b, other))
        for u, v in zip(pa, pb, strict=True):
            np.testing.assert_array_equal(u, v)
        assert any(not np.array_equal(u, w) for u, w in zip(pa, po, strict=True))
    assert a.history == b.history
    last = a.history[-1]
    assert {"wasserstein", "gp", "loss_g", "val_wasserstein"} <= set(last)
    assert all(np.isfinite(last[k]) for k in ("wasserstein", "gp", "loss_g"))
    # Killed after its step-2 progress checkpoint, a run resumes to bitwise the same networks.
    original, calls = WGANTask.train_step, []

    def crashing(self, modules, batch, key):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return original(self, modules, batch, key)

    monkeypatch.setattr(WGANTask, "train_step", crashing)
    loop = dataclasses.replace(cfg.loop_config(), save_every=2)
    with pytest.raises(RuntimeError, match="killed"):
        fit(task, data, loop, progress_dir=tmp_path / "progress")
    monkeypatch.setattr(WGANTask, "train_step", original)
    c = fit(task, data, loop, progress_dir=tmp_path / "progress")
    assert c.resumed_from == 2 and c.history == a.history
    for name in ("generator", "critic"):
        for u, v in zip(_params(a.modules[name]), _params(c.modules[name]), strict=True):
            np.testing.assert_array_equal(u, v)

    # The whole trainer on real MNIST: a checkpoint that loads back and that the score takes.
    model, meta = train_wgan(cfg, tmp_path / "wgan")
    assert (tmp_path / "wgan" / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded, _ = load_wgan(tmp_path / "wgan", image_shape=(28, 28, 1), dataset="mnist")
    for u, v in zip(jax.tree.leaves(model), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert meta["history"][-1]["step"] == 4
    with pytest.raises(ValueError, match=r"WGAN of \(28, 28, 1\) images, not \(6, 6, 1\)"):
        agan_score(tmp_path / "wgan", np.zeros((2, 6, 6, 1), np.float32))
    with pytest.raises(FileExistsError):
        train_wgan(cfg, tmp_path / "wgan")
    scores = agan_score(tmp_path / "wgan", images[:2], AGANConfig(steps=3), progress=False)
    assert scores.score.shape == (2,) and np.all(np.isfinite(scores.score))
