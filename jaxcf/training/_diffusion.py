"""Training denoising diffusion models (DDPM) through the core's loop, and loading them.

A run trains a :class:`~jaxcf.models.UNet` (or a diffusion autoencoder,
:class:`~jaxcf.models.DiffusionAutoencoder`: a semantic encoder whose code ``z = E(x0)``
conditions the UNet, trained jointly on the same loss) to predict the noise added to images of a
registered data set (:func:`jaxcf.diffusion.epsilon_loss`) with Adam, a linear warm-up, global
gradient clipping and an EMA copy of the weights (the EMA copy is what samples and explains).
Images enter the model in its own units (:class:`ImageSpace`): ``[0, 1]`` becomes ``[-1, 1]``,
and a border of ``pad`` pixels at the background value brings e.g. 28x28 MNIST to the 32x32 a
3-level UNet halves twice.

Each evaluation reports the EMA model's noise loss on a fixed held-out batch at fixed steps and
noise, and saves a grid of DDIM samples from fixed noise to ``<workdir>/samples/`` (so a run's
progress can be looked at; an autoencoder's grid decodes held-out images' codes from fresh
noise instead). ``<workdir>/checkpoint`` holds the EMA network (entry ``unet``, also for an
autoencoder) and, in its metadata,
everything :func:`load_diffusion` needs to rebuild the model, its schedule and image space.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcf import diffusion as diff
from jaxcf import report
from jaxcf.core import as_pytree, validation
from jaxcf.data import load_dataset
from jaxcf.models import (
    DiffAEConfig,
    DiffusionModel,
    ImageSpace,
    UNetConfig,
    build_denoiser,
)
from jaxcf.training._ema import update_ema
from jaxcf.training._loop import (
    PROGRESS_DIR,
    LoopConfig,
    Plan,
    commit,
    final_checkpoint,
    fit,
    loop_config_of,
    save_result,
)

Array = jax.Array

SAMPLES_DIR = "samples"


@dataclasses.dataclass(frozen=True)
class DiffusionTrainConfig:
    """Attributes:
    model: the UNet, or a diffusion autoencoder; its ``input_shape`` is the padded image shape.
    schedule: the noise schedule trained on.
    dataset: registered data set of ``[0, 1]`` images (``float32 [N, H, W, C]``).
    pad: pixels added on each side (MNIST: 2, to 32x32), at the background value 0.
    loss: ``"mse"`` (DDPM) or ``"l1"`` on the predicted noise.
    learning_rate, warmup_steps, grad_clip: Adam's rate, its linear warm-up from 0, and the
      global-norm clip.
    ema_decay: decay of the EMA copy, after a warm-up ``min(ema_decay, (1 + t) / (10 + t))``.
    batch_size, steps, eval_every, save_every, seed: the loop's schedule.
    train_examples: use the first this many training images (``None``: all).
    val_examples: held-out images of the periodic evaluation.
    sample_steps: DDIM steps of the sample grids.
    samples: images per sample grid.
    """

    model: UNetConfig | DiffAEConfig
    schedule: diff.ScheduleConfig = diff.ScheduleConfig()
    dataset: str = "mnist"
    pad: int = 0
    loss: Literal["mse", "l1"] = "mse"
    learning_rate: float = 2e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    batch_size: int = 64
    steps: int = 10_000
    eval_every: int = 1000
    save_every: int = 500
    seed: int = 0
    train_examples: int | None = None
    val_examples: int = 256
    sample_steps: int = 50
    samples: int = 64

    def __post_init__(self):
        validation.one_of(self, "loss", ("mse", "l1"))
        validation.positive(self, "learning_rate", "grad_clip")
        validation.unit_interval(self, "ema_decay")
        validation.at_least(self, 0, "pad", "warmup_steps", "seed")
        validation.at_least(
            self, 1, "batch_size", "steps", "eval_every", "save_every", "val_examples", "samples"
        )
        validation.at_least(self, 1, "sample_steps")
        if self.train_examples is not None:
            validation.at_least(self, 1, "train_examples")
        if self.sample_steps > self.schedule.num_steps:
            raise ValueError(
                f"sample_steps={self.sample_steps} exceeds the schedule's "
                f"{self.schedule.num_steps} steps"
            )

    def loop_config(self) -> LoopConfig:
        return loop_config_of(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # nested configs included


def _optimizer(config: DiffusionTrainConfig) -> optax.GradientTransformation:
    lr = optax.linear_schedule(0.0, config.learning_rate, max(config.warmup_steps, 1))
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(lr))


def _loss(model, schedule, x0, key, kind):
    """Mean noise loss of a UNet, or of an autoencoder decoding with the codes of ``x0``."""
    if hasattr(model, "encode"):
        z = model.encode(x0)

        def denoise(x, t):
            return model.denoise(x, t, z)
    else:
        denoise = model.denoise
    return jnp.mean(diff.epsilon_loss(denoise, schedule, x0, key, kind))


@nnx.jit(static_argnames=("kind", "decay"))
def _train_step(unet, ema, opt, schedule, x0, key, kind, decay):
    def loss_fn(model):
        return _loss(model, schedule, x0, key, kind)

    loss, grads = nnx.value_and_grad(loss_fn)(unet)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        opt.update(unet, grads)
    # EMA warm-up (as for the generators): min(decay, (1 + t) / (10 + t)) at step t, so that a
    # short run's average is not still mostly the initial weights.
    t = opt.step[...].astype(jnp.float32)
    update_ema(ema, unet, jnp.minimum(decay, (1.0 + t) / (10.0 + t)))
    return {"loss": loss}


@functools.partial(jax.jit, static_argnames=("kind",))
def _val_loss(unet, schedule, x0, key, kind):
    return _loss(unet, schedule, x0, key, kind)


@jax.jit
def _samples(model: DiffusionModel, keys, schedule, x0):
    z = model.encode(x0) if model.is_autoencoder else None
    return model.sample(keys, schedule, z=z)


@dataclasses.dataclass
class DiffusionTask:
    """The diffusion family as a :class:`jaxcf.training.Task`: modules ``unet``,
    ``unet_ema``, ``opt``; batches ``{"x": [B, H, W, C]}`` already in model units."""

    config: DiffusionTrainConfig
    val_x: np.ndarray  # model units
    image_shape: tuple[int, ...]
    samples_dir: Path | None = None

    def __post_init__(self):
        self.schedule = diff.make_schedule(self.config.schedule)

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def init(self, seed: int, plan: Plan) -> dict[str, Any]:
        del plan
        unet = build_denoiser(self.config.model, seed=seed)
        modules = {
            "unet": unet,
            "unet_ema": nnx.clone(unet),
            "opt": nnx.Optimizer(unet, _optimizer(self.config), wrt=nnx.Param),
        }
        commit(modules)
        return modules

    def train_step(self, modules, batch, key) -> dict[str, Array]:
        cfg = self.config
        return _train_step(
            modules["unet"],
            modules["unet_ema"],
            modules["opt"],
            self.schedule,
            batch["x"],
            key,
            cfg.loss,
            cfg.ema_decay,
        )

    def model(self, unet: nnx.Module) -> DiffusionModel:
        return DiffusionModel(
            as_pytree(unet), self.schedule, ImageSpace(self.config.pad), self.image_shape
        )

    def evaluate(self, modules) -> dict[str, float]:
        cfg = self.config
        model = self.model(modules["unet_ema"])
        key = jax.random.key(cfg.seed + 4242)
        loss = _val_loss(model.unet, self.schedule, jnp.asarray(self.val_x), key, cfg.loss)
        if self.samples_dir is not None:
            step = int(modules["opt"].step[...])
            self.save_samples(model, self.samples_dir / f"step_{step:07d}.png")
        return {"val_loss": float(loss)}

    def save_samples(self, model: DiffusionModel, path: Path) -> np.ndarray:
        keys = jax.random.split(jax.random.key(self.config.seed + 777), self.config.samples)
        schedule = model.schedule.respace(self.config.sample_steps)
        x0 = jnp.asarray(
            self.val_x[: self.config.samples]
        )  # an autoencoder's codes come from these
        if len(x0) < len(keys):
            x0 = jnp.resize(x0, (len(keys),) + x0.shape[1:])
        images = np.asarray(_samples(model, keys, schedule, x0))
        if model.is_autoencoder:  # originals above their decodings from fresh noise
            originals = np.asarray(model.space.from_model(x0))
            rows = [originals[i : i + 8] for i in range(0, len(x0), 8)]
            decoded = [images[i : i + 8] for i in range(0, len(x0), 8)]
            images = np.concatenate([a for pair in zip(rows, decoded, strict=True) for a in pair])
        report.image_grid(images, path)
        return images


def _images(config: DiffusionTrainConfig, split: str) -> tuple[np.ndarray, tuple[int, ...]]:
    ds = load_dataset(config.dataset, split)
    x = np.asarray(ds.inputs, np.float32)
    if x.ndim != 4:
        raise ValueError(f"{config.dataset} holds {x.ndim - 1}-d examples, not images [H, W, C]")
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(f"{config.dataset}'s images are not in [0, 1]")
    return x, tuple(x.shape[1:])


def train_diffusion(
    config: DiffusionTrainConfig, workdir: str | Path, *, overwrite: bool = False
) -> tuple[DiffusionModel, dict[str, Any]]:
    """Trains a diffusion model as ``config`` says; writes ``workdir/checkpoint`` and the
    sample grids under ``workdir/samples``. Resumes an interrupted run.

    Returns:
      The EMA model and the saved metadata.

    Raises:
      FileExistsError: a checkpoint is there and ``overwrite`` is False.
      ValueError: the padded images do not match the UNet's ``input_shape``.
    """
    workdir = Path(workdir)
    final = final_checkpoint(workdir, overwrite=overwrite)
    train, shape = _images(config, "train")
    test, _ = _images(config, "test")
    space = ImageSpace(config.pad)
    unet_shape = (shape[0] + 2 * config.pad, shape[1] + 2 * config.pad, shape[2])
    if unet_shape != config.model.input_shape:
        raise ValueError(
            f"{config.dataset} images {shape} padded by {config.pad} are {unet_shape}, but the "
            f"UNet expects {config.model.input_shape}"
        )
    if config.train_examples is not None:
        train = train[: config.train_examples]
    to_model = jax.jit(space.to_model)
    train_m = np.asarray(to_model(train))
    val_m = np.asarray(to_model(test[: config.val_examples]))
    samples_dir = workdir / SAMPLES_DIR
    samples_dir.mkdir(parents=True, exist_ok=True)
    task = DiffusionTask(config, val_m, shape, samples_dir)
    result = fit(
        task,
        {"x": train_m},
        config.loop_config(),
        progress_dir=workdir / PROGRESS_DIR,
        desc=f"{'diffae' if isinstance(config.model, DiffAEConfig) else 'ddpm'} {config.dataset}",
    )
    ema = result.modules["unet_ema"]
    meta = {
        "dataset": config.dataset,
        "image_shape": list(shape),
        "configs": {"unet": dataclasses.asdict(config.model)},  # UNet or autoencoder
        "schedule": dataclasses.asdict(config.schedule),
        "pad": config.pad,
        "train_config": config.to_dict(),
    }
    stored = save_result(final, {"unet": ema}, meta, result, overwrite=overwrite)
    task.save_samples(task.model(ema), workdir / "samples.png")
    return task.model(ema), stored
