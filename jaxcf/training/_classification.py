"""Training of the classifier zoo on a registered image data set, and its feature density.

The entry point ``train/main.py`` is a thin wrapper around :func:`train_and_evaluate`, which runs
:class:`ClassifierTask` through the shared loop (:func:`jaxcf.training.fit`): the train
state is the model plus an :class:`flax.nnx.Optimizer`, ``train_step``/``eval_step`` are jitted
NNX functions, and the result is an Orbax checkpoint with a metadata JSON (architecture config,
data set and its value domain, test accuracy, history, versions) and the fitted feature density
(DeDUCE needs it) saved beside the weights.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcf.core import validation
from jaxcf.data import dataset_names, load_dataset
from jaxcf.models import (
    DensityConfig,
    GaussianDensity,
    ModelConfig,
    ResNetConfig,
    build,
    checkpoint,
    config_to_dict,
    fit_density,
    refine_spectral_norms,
)
from jaxcf.training._loop import (
    PROGRESS_DIR,
    LoopConfig,
    Plan,
    commit,
    final_checkpoint,
    fit,
    save_result,
    write_progress,
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Attributes:
    model: architecture.
    dataset: a registered data set (:func:`jaxcf.data.dataset_names`), e.g. ``"mnist"``.
    optimizer: ``"sgd"`` (momentum, step schedule) or ``"adam"``.
    learning_rate: initial learning rate (> 0).
    momentum: SGD momentum in ``[0, 1)``.
    weight_decay: L2 weight decay added to the gradient (0 disables).
    lr_boundaries: epochs (may be fractional) after which the learning rate is multiplied by
      ``lr_decay``.
    lr_decay: factor (> 0) applied at each boundary.
    epochs: training epochs (> 0; may be fractional: the last one is cut short).
    batch_size: training batch size.
    train_examples: train on the first this many training examples (DeDUCE used 50,000).
    seed: initialisation and shuffling seed (>= 0).
    density: how the class-conditional feature density is fitted after training (the full
      Gaussian fit by default; see :class:`jaxcf.models.DensityConfig`). It does not change the
      training, so a run interrupted under another density config resumes.
    """

    model: ModelConfig = ResNetConfig()
    dataset: str = "mnist"
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
    density: DensityConfig = DensityConfig()

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"model must be a model config, got {type(self.model).__name__}")
        if not isinstance(self.density, DensityConfig):
            raise TypeError(f"density must be a DensityConfig, got {type(self.density).__name__}")
        if self.dataset not in dataset_names():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; registered: {', '.join(dataset_names())}"
            )
        validation.one_of(self, "optimizer", ("sgd", "adam"))
        validation.positive(self, "learning_rate", "lr_decay", "epochs")
        validation.unit_interval(self, "momentum")
        validation.non_negative(self, "weight_decay")
        object.__setattr__(self, "lr_boundaries", tuple(self.lr_boundaries))
        validation.non_negative_entries(self, "lr_boundaries")
        validation.at_least(self, 1, "batch_size", "train_examples")
        validation.at_least(self, 0, "seed")

    def loop_config(self) -> LoopConfig:
        """The loop schedule: evaluation and a progress checkpoint after every epoch."""
        return LoopConfig(batch_size=self.batch_size, epochs=self.epochs, seed=self.seed)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax transformation a config describes (learning-rate schedule included).

    Equal settings give the *same* transformation object: ``nnx.Optimizer`` keeps it as a
    static part of its graph, so a fresh one (new closures) would make :func:`train_step`
    trace and compile again for every classifier trained in a process (the augmentation
    experiment trains several of one architecture)."""
    boundaries = tuple(
        (int(round(b * steps_per_epoch)), config.lr_decay) for b in config.lr_boundaries
    )
    return _transformation(
        config.optimizer, config.learning_rate, config.momentum, config.weight_decay, boundaries
    )


@functools.cache
def _transformation(
    optimizer: str,
    learning_rate: float,
    momentum: float,
    weight_decay: float,
    boundaries: tuple[tuple[int, float], ...],
) -> optax.GradientTransformation:
    schedule = optax.piecewise_constant_schedule(learning_rate, dict(boundaries))
    if optimizer == "sgd":
        tx = optax.sgd(schedule, momentum=momentum)
    elif optimizer == "adam":
        tx = optax.adam(schedule)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    if weight_decay:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    return tx


def _loss(model: nnx.Module, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = model(images)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, logits


@nnx.jit
def train_step(
    model: nnx.Module, optimizer: nnx.Optimizer, images: jax.Array, labels: jax.Array
) -> jax.Array:
    """One SGD/Adam step in training mode (updates batch stats and spectral-norm vectors);
    returns the batch's mean cross-entropy."""
    (loss, _), grads = nnx.value_and_grad(_loss, has_aux=True)(model, images, labels)
    # optax's schedules and Adam's bias correction mix Python floats with int32 step counts,
    # which jax_numpy_dtype_promotion="strict" refuses; "standard" is what they are written for.
    with jax.numpy_dtype_promotion("standard"):
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
    """Accuracy in eval mode, in ``[0, 1]``; the model is left in eval mode."""
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


