"""The suite's models, with randomly initialised weights, and its random queries.

Training changes none of the measured costs (the searches run a fixed number of iterations,
the samplers a fixed number of steps), so the suite needs no checkpoint and no data set: it runs
on a bare machine. Each NNX module gets host-drawn random weights (:func:`init`, no
compilation), is put in eval mode and turned into the pure pytree the methods take.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcf import diffusion as diff
from jaxcf.core import PureModule, as_pure, as_pytree
from jaxcf.data import ADULT_CONSTRAINTS, ADULT_SCHEMA, AIP_ATTRIBUTES
from jaxcf.models import (
    VAE,
    Agent,
    AttGANConfig,
    AttributeModel,
    DiffAEConfig,
    DiffusionModel,
    GaussianDensity,
    ImageSpace,
    UNetConfig,
    VAEConfig,
    VAEModel,
    build,
    build_attgan,
    build_denoiser,
    generators,
)
from jaxcf.tabular import TabularTransform

# Modes of each numeric column's mixture in Adult's encoding (jaxcf.data's fit: 1 + 7 dimensions
# per numeric column, 85 in all).
ADULT_MODES = 7

# The AIP paper's 13 CelebA attributes (the attribute model's columns; only their number
# changes the cost).
ATTRIBUTES = AIP_ATTRIBUTES


def init(factory, seed: int = 0) -> nnx.Module:
    """The module ``factory()`` builds, in eval mode, with random weights drawn on the host.

    The module is traced abstractly (``nnx.eval_shape``), so nothing is compiled (initialising
    inside XLA compiles every initialiser: seconds per model on a CPU, even a tiny one), and its
    variables are filled: kernels (two or more axes) from a normal of variance ``2 / fan_in``
    (He), other arrays of two or more axes (power-iteration vectors) from a unit-norm normal,
    scales and running variances with ones, and everything else (biases, running means,
    counters) with zeros. The costs measured do not depend on the values."""
    graphdef, state = nnx.split(nnx.eval_shape(factory))
    rng = np.random.default_rng(seed)
    flat = [(path, var.replace(_fill(path, var, rng))) for path, var in nnx.to_flat_state(state)]
    module = nnx.merge(graphdef, nnx.from_flat_state(flat))
    module.eval()
    return module


def _fill(path: tuple, var: nnx.Variable, rng: np.random.Generator) -> jax.Array:
    abstract = var.get_value()
    shape, dtype = tuple(abstract.shape), abstract.dtype
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):  # a module's own RNG stream (dropout)
        key = jax.random.key(int(rng.integers(2**31)))
        return jax.random.split(key, shape) if shape else key
    if len(shape) >= 2 and isinstance(var, nnx.Param):
        fan_in = math.prod(shape[:-1])
        return jnp.asarray(rng.normal(size=shape) * math.sqrt(2.0 / fan_in), dtype)
    if len(shape) >= 2:
        v = rng.normal(size=shape)
        return jnp.asarray(v / np.linalg.norm(v), dtype)
    if path[-1] in ("scale", "var"):
        return jnp.ones(shape, dtype)
    return jnp.zeros(shape, dtype)


def parameters(model) -> int:
    """Trainable parameters of a model: the ``nnx.Param`` entries of every NNX module in it
    (an NNX module, or a pure form holding :class:`~jaxcf.core.PureModule` s); other arrays
    count whole."""
    if isinstance(model, nnx.Module):
        return int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
    total = 0
    for leaf in jax.tree.leaves(model, is_leaf=lambda x: isinstance(x, PureModule)):
        if isinstance(leaf, PureModule):
            total += sum(x.size for x in jax.tree.leaves(nnx.filter_state(leaf.state, nnx.Param)))
        else:
            total += int(np.size(leaf))
    return int(total)


def classifier(config):
    """A classifier of :func:`jaxcf.models.build`'s registry (``config.kind``), pure."""
    return as_pure(init(lambda: build(config)), need_features=True)


def density(num_classes: int, dim: int, seed: int = 0) -> GaussianDensity:
    """A class-conditional Gaussian density on ``dim``-d features with random whitening
    matrices and means (DeDUCE's ``log_prob`` costs the same for any values)."""
    rng = np.random.default_rng(seed)
    whiten = rng.normal(size=(num_classes, dim, dim)) / math.sqrt(dim)
    return GaussianDensity(
        whiten=jnp.asarray(whiten, jnp.float32),
        mean=jnp.asarray(rng.normal(size=(num_classes, dim)), jnp.float32),
        log_norm=jnp.zeros(num_classes, jnp.float32),
    )


