"""Shared fixtures: a small classifier trained on real MNIST, and its feature density.

Like equinox's test setup, promotion is strict so silent dtype/rank broadcasting bugs fail, and
the CPU backend offers 4 fake devices in-process, so sharding tests need no subprocess
(``mesh(1)`` and ``mesh(4)`` below).
"""

from __future__ import annotations

import functools
import os
import tempfile
from typing import Any

import jax
import numpy as np
import pytest
from filelock import FileLock
from flax import struct

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_num_cpu_devices", 4)

# One on-disk compilation cache for the whole run. Both xdist workers build the same session
# fixtures, and the kill/resume and multi-process tests start fresh interpreters that compile
# the same programs again; on 2 cores compiling is most of the suite's time, and reading an
# executable back takes milliseconds. The environment variables carry the cache into those
# subprocesses; the cache keys hold the program, the devices and the jax version, so a stale
# entry is never read. Programs with host callbacks are never cached (jax's rule). Programs
# that took 0.2 s or more to compile are written: from a cold cache on 2 cores the suite took
# 11:57 at 0.2 s (1,300 entries), 12:16 at 0.05 s (2,800 entries: the writes cost more than
# the reads save) and 14:00 at 1 s (before the workers shared the trained CNN). Those timings
# are from a smaller suite: on 8 December 2026, 897 tests took 19:45 from a cold cache. With a
# size limit set, jax reads nothing back without the filelock package (the dev extra).
# The suite compiles the pixel searches with XLA's default CPU kernels, the choice its exact
# comparisons were written under; jaxcf.core.compiler_options_for's own choice is checked in
# tests/test_core.py, and `JAXCF_CPU_KERNELS=eigen pytest ...` runs everything with it.
os.environ.setdefault("JAXCF_CPU_KERNELS", "xla")
_JIT_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxcf-tests-jit-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 1024**3))
jax.config.update("jax_compilation_cache_dir", _JIT_CACHE)
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)
jax.config.update(
    "jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"])
)


def _memory_maps() -> int:
    """How many memory mappings this process holds (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _map_limit() -> int:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65_530  # Linux's default


# Every program XLA:CPU compiles (or reads back from the persistent cache) maps its code into
# the process: about 9 mappings per executable, and jax keeps every executable its caches hold.
# An xdist worker that runs half the suite passes Linux's vm.max_map_count (65,530 by default;
# tests/test_contract.py alone leaves a worker with ~43,000), and once mmap fails XLA segfaults
# wherever it happens to be: compiling, reading or writing the compilation cache. That was the
# cause of the "node down" worker crashes. Past half the limit, the caches are emptied between
# tests (programs the next tests need are compiled again, or read from the disk cache).
_MAPS_HIGH_WATER = _map_limit() // 2


@pytest.fixture(autouse=True)
def bounded_memory_maps():
    yield
    if _memory_maps() > _MAPS_HIGH_WATER:
        import gc

        jax.clear_caches()
        gc.collect()


@pytest.fixture(autouse=True)
def strict_promotion(request):
    """Strict dtype promotion inside every test (session fixtures such as the trained model are
    built before it, under the default). Code that runs optax's Adam, whose bias correction
    raises a Python float to an int32 power, opts out with ``@pytest.mark.standard_promotion``
    or a ``jax.numpy_dtype_promotion("standard")`` block."""
    mode = "standard" if request.node.get_closest_marker("standard_promotion") else "strict"
    with jax.numpy_dtype_promotion(mode):
        yield


FAKE_DEVICES = 4


def mesh(n: int):
    """A 1-D data mesh over the first ``n`` (fake CPU) devices."""
    from jaxcf.runner import data_mesh

    return data_mesh(jax.devices()[:n])


def jolt(module, *, scale: float, seed: int = 1):
    """Moves every parameter of an NNX module by ``scale`` standard normal noise (in place) and
    returns it: untrained models whose zero-initialised output layers would otherwise make them
    return their input unchanged (generators) or predict no noise (UNets). The draws use an
    ``"rbg"`` key: each new shape's draw compiles on its own, and threefry's take about ten
    times longer to compile on CPU."""
    from flax import nnx

    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed, impl="rbg"), len(leaves))
    moved = [a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    nnx.update(module, jax.tree.unflatten(treedef, moved))
    return module


@functools.cache
def tiny_diffusion(seed: int = 0, scale: float = 0.05):
    """An untrained small diffusion model for 28x28 digits (padded to 32; cosine schedule of
    100 steps), every UNet weight jolted so that its zero-initialised output layer predicts some
    noise. Built once per process like :func:`tiny_vae` (the UNet's eager initialisation and the
    jolt take ~10 s, and the contract table asks for it in every test of three variants)."""
    from flax import nnx

    from jaxcf import diffusion
    from jaxcf.core import as_pytree
    from jaxcf.models import DiffusionModel, ImageSpace, UNet, UNetConfig

    config = UNetConfig(
        input_shape=(32, 32, 1), width=8, channel_mult=(1, 2), attention=(), groups=4
    )
    rngs = nnx.Rngs(jax.random.key(seed, impl="rbg"))  # quick to compile; see jolt
    unet = jolt(UNet(config, rngs=rngs), scale=scale, seed=seed + 1)
    schedule = diffusion.make_schedule(diffusion.ScheduleConfig("cosine", 100))
    return DiffusionModel(as_pytree(unet), schedule, ImageSpace(2), (28, 28, 1))


def tiny_diffae_config(code: int = 16):
    """A small diffusion autoencoder's config for 28x28 images padded to 32."""
    from jaxcf.models import DiffAEConfig, SemanticEncoderConfig, UNetConfig

    shape = (32, 32, 1)
    return DiffAEConfig(
        unet=UNetConfig(
            input_shape=shape, width=8, channel_mult=(1, 2), attention=(), groups=4, cond_dim=code
        ),
        encoder=SemanticEncoderConfig(
            input_shape=shape, width=8, channel_mult=(1, 2), code_dim=code, groups=4
        ),
    )


