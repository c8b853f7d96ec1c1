"""Training a Wasserstein GAN (:class:`~jaxcf.models.WGANGenerator`,
:class:`~jaxcf.models.WGANCritic`) through the core's loop: WGAN-GP (Gulrajani et al., 2017).

Each step of the loop is one generator update after ``critic_steps`` critic updates, each
critic update on its own batch of ``batch_size`` real images (so the loop draws
``critic_steps * batch_size`` images a step) and as many generated ones. The critic minimises

    mean D(G(z)) - mean D(x) + gp_weight * mean (|grad_x' D(x')|_2 - 1)^2,

the penalty taken at points ``x' = e x + (1 - e) G(z)`` on straight lines between real and
generated images, ``e ~ U[0, 1]`` per pair; the generator minimises ``-mean D(G(z))``. Both
use Adam (the WGAN-GP defaults: rate 1e-4, betas 0.5 and 0.9; ``critic_steps`` 5,
``gp_weight`` 10). The metrics of a step are the critic's Wasserstein estimate
``mean D(x) - mean D(G(z))`` and its gradient penalty (means over the step's critic updates)
and the generator's loss.

Each evaluation reports the critic's Wasserstein estimate on a fixed held-out batch against
generations of fixed codes (``val_wasserstein``; it falls as the generator improves, though the
critic moves too) and saves the grid of those generations to
``<workdir>/samples/samples_<step>.png``. ``<workdir>/checkpoint`` holds the generator and the
critic (entries ``generator`` and ``critic``) and, in its metadata, everything
:func:`jaxcf.models.load_wgan` needs; an interrupted run resumes from ``<workdir>/progress``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcf import report
from jaxcf.core import validation
from jaxcf.data import load_dataset
from jaxcf.models import MNIST_WGAN, WGANConfig, WGANModel, build_wgan
from jaxcf.models import WGAN_KIND as KIND
from jaxcf.training._loop import (
    PROGRESS_DIR,
    LoopConfig,
    Plan,
    commit,
    final_checkpoint,
    fit,
    save_result,
)

Array = jax.Array

SAMPLES_DIR = "samples"


@dataclasses.dataclass(frozen=True)
class WGANTrainConfig:
    """Attributes:
    model: the generator and critic; ``image_shape`` must be the data set's.
    dataset: registered data set of ``[0, 1]`` images (``float32 [N, H, W, C]``) with ``train``
      and ``test`` splits (the evaluation holds out the first ``test`` images).
    critic_steps: critic updates per generator update, each on a batch of its own.
    gp_weight: weight of the gradient penalty.
    learning_rate, b1, b2: Adam's rate and betas, for both networks.
    batch_size: real (and generated) images per critic update.
    steps: generator updates in all (the loop's steps).
    eval_every, save_every, seed: the loop's schedule.
    train_examples: train on the first this many training images (``None``: all).
    val_examples: held-out images of the periodic evaluation.
    samples: generations in each sample grid.
    """

    model: WGANConfig = MNIST_WGAN
    dataset: str = "mnist"
    critic_steps: int = 5
    gp_weight: float = 10.0
    learning_rate: float = 1e-4
    b1: float = 0.5
    b2: float = 0.9
    batch_size: int = 64
    steps: int = 10_000
    eval_every: int = 1000
    save_every: int = 500
    seed: int = 0
    train_examples: int | None = None
    val_examples: int = 512
    samples: int = 64

    def __post_init__(self):
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", WGANConfig.from_dict(self.model))
        if not isinstance(self.model, WGANConfig):
            raise TypeError(f"WGANTrainConfig.model must be a WGANConfig, got {self.model!r}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"WGANTrainConfig.dataset must name a data set, got {self.dataset!r}")
        validation.positive(self, "learning_rate")
        validation.non_negative(self, "gp_weight")
        validation.unit_interval(self, "b1", "b2")
        validation.at_least(
            self,
            1,
            "critic_steps",
            "batch_size",
            "steps",
            "eval_every",
            "save_every",
            "val_examples",
            "samples",
        )
        validation.at_least(self, 0, "seed")
        if self.train_examples is not None:
            validation.at_least(self, 1, "train_examples")

    def loop_config(self) -> LoopConfig:
        """The loop draws the real images of all ``critic_steps`` critic updates at once."""
        return LoopConfig(
            batch_size=self.batch_size * self.critic_steps,
            steps=self.steps,
            seed=self.seed,
            eval_every=self.eval_every,
            save_every=self.save_every,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- the losses


def gradient_penalty(critic: Any, x: Array) -> Array:
    """``mean (|grad D(x)|_2 - 1)^2`` over the batch ``x [B, H, W, C]``, each image's gradient
    on its own (the critic treats images independently, so the gradient of the summed values
    is the per-image gradients)."""
    graphdef, state = nnx.split(critic)

    def total(images):
        return jnp.sum(nnx.merge(graphdef, state)(images))

    g = jax.grad(total)(x).reshape(x.shape[0], -1)
    # The small constant keeps the norm's gradient finite where a gradient is exactly zero.
    norm = jnp.sqrt(jnp.sum(g * g, axis=-1) + 1e-12)
    return jnp.mean(jnp.square(norm - 1.0))


@functools.lru_cache(maxsize=16)
def _optimizer(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
    """Cached: the transformation is static in the jitted step, so equal settings must give the
    same object to share its compilation."""
    return optax.adam(learning_rate, b1=b1, b2=b2)


@functools.partial(nnx.jit, static_argnames=("critic_steps", "gp_weight"))
def wgan_train_step(
    generator: nnx.Module,
    critic: nnx.Module,
    opt_generator: nnx.Optimizer,
    opt_critic: nnx.Optimizer,
    real: Array,
    key: Array,
    critic_steps: int,
    gp_weight: float,
) -> dict[str, Array]:
    """``critic_steps`` critic updates, each on its slice of ``real [critic_steps * B, ...]``,
    then one generator update on ``B`` fresh codes; all randomness from ``key``."""
    b = real.shape[0] // critic_steps
    latent = generator.config.latent_dim
    wasserstein, penalty = [], []
    for i in range(critic_steps):  # unrolled: a handful of small updates
        x = real[i * b : (i + 1) * b]
        k_z, k_e = jax.random.split(jax.random.fold_in(key, i))
        fake = jax.lax.stop_gradient(generator(jax.random.normal(k_z, (b, latent))))
        e = jax.random.uniform(k_e, (b, 1, 1, 1))
        mixed = e * x + (1.0 - e) * fake

        def critic_loss(c, x=x, fake=fake, mixed=mixed):
            w = jnp.mean(c(x)) - jnp.mean(c(fake))
            gp = gradient_penalty(c, mixed)
            return gp_weight * gp - w, (w, gp)

        (_, (w, gp)), grads = nnx.value_and_grad(critic_loss, has_aux=True)(critic)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32
            opt_critic.update(critic, grads)
        wasserstein.append(w)
        penalty.append(gp)

    z = jax.random.normal(jax.random.fold_in(key, critic_steps), (b, latent))

    def generator_loss(g):
        return -jnp.mean(critic(g(z)))

    loss_g, grads = nnx.value_and_grad(generator_loss)(generator)
    with jax.numpy_dtype_promotion("standard"):
        opt_generator.update(generator, grads)
    return {
        "wasserstein": jnp.mean(jnp.stack(wasserstein)),
        "gp": jnp.mean(jnp.stack(penalty)),
        "loss_g": loss_g,
    }


@jax.jit
def _evaluate(model: WGANModel, x: Array, z: Array) -> Array:
    """The critic's Wasserstein estimate between images ``x`` and generations of codes ``z``."""
    return jnp.mean(model.critic_value(x)) - jnp.mean(model.critic_value(model.generate(z)))


# ----------------------------------------------------------------------------- the task


@dataclasses.dataclass
class WGANTask:
    """The WGAN family as a :class:`jaxcf.training.Task`: modules ``generator``, ``critic``,
    ``opt_generator`` and ``opt_critic``; batches ``{"x": [critic_steps * B, H, W, C]}`` in
    ``[0, 1]``."""

    config: WGANTrainConfig
    val_x: np.ndarray
    samples_dir: Path | None = None

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def init(self, seed: int, plan: Plan) -> dict[str, Any]:
        del plan
        cfg = self.config
        generator, critic = build_wgan(cfg.model, seed)
        tx = _optimizer(cfg.learning_rate, cfg.b1, cfg.b2)
        modules = {
            "generator": generator,
            "critic": critic,
            "opt_generator": nnx.Optimizer(generator, tx, wrt=nnx.Param),
            "opt_critic": nnx.Optimizer(critic, tx, wrt=nnx.Param),
        }
        commit(modules)
        return modules

    def train_step(self, modules, batch, key) -> dict[str, Array]:
        cfg = self.config
        return wgan_train_step(
            modules["generator"],
            modules["critic"],
            modules["opt_generator"],
            modules["opt_critic"],
            batch["x"],
            key,
            cfg.critic_steps,
            float(cfg.gp_weight),
        )

    def codes(self) -> Array:
        """The fixed codes of the evaluations' generations."""
        n = max(self.config.samples, len(self.val_x))
        return jax.random.normal(
            jax.random.key(self.config.seed + 777), (n, self.config.model.latent_dim)
        )

    def evaluate(self, modules) -> dict[str, float]:
        model = WGANModel.of(modules["generator"], modules["critic"])
        z = self.codes()
        w = _evaluate(model, jnp.asarray(self.val_x), z[: len(self.val_x)])
        if self.samples_dir is not None:
            step = int(modules["opt_generator"].step[...])
            grid = np.asarray(model.generate(z[: self.config.samples]))
            report.image_grid(grid, self.samples_dir / f"samples_{step:07d}.png")
        return {"val_wasserstein": float(w)}


# ----------------------------------------------------------------------------- entry points


def _images(config: WGANTrainConfig, split: str) -> np.ndarray:
    x = np.asarray(load_dataset(config.dataset, split).inputs, np.float32)
    if x.ndim != 4:
        raise ValueError(f"{config.dataset} holds {x.ndim - 1}-d examples, not images [H, W, C]")
    if tuple(x.shape[1:]) != config.model.image_shape:
        raise ValueError(
            f"{config.dataset} images are {tuple(x.shape[1:])}, but the WGAN expects "
            f"{config.model.image_shape}"
        )
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(f"{config.dataset}'s images are not in [0, 1]")
    return x


def train_wgan(
    config: WGANTrainConfig, workdir: str | Path, *, overwrite: bool = False
) -> tuple[WGANModel, dict[str, Any]]:
    """Trains a WGAN as ``config`` says; writes ``workdir/checkpoint``, the sample grid of each
    evaluation under ``workdir/samples`` and the final generator's ``samples.png`` in
    ``workdir``. Resumes an interrupted run.

    Returns:
      The trained model and the saved metadata.

    Raises:
      FileExistsError: a checkpoint is there and ``overwrite`` is False.
      ValueError: the data set's images are not ``[0, 1]`` images of the WGAN's image shape.
    """
    workdir = Path(workdir)
    final = final_checkpoint(workdir, overwrite=overwrite)
    train = _images(config, "train")
    if config.train_examples is not None:
        train = train[: config.train_examples]
    val = _images(config, "test")[: config.val_examples]
    samples_dir = workdir / SAMPLES_DIR
    samples_dir.mkdir(parents=True, exist_ok=True)
    task = WGANTask(config, val, samples_dir)
    result = fit(
        task,
        {"x": train},
        config.loop_config(),
        progress_dir=workdir / PROGRESS_DIR,
        desc=f"wgan {config.dataset}",
    )
    generator, critic = result.modules["generator"], result.modules["critic"]
    meta = {
        "kind": KIND,
        "dataset": config.dataset,
        "image_shape": list(config.model.image_shape),
        "latent_dim": config.model.latent_dim,
        # One config builds both networks; stored under each entry's name.
        "configs": {name: dataclasses.asdict(config.model) for name in ("generator", "critic")},
        "train_config": config.to_dict(),
    }
    stored = save_result(
        final, {"generator": generator, "critic": critic}, meta, result, overwrite=overwrite
    )
    model = WGANModel.of(generator, critic)
    report.image_grid(
        np.asarray(model.generate(task.codes()[: config.samples])), workdir / "samples.png"
    )
    return model, stored