@dataclasses.dataclass(frozen=True, eq=False)
class ClassifierTask:
    """Cross-entropy training of a classifier (a :class:`jaxcf.training.Task`).

    Modules: ``"model"`` and its ``"optimizer"``. Batches are ``(images [B, H, W, C],
    labels [B])``. Evaluation: ``test_accuracy`` on ``(test_images, test_labels)``.
    """

    config: TrainConfig
    test_images: np.ndarray
    test_labels: np.ndarray

    def config_dict(self) -> dict[str, Any]:
        return training_dict(self.config)

    def init(self, seed: int, plan: Plan) -> dict[str, nnx.Pytree]:
        model = build(self.config.model, seed=seed)
        optimizer = nnx.Optimizer(
            model, make_optimizer(self.config, plan.steps_per_epoch), wrt=nnx.Param
        )
        model.train()
        modules = {"model": model, "optimizer": optimizer}
        commit(modules)
        return modules

    def train_step(
        self, modules: Mapping[str, Any], batch: tuple[jax.Array, jax.Array], key: jax.Array
    ) -> dict[str, jax.Array]:
        del key  # deterministic given the batch
        images, labels = batch
        return {"loss": train_step(modules["model"], modules["optimizer"], images, labels)}

    def evaluate(self, modules: Mapping[str, Any]) -> dict[str, float]:
        model = modules["model"]
        acc = accuracy(model, self.test_images, self.test_labels)
        model.train()
        return {"test_accuracy": acc}


def train_and_evaluate(
    config: TrainConfig, workdir: str | Path, *, overwrite: bool = False
) -> tuple[nnx.Module, GaussianDensity, dict]:
    """Trains a classifier, fits its feature density and saves both to ``workdir/checkpoint``.

    After every epoch the model and optimizer state are saved to ``workdir/progress``; a run
    killed part-way and restarted with the same config continues after the last finished epoch
    (same batches, bitwise the same result) and deletes it when done.

    Returns the trained model (eval mode), the density and the saved metadata.

    Raises:
      FileExistsError: ``workdir/checkpoint`` exists and ``overwrite`` is False (checked before
        training).
      ValueError: the data do not fit the model, or ``workdir/progress`` holds a run of another
        configuration.
    """
    workdir = Path(workdir)
    final = final_checkpoint(workdir, overwrite=overwrite)
    train = load_dataset(config.dataset, "train")
    test = load_dataset(config.dataset, "test")
    _check_fits(config.model, train)
    images, labels = train.inputs[: config.train_examples], train.labels[: config.train_examples]

    task = ClassifierTask(config, test.inputs, test.labels)
    _upgrade_legacy_progress(workdir / PROGRESS_DIR, task, len(images))
    result = fit(
        task,
        (images, labels),
        config.loop_config(),
        progress_dir=workdir / PROGRESS_DIR,
        desc=f"{config.model.kind} on {config.dataset}",
    )
    model = result.modules["model"]
    # In eval mode, where the vectors are used: SpectralConv's convolution takes another XLA
    # path in training mode, and the refined vectors would differ in their last bits.
    model.eval()
    refine_spectral_norms(model)  # make the eval-mode bound ||W|| <= c tight

    density, diagnostics = fit_density(
        extract_features(model, images),
        labels,
        num_classes=config.model.num_classes,
        config=config.density,
    )
    metadata = {
        "model": config_to_dict(config.model),
        "dataset": config.dataset,
        "data": {
            "input_shape": list(train.input_shape),
            "domain": None if train.domain is None else list(train.domain),
            "class_names": list(train.class_names),
        },
        "train_examples": len(images),
        "test_accuracy": result.history[-1]["test_accuracy"],
        "train_config": {k: v for k, v in training_dict(config).items() if k != "model"},
        "density": density_metadata(density, diagnostics, config.density),
    }
    stored = save_result(
        final, model, metadata, result, overwrite=overwrite, extras={"density": density.to_arrays()}
    )
    model.eval()
    return model, density, stored