@functools.cache
def tiny_autoencoder(seed: int = 0, scale: float = 0.05, code: int = 16):
    """An untrained small diffusion autoencoder for 28x28 images (padded to 32; linear schedule
    of 100 steps), jolted and built once per process like :func:`tiny_diffusion`."""
    from jaxcf import diffusion
    from jaxcf.core import as_pytree
    from jaxcf.models import DiffusionModel, ImageSpace, build_denoiser

    net = jolt(build_denoiser(tiny_diffae_config(code), seed=seed), scale=scale, seed=seed + 1)
    schedule = diffusion.make_schedule(diffusion.ScheduleConfig("linear", 100))
    return DiffusionModel(as_pytree(net), schedule, ImageSpace(2), (28, 28, 1))


def random_agent(teacher, code: int = 16, seed: int = 0):
    """An undistilled agent for ``teacher``: a random linear map from ``code``-d codes to its
    features."""
    import jax.numpy as jnp

    from jaxcf.core import as_pure, checks, classifier_digest
    from jaxcf.models import Agent

    teacher = as_pure(teacher)
    feats = checks.feature_dim(teacher, (28, 28, 1))
    weight = jax.random.normal(jax.random.key(seed), (code, feats)) / np.sqrt(code)
    return Agent(weight, jnp.zeros((feats,)), teacher, classifier_digest(teacher))


def tiny_mnist_vae(**overrides):
    """A 4-d MNIST VAE trained for 4 steps on 64 images: a resource for the latent searches in
    protocol tests, not a model to read results from."""
    from jaxcf.models import VAEConfig
    from jaxcf.training import VAETrainConfig

    config = dict(
        model=VAEConfig(input_shape=(28, 28, 1), latent_dim=4, widths=(4, 8), hidden=0),
        dataset="mnist",
        batch_size=16,
        steps=4,
        warmup_steps=1,
        eval_every=4,
        save_every=4,
        train_examples=64,
        val_examples=16,
        samples=4,
    )
    return VAETrainConfig(**{**config, **overrides})


