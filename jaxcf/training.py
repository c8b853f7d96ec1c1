"""Training of the classifier zoo on MNIST / Fashion-MNIST, and the class-conditional density.

The entry point ``train/main.py`` is a thin wrapper around :func:`train_and_evaluate`, in the
style of the Flax examples: ``train_step``/``eval_step`` are jitted NNX functions, the train state
is the model plus an :class:`flax.nnx.Optimizer`, and the result is an Orbax checkpoint with a
metadata JSON (architecture config, data set, test accuracy, versions) and the fitted feature
density (DeDUCE needs it) saved beside the weights.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from jaxcf import checkpoint
from jaxcf.data import load_mnist
from jaxcf.density import GaussianDensity, fit_gaussians
from jaxcf.models import (
    ModelConfig,
    ResNetConfig,
    build,
    config_from_dict,
    config_to_dict,
    refine_spectral_norms,
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Attributes:
    model: architecture.
    dataset: ``"mnist"`` or ``"fashion_mnist"``.
    optimizer: ``"sgd"`` (momentum, step schedule) or ``"adam"``.
    learning_rate: initial learning rate.
    momentum: SGD momentum.
    weight_decay: L2 weight decay added to the gradient (0 disables).
    lr_boundaries: epochs (may be fractional) after which the learning rate is multiplied by
      ``lr_decay``.
    epochs: training epochs (may be fractional: the last one is cut short).
    batch_size: training batch size.
    train_examples: train on the first this many training images (DeDUCE used 50,000).
    seed: initialisation and shuffling seed.
    """

    model: ModelConfig = ResNetConfig()
    dataset: Literal["mnist", "fashion_mnist"] = "mnist"
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_boundaries: tuple[float, ...] = (25, 40)
    lr_decay: float = 0.1
    epochs: float = 50
    batch_size: int = 128
    train_examples: int = 50_000
    seed: int = 0


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax transformation a config describes (learning-rate schedule included)."""
    schedule = optax.piecewise_constant_schedule(
        config.learning_rate,
        {int(round(b * steps_per_epoch)): config.lr_decay for b in config.lr_boundaries},
    )
    if config.optimizer == "sgd":
        tx = optax.sgd(schedule, momentum=config.momentum)
    elif config.optimizer == "adam":
        tx = optax.adam(schedule)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    if config.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
    return tx


def _loss(model: nnx.Module, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = model(images)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, logits


@nnx.jit
def train_step(
    model: nnx.Module, optimizer: nnx.Optimizer, images: jax.Array, labels: jax.Array
) -> jax.Array:
    """One SGD/Adam step in training mode (updates batch stats and spectral-norm vectors)."""
    (loss, _), grads = nnx.value_and_grad(_loss, has_aux=True)(model, images, labels)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def eval_step(model: nnx.Module, images: jax.Array, labels: jax.Array) -> jax.Array:
    """Number of correct predictions in a batch (the model must be in eval mode)."""
    return jnp.sum(jnp.argmax(model(images), axis=-1) == labels)


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def accuracy(model: nnx.Module, images: np.ndarray, labels: np.ndarray, batch_size=1000) -> float:
    """Test accuracy in eval mode; the model is left in eval mode."""
    model.eval()
    correct = sum(
        int(eval_step(model, jnp.asarray(images[s]), jnp.asarray(labels[s])))
        for s in _batches(len(images), batch_size)
    )
    return correct / len(images)


def extract_features(model: nnx.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Penultimate features ``[N, D]`` in eval mode."""
    model.eval()
    fn = nnx.jit(lambda m, x: m.features(x))
    return np.concatenate(
        [np.asarray(fn(model, jnp.asarray(images[s]))) for s in _batches(len(images), batch_size)]
    )


