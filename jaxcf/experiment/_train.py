"""Training any model family from its config: the one entry point behind ``jaxcf train`` and behind
an experiment's models that are trained when their checkpoint is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxcf.training import (
    AttGANTrainConfig,
    DiffusionTrainConfig,
    TrainConfig,
    VAETrainConfig,
    WGANTrainConfig,
    train_and_evaluate,
    train_attgan,
    train_diffusion,
    train_vae,
    train_wgan,
)


def _classifier(config: TrainConfig, workdir: Path, overwrite: bool) -> str:
    _, _, meta = train_and_evaluate(config, workdir, overwrite=overwrite)
    return f"test accuracy {meta['test_accuracy']:.4f}; saved {workdir / 'checkpoint'}"


def _vae(config: VAETrainConfig, workdir: Path, overwrite: bool) -> str:
    _, meta = train_vae(config, workdir, overwrite=overwrite)
    last = meta["history"][-1]
    return (
        f"vae: held-out reconstruction MSE {last['val_mse']:.4f} (mean image "
        f"{last['mean_image_mse']:.4f}), L1 {last['val_l1']:.4f} (mean image "
        f"{last['mean_image_l1']:.4f}), ELBO {last['val_elbo']:.1f} nats after {last['step']} "
        f"steps ({meta['train_seconds'] / 60:.1f} min); grids in {workdir}"
    )


def _attgan(config: AttGANTrainConfig, workdir: Path, overwrite: bool) -> str:
    _, meta = train_attgan(config, workdir, overwrite=overwrite)
    last = meta["history"][-1]
    flips = ", ".join(
        f"{name} {last[f'flip_acc_{name}']:.2f} (unflipped {last[f'flip_base_{name}']:.2f})"
        for name in config.flip_attributes
    )
    return (
        f"attgan: held-out reconstruction L1 {last['val_l1']:.4f} (mean image "
        f"{last['mean_image_l1']:.4f}), MSE {last['val_mse']:.4f} (mean image "
        f"{last['mean_image_mse']:.4f}); attribute classifier accuracy {last['val_attr_acc']:.3f} "
        f"(majority {last['majority_attr_acc']:.3f}); flipped attribute decided as flipped: "
        f"{flips} after {last['step']} steps ({meta['train_seconds'] / 60:.1f} min); grids in "
        f"{workdir}"
    )


def _diffusion(config: DiffusionTrainConfig, workdir: Path, overwrite: bool) -> str:
    _, meta = train_diffusion(config, workdir, overwrite=overwrite)
    last = meta["history"][-1]
    return (
        f"diffusion: held-out noise loss {last['val_loss']:.4f} after {last['step']} steps "
        f"({meta['train_seconds'] / 60:.1f} min); samples in {workdir / 'samples.png'}"
    )


def _wgan(config: WGANTrainConfig, workdir: Path, overwrite: bool) -> str:
    _, meta = train_wgan(config, workdir, overwrite=overwrite)
    last = meta["history"][-1]
    return (
        f"wgan: held-out Wasserstein estimate {last['val_wasserstein']:.3f} after "
        f"{last['step']} generator steps ({meta['train_seconds'] / 60:.1f} min); samples in "
        f"{workdir / 'samples.png'}"
    )


_TRAINERS = {
    TrainConfig: _classifier,
    VAETrainConfig: _vae,
    AttGANTrainConfig: _attgan,
    DiffusionTrainConfig: _diffusion,
    WGANTrainConfig: _wgan,
}


def trainable(config: Any) -> bool:
    """Whether :func:`train` knows how to train ``config``."""
    return type(config) in _TRAINERS or callable(getattr(config, "train", None))


def train(config: Any, workdir: str | Path, *, overwrite: bool = False) -> str:
    """Trains the model ``config`` describes into ``workdir`` (its checkpoint goes to
    ``<workdir>/checkpoint``; an interrupted run resumes) and returns a one-line summary.

    ``config`` is a :class:`~jaxcf.training.TrainConfig` (a classifier and its feature
    density), :class:`~jaxcf.training.VAETrainConfig`,
    :class:`~jaxcf.training.AttGANTrainConfig`, :class:`~jaxcf.training.DiffusionTrainConfig`
    or :class:`~jaxcf.training.WGANTrainConfig`,
    or any object with a ``train(workdir)`` method returning such a summary (an experiment's
    job that trains several models).

    Raises:
      TypeError: a config of another type.
    """
    workdir = Path(workdir)
    trainer = _TRAINERS.get(type(config))
    if trainer is not None:
        return trainer(config, workdir, overwrite)
    if callable(getattr(config, "train", None)):
        return str(config.train(workdir))
    known = ", ".join(t.__name__ for t in _TRAINERS)
    raise TypeError(
        f"cannot train a {type(config).__name__}: expected one of {known}, or a config with a "
        "train(workdir) method"
    )
