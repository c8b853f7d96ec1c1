"""The shared training loop with tasks other than classification: a tiny autoencoder (one
optimiser, dropout drawing from the module's own RNG stream) and a tiny GAN (two optimisers,
alternating steps, an EMA copy of the generator), both on real MNIST images; EMA arithmetic;
resumption after a kill; loop-config validation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxcf.data import load_dataset
from jaxcf.models import checkpoint
from jaxcf.training import LoopConfig, Plan, ema_update, fit, update_ema

# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """512 real MNIST training images, ``float32 [512, 28, 28, 1]`` in [0, 1]."""
    return load_dataset("mnist", "train").inputs[:512]


@pytest.fixture(scope="module")
def test_images() -> np.ndarray:
    return load_dataset("mnist", "test").inputs[:128]


# ----------------------------------------------------------------------------- autoencoder


class AutoEncoder(nnx.Module):
    """784 -> 16 -> dropout -> 784; the dropout mask comes from the module's ``nnx.Rngs``."""

    def __init__(self, rngs: nnx.Rngs):
        self.enc = nnx.Linear(784, 16, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.dec = nnx.Linear(16, 784, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        z = nnx.relu(self.enc(x.reshape(x.shape[0], -1)))
        return nnx.sigmoid(self.dec(self.drop(z))).reshape(x.shape)


def _mse(model: AutoEncoder, x: jax.Array) -> jax.Array:
    return jnp.mean((model(x) - x) ** 2)


@nnx.jit
def _ae_step(model: AutoEncoder, optimizer: nnx.Optimizer, x: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(_mse)(model, x)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes floats and int32 counts
        optimizer.update(model, grads)
    return loss


@dataclasses.dataclass(frozen=True, eq=False)
class AETask:
    test_images: np.ndarray
    learning_rate: float = 3e-3

    def config_dict(self):
        return {"kind": "ae", "learning_rate": self.learning_rate}

    def init(self, seed: int, plan: Plan):
        model = AutoEncoder(nnx.Rngs(seed))
        return {"model": model, "optimizer": nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)}

    def train_step(self, modules, batch, key):
        return {"loss": _ae_step(modules["model"], modules["optimizer"], batch)}

    def evaluate(self, modules):
        model = modules["model"]
        model.eval()
        loss = float(nnx.jit(_mse)(model, jnp.asarray(self.test_images)))
        model.train()
        return {"test_mse": loss}


# ----------------------------------------------------------------------------- GAN


class Generator(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.a = nnx.Linear(8, 32, rngs=rngs)
        self.b = nnx.Linear(32, 784, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return nnx.sigmoid(self.b(nnx.relu(self.a(z)))).reshape(-1, 28, 28, 1)


class Discriminator(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.a = nnx.Linear(784, 32, rngs=rngs)
        self.b = nnx.Linear(32, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.b(nnx.leaky_relu(self.a(x.reshape(x.shape[0], -1))))[:, 0]


@nnx.jit
def _gan_step(gen, disc, gen_ema, opt_g, opt_d, real, key, decay):
    """One discriminator step, then one generator step (non-saturating losses), then EMA."""
    key_d, key_g = jax.random.split(key)

    def d_loss(d):
        fake = jax.lax.stop_gradient(gen(jax.random.normal(key_d, (real.shape[0], 8))))
        return jnp.mean(jax.nn.softplus(-d(real))) + jnp.mean(jax.nn.softplus(d(fake)))

    loss_d, grads = nnx.value_and_grad(d_loss)(disc)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes floats and int32 counts
        opt_d.update(disc, grads)

    def g_loss(g):
        return jnp.mean(jax.nn.softplus(-disc(g(jax.random.normal(key_g, (real.shape[0], 8))))))

    loss_g, grads = nnx.value_and_grad(g_loss)(gen)
    with jax.numpy_dtype_promotion("standard"):
        opt_g.update(gen, grads)
    update_ema(gen_ema, gen, decay)
    return {"d_loss": loss_d, "g_loss": loss_g}


@dataclasses.dataclass(eq=False)
class GANTask:
    ema_decay: float = 0.9

    def config_dict(self):
        return {"kind": "gan", "ema_decay": self.ema_decay}

    def init(self, seed: int, plan: Plan):
        rngs = nnx.Rngs(seed)
        gen, disc = Generator(rngs), Discriminator(rngs)
        return {
            "generator": gen,
            "discriminator": disc,
            "generator_ema": nnx.clone(gen),
            "opt_generator": nnx.Optimizer(gen, optax.adam(1e-3, b1=0.5), wrt=nnx.Param),
            "opt_discriminator": nnx.Optimizer(disc, optax.adam(1e-3, b1=0.5), wrt=nnx.Param),
        }

    def train_step(self, modules, batch, key):
        m = modules
        return _gan_step(
            m["generator"],
            m["discriminator"],
            m["generator_ema"],
            m["opt_generator"],
            m["opt_discriminator"],
            batch,
            key,
            self.ema_decay,
        )

    def evaluate(self, modules):
        z = jax.random.normal(jax.random.key(0), (16, 8))
        return {"ema_mean": float(jnp.mean(modules["generator_ema"](z)))}


# ----------------------------------------------------------------------------- helpers


class DiesAt:
    """Wraps a task so that its ``at``-th train step raises KeyboardInterrupt (a kill)."""

    def __init__(self, task, at: int):
        self.task, self.at, self.calls = task, at, 0

    def config_dict(self):
        return self.task.config_dict()

    def init(self, seed, plan):
        return self.task.init(seed, plan)

    def train_step(self, modules, batch, key):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.task.train_step(modules, batch, key)

    def evaluate(self, modules):
        return self.task.evaluate(modules)


def _leaves(modules: dict) -> dict[str, list[np.ndarray]]:
    """Every module's full state, RNG streams included (keys as raw key data)."""

    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return {name: [host(x) for x in jax.tree.leaves(nnx.state(m))] for name, m in modules.items()}


def _assert_bitwise(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert len(a[name]) == len(b[name])
        for x, y in zip(a[name], b[name], strict=True):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y, err_msg=name)


def _kill_and_resume(task, data, config, tmp_path, *, die_at: int, resume_at: int):
    """Runs unbroken; then killed at step ``die_at`` and restarted; returns both results."""
    unbroken = fit(task, data, config)
    progress = tmp_path / "progress"
    with pytest.raises(KeyboardInterrupt):
        fit(DiesAt(task, die_at), data, config, progress_dir=progress)
    assert checkpoint.read_metadata(progress)["step"] == resume_at
    resumed = fit(task, data, config, progress_dir=progress)
    assert resumed.resumed_from == resume_at
    assert resumed.history == unbroken.history
    _assert_bitwise(_leaves(resumed.modules), _leaves(unbroken.modules))
    return unbroken, resumed


# ----------------------------------------------------------------------------- tests


def test_autoencoder_resumes_bitwise_after_a_kill(images, test_images, tmp_path):
    # 512 // 64 = 8 steps per epoch, 12 steps: a save after steps 4 and 8 (and 12); killed in
    # step 11, the run resumes after step 8, inside the second epoch's shuffled order.
    config = LoopConfig(batch_size=64, steps=12, seed=3, save_every=4, eval_every=6)
    unbroken, _ = _kill_and_resume(
        AETask(test_images), images, config, tmp_path, die_at=11, resume_at=8
    )
    assert [h["step"] for h in unbroken.history] == [6, 12]
    assert unbroken.history[-1]["test_mse"] < unbroken.history[0]["test_mse"]
    assert set(unbroken.history[0]) == {"step", "epoch", "loss", "test_mse"}
    # The dropout stream advanced once per step and was restored on resume.
    assert int(unbroken.modules["model"].drop.rngs.count[...]) == 12


def test_gan_with_two_optimisers_resumes_bitwise_after_a_kill(images, tmp_path):
    config = LoopConfig(batch_size=32, steps=10, seed=0, save_every=3)
    unbroken, _ = _kill_and_resume(GANTask(), images, config, tmp_path, die_at=8, resume_at=6)
    modules = unbroken.modules
    assert int(modules["opt_generator"].step[...]) == 10
    assert int(modules["opt_discriminator"].step[...]) == 10
    assert set(unbroken.history[-1]) == {"step", "epoch", "d_loss", "g_loss", "ema_mean"}
    # The EMA copy lags the generator: it moved, but not as far.
    ema = jax.tree.leaves(nnx.state(modules["generator_ema"], nnx.Param))
    gen = jax.tree.leaves(nnx.state(modules["generator"], nnx.Param))
    assert not any(np.array_equal(a, b) for a, b in zip(ema, gen, strict=True))


def test_same_config_and_seed_give_bitwise_identical_runs(images):
    config = LoopConfig(batch_size=32, steps=6, seed=1)
    first = fit(GANTask(), images, config)
    second = fit(GANTask(), images, config)
    _assert_bitwise(_leaves(first.modules), _leaves(second.modules))
    assert first.history == second.history
    other = fit(GANTask(), images, dataclasses.replace(config, seed=2))
    assert not np.array_equal(
        _leaves(other.modules)["generator"][0], _leaves(first.modules)["generator"][0]
    )


def test_ema_of_the_generator_is_the_hand_computed_decay_average(images):
    decay = 0.5

    class Recording(GANTask):
        """Records the generator's parameters at init and after every step."""

        def init(self, seed, plan):
            modules = super().init(seed, plan)
            self.seen = [_params(modules["generator"])]
            return modules

        def train_step(self, modules, batch, key):
            metrics = super().train_step(modules, batch, key)
            self.seen.append(_params(modules["generator"]))
            return metrics

    task = Recording(ema_decay=decay)
    result = fit(task, images, LoopConfig(batch_size=32, steps=3))
    p0, p1, p2, p3 = task.seen
    expected = jax.tree.map(
        lambda a, b, c, d: decay**3 * a + (1 - decay) * (decay**2 * b + decay * c + d),
        p0,
        p1,
        p2,
        p3,
    )
    got = _params(result.modules["generator_ema"])
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(got)[0], jax.tree.leaves(p3)[0])


def _params(module) -> dict:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module, nnx.Param)))


def test_ema_update_is_a_pure_leafwise_average():
    average = {"w": jnp.array([1.0, 2.0]), "count": jnp.array(3, jnp.int32)}
    new = {"w": jnp.array([3.0, 6.0]), "count": jnp.array(4, jnp.int32)}
    out = ema_update(average, new, 0.75)
    np.testing.assert_allclose(out["w"], [1.5, 3.0])
    assert int(out["count"]) == 4 and out["count"].dtype == jnp.int32  # not averaged
    np.testing.assert_array_equal(average["w"], [1.0, 2.0])  # inputs untouched
    out = jax.jit(ema_update)(average, new, jnp.float32(0.0))  # a traced decay
    np.testing.assert_array_equal(out["w"], new["w"])


def test_resuming_under_another_configuration_is_a_value_error(images, test_images, tmp_path):
    config = LoopConfig(batch_size=64, steps=4, save_every=2)
    progress = tmp_path / "progress"
    with pytest.raises(KeyboardInterrupt):
        fit(DiesAt(AETask(test_images), 4), images, config, progress_dir=progress)
    with pytest.raises(ValueError, match=r"another configuration \(differs in task.learning_rate"):
        fit(AETask(test_images, learning_rate=1e-2), images, config, progress_dir=progress)
    longer = dataclasses.replace(config, steps=5)
    with pytest.raises(ValueError, match=r"differs in loop.steps"):
        fit(AETask(test_images), images, longer, progress_dir=progress)
    with pytest.raises(ValueError, match="differs in num_examples"):
        fit(AETask(test_images), images[:256], config, progress_dir=progress)


def test_progress_of_an_older_jaxcf_is_a_value_error(images, test_images, tmp_path):
    progress = tmp_path / "progress"
    checkpoint.save(progress, AutoEncoder(nnx.Rngs(0)), metadata={"train_config": {}})
    with pytest.raises(ValueError, match="older jaxcf"):
        fit(AETask(test_images), images, LoopConfig(batch_size=64, steps=2), progress_dir=progress)


def test_epoch_schedule_evaluates_each_epoch(images, test_images):
    # 512 // 100 = 5 steps per epoch; 2.5 epochs round to 12 steps (13 would be 2.6 epochs).
    result = fit(AETask(test_images), images, LoopConfig(batch_size=100, epochs=2.5))
    assert [(h["step"], h["epoch"]) for h in result.history] == [(5, 1.0), (10, 2.0), (12, 2.4)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0, "steps": 1},
        {"batch_size": 8},
        {"batch_size": 8, "steps": 2, "epochs": 1.0},
        {"batch_size": 8, "epochs": -1.0},
        {"batch_size": 8, "epochs": float("nan")},
        {"batch_size": 8, "steps": 0},
        {"batch_size": 8, "steps": 2, "seed": -1},
        {"batch_size": 8, "steps": 2, "eval_every": 0},
        {"batch_size": 8, "steps": 2, "save_every": 1.5},
        {"batch_size": 8, "steps": 2, "log_every": 0},
        {"batch_size": True, "steps": 2},
    ],
)
def test_loop_config_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError):
        LoopConfig(**kwargs)