def train_and_evaluate(
    config: TrainConfig, workdir: str | Path, *, overwrite: bool = False
) -> tuple[nnx.Module, GaussianDensity, dict]:
    """Trains a classifier, fits its feature density and saves both to ``workdir/checkpoint``.

    After every epoch but the last, the model and optimizer state are saved to
    ``workdir/progress``; a run killed part-way and restarted with the same config continues
    after the last finished epoch (same batches, same result) and deletes it when done.

    Returns the trained model (eval mode), the density and the saved metadata.
    """
    workdir = Path(workdir)
    train = load_mnist("train", dataset=config.dataset)
    test = load_mnist("test", dataset=config.dataset)
    images, labels = train.images[: config.train_examples], train.labels[: config.train_examples]
    n = len(images)
    steps_per_epoch = n // config.batch_size  # drop the ragged last batch: one compiled shape
    total_steps = int(round(config.epochs * steps_per_epoch))

    model = build(config.model, seed=config.seed)
    optimizer = nnx.Optimizer(model, make_optimizer(config, steps_per_epoch), wrt=nnx.Param)
    rng = np.random.default_rng(config.seed)
    first_epoch, step, history, seconds_before = 0, 0, [], 0.0
    progress = _load_progress(workdir / PROGRESS_DIR, config, model, optimizer)
    if progress is not None:
        first_epoch, step, history, seconds_before = progress
        tqdm.write(f"resuming training after epoch {first_epoch} from {workdir / PROGRESS_DIR}")
    for _ in range(first_epoch):
        rng.permutation(n)  # replay the shuffles of the finished epochs: same order as unbroken
    start = time.time()
    n_epochs = int(np.ceil(config.epochs))
    for epoch in range(first_epoch, n_epochs):
        model.train()
        order = rng.permutation(n)
        steps = min(steps_per_epoch, total_steps - step)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{n_epochs}", unit="step", leave=False)
        loss_sum = 0.0
        for i in bar:
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            loss = train_step(model, optimizer, jnp.asarray(images[idx]), jnp.asarray(labels[idx]))
            step += 1
            if i % 20 == 0:
                loss_sum = float(loss)
                bar.set_postfix(loss=f"{loss_sum:.4f}")
        acc = accuracy(model, test.images, test.labels)
        history.append({"epoch": epoch + 1, "step": step, "loss": loss_sum, "test_accuracy": acc})
        tqdm.write(f"epoch {epoch + 1}: loss {loss_sum:.4f}, test accuracy {acc:.4f}")
        if epoch + 1 < n_epochs:
            elapsed = seconds_before + time.time() - start
            _save_progress(workdir / PROGRESS_DIR, config, model, optimizer, history, elapsed)
    train_seconds = seconds_before + time.time() - start
    refine_spectral_norms(model)  # make the eval-mode bound ||W|| <= c tight

    density = fit_gaussians(
        extract_features(model, images), labels, num_classes=config.model.num_classes
    )
    metadata = {
        "model": config_to_dict(config.model),
        "dataset": config.dataset,
        "train_examples": n,
        "test_accuracy": history[-1]["test_accuracy"],
        "history": history,
        "train_config": {k: v for k, v in dataclasses.asdict(config).items() if k != "model"},
        "train_seconds": train_seconds,
        "density": {"kind": "gaussian", "jitter": density.jitter},
    }
    checkpoint.save(
        workdir / "checkpoint",
        model,
        metadata=metadata,
        extras={"density": density.to_arrays()},
        overwrite=overwrite,
    )
    shutil.rmtree(workdir / PROGRESS_DIR, ignore_errors=True)
    model.eval()
    return model, density, checkpoint.read_metadata(workdir / "checkpoint")


# Training state after the last finished epoch, so that a killed run resumes there.
PROGRESS_DIR = "progress"


def _config_json(config: TrainConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _save_progress(path: Path, config, model, optimizer, history: list, seconds: float) -> None:
    """Model, optimizer state and history after an epoch, replacing the previous ones."""
    checkpoint.save(
        path,
        model,
        metadata={
            "model": config_to_dict(config.model),
            "train_config": _config_json(config),
            "history": history,
            "train_seconds": seconds,
        },
        extras={"optimizer": nnx.to_pure_dict(nnx.state(optimizer))},
        overwrite=True,
    )


def _load_progress(path: Path, config, model, optimizer) -> tuple[int, int, list, float] | None:
    """Restores a run interrupted after an epoch; ``(epochs done, step, history, seconds)``."""
    if not path.exists():
        return None
    meta = checkpoint.read_metadata(path)
    if meta.get("train_config") != _config_json(config):
        raise ValueError(
            f"{path} holds an interrupted training run of another configuration; "
            "delete it or train into another workdir"
        )
    checkpoint.load(path, model)
    state = nnx.state(optimizer)
    like = nnx.to_pure_dict(state)
    nnx.replace_by_pure_dict(state, checkpoint.load_extras(path, "optimizer", like))
    nnx.update(optimizer, state)
    history = meta["history"]
    return len(history), history[-1]["step"], history, meta["train_seconds"]


def load_classifier(directory: str | Path) -> tuple[nnx.Module, GaussianDensity | None, dict]:
    """Loads a checkpoint of :func:`train_and_evaluate`: model (eval mode), density, metadata.

    The architecture is rebuilt from the stored config, so no code of the caller has to know it.
    """
    directory = Path(directory)
    metadata = checkpoint.read_metadata(directory)
    model = build(config_from_dict(metadata["model"]))
    checkpoint.load(directory, model)
    model.eval()
    density = None
    if "density" in metadata.get("extras", {}):
        arrays = checkpoint.load_extras(
            directory,
            "density",
            GaussianDensity.abstract_arrays(
                num_classes=model.config.num_classes, feature_dim=_feature_dim(model)
            ),
        )
        density = GaussianDensity.from_arrays(arrays)
    return model, density, metadata


def _feature_dim(model: nnx.Module) -> int:
    shape = (1, *model.config.input_shape)
    return jax.eval_shape(
        lambda x: model.features(x), jax.ShapeDtypeStruct(shape, jnp.float32)
    ).shape[1]