def vae(config: VAEConfig) -> VAEModel:
    return VAEModel(as_pytree(init(lambda: VAE(config, rngs=nnx.Rngs(0)))), config)


def attribute_model(config: AttGANConfig) -> AttributeModel:
    def factory():
        generator, discriminator = build_attgan(config)
        return nnx.List([generator, discriminator])

    generator, discriminator = init(factory)
    names = ATTRIBUTES[: config.num_attributes]
    return AttributeModel(as_pytree(generator), as_pytree(discriminator), config, names)


def generator(config) -> nnx.Module:
    """A counterfactual generator (:mod:`jaxcf.models.generators`) as an NNX module, which
    :func:`jaxcf.methods.generator_explainer` takes."""
    return init(lambda: generators.build(config))


def adult_encoded(rows: int = 1024, seed: int = 0) -> tuple[TabularTransform, np.ndarray]:
    """A transform of Adult's schema (85 encoded dimensions, as the data set's own) fitted on
    ``rows`` synthetic rows, and those rows encoded ``[rows, 85]``: the layout, hence the
    cost, without reading the data set."""
    table = adult_rows(rows, seed)
    transform = TabularTransform.fit(ADULT_SCHEMA, table, n_modes=ADULT_MODES, seed=seed)
    return transform, transform.encode(table)


def adult_rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` synthetic rows of Adult's schema: categories drawn uniformly, numbers from a
    log-normal (integers, as the schema's numeric columns are)."""
    rng = np.random.default_rng(seed)
    table = {}
    for column in ADULT_SCHEMA.columns:
        if column.kind == "categorical":
            table[column.name] = np.asarray(column.categories, object)[
                rng.integers(len(column.categories), size=n)
            ]
        else:
            table[column.name] = np.round(rng.lognormal(3.0, 1.0, size=n)).astype(np.int64)
    return table


def tabular_generator_config(transform: TabularTransform, width: int, blocks: int):
    return generators.TabularGeneratorConfig(
        transform=transform.to_dict(),
        constraints=ADULT_CONSTRAINTS.to_dict(),
        cond_dim=2,
        width=width,
        blocks=blocks,
        noise_dim=8,
    )


def diffusion_model(config: UNetConfig | DiffAEConfig, steps: int = 1000) -> DiffusionModel:
    """A diffusion model (or diffusion autoencoder) of ``config`` on a linear schedule of
    ``steps`` training steps, images in ``[0, 1]`` (no padding)."""
    unet = init(lambda: build_denoiser(config))
    schedule = diff.make_schedule(diff.ScheduleConfig(kind="linear", num_steps=steps))
    shape = config.input_shape
    return DiffusionModel(as_pytree(unet), schedule, ImageSpace(0), tuple(shape))


def agent(code_dim: int, teacher, seed: int = 0) -> Agent:
    """DiffExplainer's agent: a random linear map from codes to the teacher's features, then
    the teacher's own head."""
    features = jax.eval_shape(
        teacher.features, jax.ShapeDtypeStruct((1, *teacher.input_shape), jnp.float32)
    ).shape[1]
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(code_dim, features)) / math.sqrt(code_dim)
    return Agent(jnp.asarray(weight, jnp.float32), jnp.zeros(features, jnp.float32), teacher)


def images(n: int, shape, seed: int = 0) -> jax.Array:
    """``[n, *shape]`` uniform images in ``[0, 1]``."""
    return jax.random.uniform(jax.random.key(seed), (n, *shape), jnp.float32)


def series(n: int, shape, seed: int = 0) -> jax.Array:
    """``[n, T, C]`` standard normal series (ECG5000 is standardised)."""
    return jax.random.normal(jax.random.key(seed), (n, *shape), jnp.float32)


def classes(n: int, num_classes: int, seed: int = 1) -> jax.Array:
    """``[n]`` random target classes."""
    return jax.random.randint(jax.random.key(seed), (n,), 0, num_classes, jnp.int32)


def keys(n: int) -> jax.Array:
    """One PRNG key per query."""
    return jax.random.split(jax.random.key(0), n)
