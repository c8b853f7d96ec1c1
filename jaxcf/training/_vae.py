"""Training convolutional VAEs (:class:`~jaxcf.models.VAE`) through the core's loop, and
loading them as pure models for the latent-space counterfactual methods (REVISE, xGEMs).

A run maximises the evidence lower bound of a registered data set's ``[0, 1]`` images,

    loss(x) = -log p(x | z) + beta_t * KL(q(z | x) || N(0, I)),     z ~ q(z | x),

one reparametrised sample per image, both terms summed over pixels and code (nats per image),
averaged over the batch, with Adam (a linear learning-rate warm-up, optional global-norm
clipping). The likelihood ``p(x | z)`` is per-pixel, around the decoder's means ``mu`` in
``[0, 1]``:

* ``"bernoulli"``: binary cross-entropy of ``x`` against ``mu`` (MNIST-style, near-binary
  images);
* ``"gaussian"``: ``N(mu, scale**2)``, i.e. ``sum (x - mu)**2 / (2 scale**2)`` plus its
  normaliser: the MSE loss (faces);
* ``"laplace"``: ``Laplace(mu, scale)``, i.e. ``sum |x - mu| / scale`` plus its normaliser: the
  L1 loss.

``beta_t`` is ``beta`` (default 1: the ELBO), optionally warmed up linearly from ``beta /
kl_warmup_steps`` over the first ``kl_warmup_steps`` steps.

Each evaluation reports, on a fixed held-out batch: the per-pixel MSE and L1 of the
reconstructions through the posterior mean (``val_mse``, ``val_l1``), the same errors of the
mean training image (``mean_image_mse``, ``mean_image_l1``: the baseline a useful VAE must beat
clearly), and a one-sample ELBO estimate with its KL term (``val_elbo``, ``val_kl``, nats per
image, at ``beta = 1``, fixed key). It saves two grids under ``<workdir>/samples/``:
``recon_<step>.png`` (rows of held-out images above rows of their reconstructions) and
``samples_<step>.png`` (decodings of fixed prior draws). ``<workdir>/checkpoint`` holds the VAE
(entry ``vae``) and, in its metadata, everything :func:`load_vae` needs; an interrupted run
resumes from ``<workdir>/progress``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcf import report
from jaxcf.core import as_pytree, validation
from jaxcf.data import load_dataset
from jaxcf.models import VAE, VAEConfig, VAEModel, gaussian_kl, reparametrise
from jaxcf.models import VAE_KIND as KIND
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
"""``metadata["kind"]`` of a VAE checkpoint."""
LOSSES = ("bernoulli", "gaussian", "laplace")


@dataclasses.dataclass(frozen=True)
class VAETrainConfig:
    """Attributes:
    model: the VAE; its ``input_shape`` must be the data set's image shape.
    dataset: registered data set of ``[0, 1]`` images (``float32 [N, H, W, C]``) with
      ``train`` and ``test`` splits (the evaluation holds out the first ``test`` images).
    loss: the reconstruction likelihood, ``"bernoulli"``, ``"gaussian"`` or ``"laplace"``
      (see the module docstring).
    scale: the Gaussian's standard deviation or the Laplace's scale (unused by
      ``"bernoulli"``); smaller weighs reconstruction more against the KL term.
    beta: weight of the KL term (1: the ELBO).
    kl_warmup_steps: steps over which the KL weight rises linearly to ``beta`` (0: none).
    learning_rate, warmup_steps: Adam's rate and its linear warm-up from 0.
    grad_clip: global-norm gradient clipping (``None``: none).
    batch_size, steps, eval_every, save_every, seed: the loop's schedule.
    train_examples: use the first this many training images (``None``: all).
    val_examples: held-out images of the periodic evaluation.
    samples: images per reconstruction and sample grid.
    """

    model: VAEConfig = VAEConfig()
    dataset: str = "mnist"
    loss: Literal["bernoulli", "gaussian", "laplace"] = "bernoulli"
    scale: float = 0.1
    beta: float = 1.0
    kl_warmup_steps: int = 0
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    grad_clip: float | None = None
    batch_size: int = 64
    steps: int = 10_000
    eval_every: int = 1000
    save_every: int = 500
    seed: int = 0
    train_examples: int | None = None
    val_examples: int = 256
    samples: int = 32

    def __post_init__(self):
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", VAEConfig.from_dict(self.model))
        if not isinstance(self.model, VAEConfig):
            raise TypeError(f"VAETrainConfig.model must be a VAEConfig, got {self.model!r}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"VAETrainConfig.dataset must name a data set, got {self.dataset!r}")
        validation.one_of(self, "loss", LOSSES)
        validation.positive(self, "scale", "learning_rate")
        validation.non_negative(self, "beta")
        if self.grad_clip is not None:
            validation.positive(self, "grad_clip")
        validation.at_least(self, 0, "kl_warmup_steps", "warmup_steps", "seed")
        validation.at_least(
            self, 1, "batch_size", "steps", "eval_every", "save_every", "val_examples", "samples"
        )
        if self.train_examples is not None:
            validation.at_least(self, 1, "train_examples")

    def loop_config(self) -> LoopConfig:
        return loop_config_of(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- the model


# ----------------------------------------------------------------------------- the loss


def reconstruction_nll(logits: Array, x: Array, kind: str, scale: float = 0.1) -> Array:
    """``-log p(x | z)`` per image ``[B]`` (nats, summed over pixels) of the decoder's
    ``logits`` for images ``x`` in ``[0, 1]``; see the module docstring for the ``kind``\\ s."""
    axes = tuple(range(1, x.ndim))
    if kind == "bernoulli":
        return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=axes)
    mu = jax.nn.sigmoid(logits)
    d = math.prod(x.shape[1:])
    if kind == "gaussian":
        const = 0.5 * math.log(2.0 * math.pi * scale**2)
        return jnp.sum((x - mu) ** 2, axis=axes) / (2.0 * scale**2) + d * const
    if kind == "laplace":
        return jnp.sum(jnp.abs(x - mu), axis=axes) / scale + d * math.log(2.0 * scale)
    raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {LOSSES}")


def vae_loss(
    vae: Any, x: Array, key: Array, kind: str, scale: float, beta: float | Array = 1.0
) -> tuple[Array, dict[str, Array]]:
    """Batch mean of ``nll + beta * kl`` at one reparametrised sample per image, and the
    metrics ``{"rec", "kl"}`` (batch means, nats per image)."""
    mean, logvar = vae.encode(x)
    logits = vae.decode_logits(reparametrise(mean, logvar, key))
    rec = jnp.mean(reconstruction_nll(logits, x, kind, scale))
    kl = jnp.mean(gaussian_kl(mean, logvar))
    return rec + beta * kl, {"rec": rec, "kl": kl}


@functools.lru_cache(maxsize=32)
def _optimizer(
    learning_rate: float, warmup_steps: int, grad_clip: float | None
) -> optax.GradientTransformation:
    """Adam after a linear warm-up, optionally clipped. Cached: the transformation is static in
    the jitted step, so equal settings must give the same object to share its compilation."""
    lr = optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1))
    adam = optax.adam(lr)
    if grad_clip is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(grad_clip), adam)


@nnx.jit(static_argnames=("kind", "scale"))
def _train_step(vae, opt, x, key, kind, scale, beta, kl_warmup):
    # beta and the warm-up length are data, so runs that differ only in them share a program.
    t = opt.step[...].astype(jnp.float32)
    beta_t = beta * jnp.minimum(1.0, (t + 1.0) / jnp.maximum(kl_warmup, 1.0))

    def loss_fn(model):
        return vae_loss(model, x, key, kind, scale, beta_t)

    (loss, parts), grads = nnx.value_and_grad(loss_fn, has_aux=True)(vae)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        opt.update(vae, grads)
    return {"loss": loss, **parts, "beta": beta_t}


@functools.partial(jax.jit, static_argnames=("kind", "scale"))
def _evaluate(model: VAEModel, x, mean_image, key, kind, scale):
    mean, logvar = model.posterior(x)
    recon = model.decode(mean)
    baseline = mean_image[None]
    logits = model.vae.decode_logits(reparametrise(mean, logvar, key))
    nll = reconstruction_nll(logits, x, kind, scale)
    kl = gaussian_kl(mean, logvar)
    return {
        "val_mse": jnp.mean((recon - x) ** 2),
        "val_l1": jnp.mean(jnp.abs(recon - x)),
        "mean_image_mse": jnp.mean((baseline - x) ** 2),
        "mean_image_l1": jnp.mean(jnp.abs(baseline - x)),
        "val_elbo": -jnp.mean(nll + kl),
        "val_kl": jnp.mean(kl),
    }


@jax.jit
def _grids(model: VAEModel, x, z):
    return model.reconstruct(x), model.decode(z)


# ----------------------------------------------------------------------------- the task


@dataclasses.dataclass
class VAETask:
    """The VAE family as a :class:`jaxcf.training.Task`: modules ``vae`` and ``opt``;
    batches ``{"x": [B, H, W, C]}`` in ``[0, 1]``."""

    config: VAETrainConfig
    val_x: np.ndarray
    mean_image: np.ndarray  # [H, W, C], the mean training image
    samples_dir: Path | None = None

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def init(self, seed: int, plan: Plan) -> dict[str, Any]:
        del plan
        vae = VAE(self.config.model, rngs=nnx.Rngs(seed))
        cfg = self.config
        tx = _optimizer(cfg.learning_rate, cfg.warmup_steps, cfg.grad_clip)
        modules = {"vae": vae, "opt": nnx.Optimizer(vae, tx, wrt=nnx.Param)}
        commit(modules)
        return modules

    def train_step(self, modules, batch, key) -> dict[str, Array]:
        cfg = self.config
        return _train_step(
            modules["vae"],
            modules["opt"],
            batch["x"],
            key,
            cfg.loss,
            cfg.scale,
            jnp.float32(cfg.beta),
            jnp.float32(cfg.kl_warmup_steps),
        )

    def model(self, vae: VAE) -> VAEModel:
        return VAEModel(as_pytree(vae), self.config.model)

    def evaluate(self, modules) -> dict[str, float]:
        cfg = self.config
        model = self.model(modules["vae"])
        key = jax.random.key(cfg.seed + 4242)
        metrics = _evaluate(
            model,
            jnp.asarray(self.val_x),
            jnp.asarray(self.mean_image),
            key,
            cfg.loss,
            cfg.scale,
        )
        if self.samples_dir is not None:
            step = int(modules["opt"].step[...])
            self.save_grids(model, self.samples_dir, f"_{step:07d}")
        return {k: float(v) for k, v in metrics.items()}

    def save_grids(self, model: VAEModel, directory: Path, suffix: str = "") -> None:
        """``recon<suffix>.png`` (held-out images, rows of 8, each row above its
        reconstructions) and ``samples<suffix>.png`` (decoded prior draws) in ``directory``."""
        n = self.config.samples
        x = jnp.asarray(self.val_x[: min(n, len(self.val_x))])
        z = jax.random.normal(jax.random.key(self.config.seed + 777), (n, model.latent_dim))
        recon, samples = (np.asarray(a) for a in _grids(model, x, z))
        originals = np.asarray(x)
        rows = [
            part
            for i in range(0, len(originals), 8)
            for part in (originals[i : i + 8], recon[i : i + 8])
        ]
        report.image_grid(np.concatenate(rows), directory / f"recon{suffix}.png")
        report.image_grid(samples, directory / f"samples{suffix}.png")


# ----------------------------------------------------------------------------- entry points


def _images(config: VAETrainConfig, split: str) -> np.ndarray:
    x = np.asarray(load_dataset(config.dataset, split).inputs, np.float32)
    if x.ndim != 4:
        raise ValueError(f"{config.dataset} holds {x.ndim - 1}-d examples, not images [H, W, C]")
    if tuple(x.shape[1:]) != config.model.input_shape:
        raise ValueError(
            f"{config.dataset} images are {tuple(x.shape[1:])}, but the VAE expects "
            f"{config.model.input_shape}"
        )
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(f"{config.dataset}'s images are not in [0, 1]")
    return x


def train_vae(
    config: VAETrainConfig, workdir: str | Path, *, overwrite: bool = False
) -> tuple[VAEModel, dict[str, Any]]:
    """Trains a VAE as ``config`` says; writes ``workdir/checkpoint``, the grids of each
    evaluation under ``workdir/samples`` and the final model's ``recon.png`` and ``samples.png``
    in ``workdir``. Resumes an interrupted run.

    Returns:
      The trained model and the saved metadata.

    Raises:
      FileExistsError: a checkpoint is there and ``overwrite`` is False.
      ValueError: the data set's images are not ``[0, 1]`` images of the VAE's input shape.
    """
    workdir = Path(workdir)
    final = final_checkpoint(workdir, overwrite=overwrite)
    train = _images(config, "train")
    if config.train_examples is not None:
        train = train[: config.train_examples]
    val = _images(config, "test")[: config.val_examples]
    mean_image = train.mean(axis=0, dtype=np.float64).astype(np.float32)
    samples_dir = workdir / SAMPLES_DIR
    samples_dir.mkdir(parents=True, exist_ok=True)
    task = VAETask(config, val, mean_image, samples_dir)
    result = fit(
        task,
        {"x": train},
        config.loop_config(),
        progress_dir=workdir / PROGRESS_DIR,
        desc=f"vae {config.dataset}",
    )
    vae = result.modules["vae"]
    meta = {
        "kind": KIND,
        "dataset": config.dataset,
        "image_shape": list(config.model.input_shape),
        "latent_dim": config.model.latent_dim,
        "configs": {"vae": dataclasses.asdict(config.model)},
        "train_config": config.to_dict(),
    }
    stored = save_result(final, {"vae": vae}, meta, result, overwrite=overwrite)
    model = task.model(vae)
    task.save_grids(model, workdir)
    return model, stored