def test_plan_rejects_too_little_data():
    with pytest.raises(ValueError, match="do not fill one batch"):
        Plan.make(LoopConfig(batch_size=64, steps=1), 63)
    with pytest.raises(ValueError, match="rounds to no step"):
        Plan.make(LoopConfig(batch_size=64, epochs=0.1), 128)


class Diverged:
    """A task whose loss is NaN on some batches (a diverged run) and whose score is infinite."""

    def config_dict(self):
        return {"kind": "diverged"}

    def init(self, seed, plan):
        return {"model": nnx.Linear(1, 1, rngs=nnx.Rngs(seed))}

    def train_step(self, modules, batch, key):
        total = jnp.sum(batch)
        return {"loss": jnp.where(total > 4, jnp.nan, total).astype(jnp.float32)}

    def evaluate(self, modules):
        return {"score": float("inf")}


def test_non_finite_metrics_are_recorded_as_null(tmp_path):
    data = np.arange(8, dtype=np.float32)  # shuffled pairs; those summing above 4 give NaN
    config = LoopConfig(batch_size=2, steps=8, eval_every=2, save_every=1)
    unbroken = fit(Diverged(), data, config)
    assert all(h["score"] is None for h in unbroken.history)
    assert any(h["loss"] is None for h in unbroken.history)
    with pytest.raises(KeyboardInterrupt):
        fit(DiesAt(Diverged(), 6), data, config, progress_dir=tmp_path / "progress")
    resumed = fit(Diverged(), data, config, progress_dir=tmp_path / "progress")
    assert resumed.history == unbroken.history