def adult_mlp(transform, *, hidden: int, **overrides):
    """A small MLP classifier on Adult's encoded rows: Adam at 3e-3 for one epoch (the
    classifier tests of the tabular generators train)."""
    from jaxcf.models import MLPConfig
    from jaxcf.training import TrainConfig

    base = dict(
        optimizer="adam",
        learning_rate=3e-3,
        lr_boundaries=(),
        epochs=1,
        batch_size=128,
        train_examples=32_561,
    )
    model = MLPConfig(input_shape=(transform.dim,), num_classes=2, hidden=hidden)
    return TrainConfig(model=model, dataset="adult", **{**base, **overrides})


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, worker_id):
    """Work dir holding ``checkpoint/``: a SmallCNN trained for one epoch on 6,000 real MNIST
    images, with its feature density. Trained once per test run: the xdist workers share it
    through a folder beside their own temporary folders, the first to get the lock trains it
    (training is deterministic, so which one does is immaterial)."""
    from jaxcf.models import CNNConfig
    from jaxcf.training import TrainConfig, train_and_evaluate

    config = TrainConfig(
        model=CNNConfig(channels=(8, 16), hidden=32),
        optimizer="adam",
        learning_rate=3e-3,
        lr_boundaries=(),
        epochs=1,
        batch_size=64,
        train_examples=6000,
    )
    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent  # shared by the workers of a run
    workdir = root / "shared_cnn"
    with FileLock(str(root / "shared_cnn.lock")):
        if not (workdir / "checkpoint").exists():
            train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="session")
def trained(trained_dir):
    """``(model, density, metadata)`` loaded from :func:`trained_dir`; the model in eval mode."""
    from jaxcf.models import load_classifier

    return load_classifier(trained_dir / "checkpoint")


@pytest.fixture(scope="session")
def mnist_test():
    from jaxcf.data import load_mnist

    return load_mnist("test")


@pytest.fixture(scope="session")
def queries(trained, mnist_test):
    """12 real test images: 8 aimed at their runner-up class (reachable in a few dozen steps),
    4 at a random other class (usually not), so searches both succeed and fail."""
    model, _, _ = trained
    x = np.asarray(mnist_test.images[:12])
    runner_up = np.argsort(np.asarray(model.logits(x)), axis=-1)[:, -2]
    rng = np.random.default_rng(0)
    other = (mnist_test.labels[:12] + rng.integers(1, 10, size=12)) % 10
    target = np.where(np.arange(12) < 8, runner_up, other)
    return x, target.astype(np.int32)


@functools.cache
def tiny_vae(seed: int = 0, scale: float = 0.15, latent: int = 8):
    """An untrained small convolutional VAE for 28x28 digits (two 4/8-channel levels, a
    ``latent``-d code), every weight jolted so that its decodings vary with the code. Built
    once per process (a pure pytree: nothing can change it), since the eager initialisation
    takes seconds."""
    from flax import nnx

    from jaxcf.core import as_pytree
    from jaxcf.models import VAE, VAEConfig, VAEModel

    config = VAEConfig(input_shape=(28, 28, 1), latent_dim=latent, widths=(4, 8), hidden=0)
    vae = jolt(VAE(config, rngs=nnx.Rngs(seed)), scale=scale, seed=seed + 1)
    return VAEModel(as_pytree(vae), config)


class TinyAttributeModel(struct.PyTreeNode):
    """A stand-in for an attribute-conditioned encoder-decoder (AttGAN-like) around a VAE:
    the VAE's code, attribute "probabilities" from a random linear map of the image (sigmoid),
    and the VAE's decoding of the code shifted by a random linear map of the attributes."""

    vae: Any  # a VAEModel
    att: jax.Array  # [D, t]
    mix: jax.Array  # [t, k]
    attribute_names: tuple[str, ...] = struct.field(pytree_node=False)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.vae.image_shape

    @property
    def latent_dim(self) -> int:
        return self.vae.latent_dim

    @property
    def num_attributes(self) -> int:
        return self.att.shape[1]

    def encode(self, x):
        return self.vae.encode(x)

    def attributes(self, x):
        return jax.nn.sigmoid(x.reshape(x.shape[0], -1) @ self.att)

    def decode(self, z, a):
        return self.vae.decode(z + (a - 0.5) @ self.mix)


@functools.cache
def tiny_attribute_model(seed: int = 0, attributes: int = 3, scale: float = 0.5):
    """A random :class:`TinyAttributeModel` around :func:`tiny_vae` (built once per process)."""
    vae = tiny_vae()
    d, k = int(np.prod(vae.image_shape)), vae.latent_dim
    k_att, k_mix = jax.random.split(jax.random.key(seed))
    return TinyAttributeModel(
        vae=vae,
        att=jax.random.normal(k_att, (d, attributes)) * (4.0 / np.sqrt(d)),
        mix=jax.random.normal(k_mix, (attributes, k)) * scale,
        attribute_names=tuple(f"attribute_{i}" for i in range(attributes)),
    )