def training_dict(config: TrainConfig) -> dict[str, Any]:
    """``dataclasses.asdict(config)`` without the density config: everything that determines
    the trained weights (the density is fitted afterwards)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "density"}


def density_metadata(density: GaussianDensity, diagnostics: Any, config: DensityConfig) -> dict:
    """The checkpoint's ``metadata["density"]``: kind and jitter as always, the fit's method and
    config unless it is the full fit (a checkpoint without them holds a full fit), and the
    numbers of its :class:`~jaxcf.models.DensityDiagnostics`."""
    out: dict[str, Any] = {"kind": "gaussian", "jitter": density.jitter}
    if config.method != "full":
        out.update(method=config.method, config=config.to_dict())
    out["diagnostics"] = diagnostics.to_dict()
    return out


def _upgrade_legacy_progress(path: Path, task: ClassifierTask, num_examples: int) -> None:
    """Rewrites the progress of a run interrupted under the per-epoch trainer that preceded
    the shared loop (the model as the checkpoint, the optimizer as the extra ``"optimizer"``,
    ``train_config`` and per-epoch ``history`` in the metadata) in the loop's format, so that
    it resumes where it stopped with bitwise the same parameters."""
    if not path.exists():
        return
    meta = checkpoint.read_metadata(path)
    if "progress" in meta or "train_config" not in meta:
        return  # the loop's own format, or not a classifier's: fit() judges it
    config = task.config
    stored = {k: v for k, v in meta["train_config"].items() if k != "density"}
    if stored != json.loads(json.dumps(training_dict(config))):
        raise ValueError(
            f"{path} holds an interrupted training run of another configuration; "
            "delete it or train into another workdir"
        )
    loop_config = config.loop_config()
    plan = Plan.make(loop_config, num_examples)
    modules = task.init(config.seed, plan)
    checkpoint.load(path, modules["model"])
    state = nnx.state(modules["optimizer"])
    stored = checkpoint.load_extras(path, "optimizer", nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, stored)
    nnx.update(modules["optimizer"], state)
    history = [
        {
            "step": h["step"],
            "epoch": round(h["step"] / plan.steps_per_epoch, 6),
            "loss": h["loss"],
            "test_accuracy": h["test_accuracy"],
        }
        for h in meta["history"]
    ]
    write_progress(
        path,
        task,
        loop_config,
        num_examples,
        modules,
        step=history[-1]["step"],
        history=history,
        seconds=meta.get("train_seconds", 0.0),
    )


def _check_fits(model: ModelConfig, data) -> None:
    if data.labels is None:
        raise ValueError(f"data set {data.name!r} has no labels to train a classifier on")
    if tuple(model.input_shape) != data.input_shape:
        raise ValueError(
            f"the model takes inputs of shape {tuple(model.input_shape)}, data set "
            f"{data.name!r} has {data.input_shape}"
        )
    if data.num_classes and model.num_classes != data.num_classes:
        raise ValueError(
            f"the model has {model.num_classes} classes, data set {data.name!r} has "
            f"{data.num_classes}"
        )
