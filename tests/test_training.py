"""Classifier training: optimiser schedule, checkpoint round trip, mismatch errors, resume after
an interruption, determinism, config validation."""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from jaxcf import training
from jaxcf.models import CNNConfig, MLPConfig, build, checkpoint, config_to_dict, load_classifier
from jaxcf.training import TrainConfig, make_optimizer, train_and_evaluate
from jaxcf.training import _classification as classification


def test_checkpoint_metadata_and_round_trip(trained_dir, mnist_test):
    meta = json.loads((trained_dir / "checkpoint" / "metadata.json").read_text())
    assert meta["dataset"] == "mnist"
    assert meta["model"]["kind"] == "cnn"
    assert 0.85 < meta["test_accuracy"] <= 1.0  # one epoch on 6k real images
    assert {"jax", "flax"} <= set(meta["versions"])
    model, density, _ = load_classifier(trained_dir / "checkpoint")
    again, density2, _ = load_classifier(trained_dir / "checkpoint")
    x = mnist_test.images[:8]
    np.testing.assert_array_equal(np.asarray(model.logits(x)), np.asarray(again.logits(x)))
    z = model.features(x)
    np.testing.assert_array_equal(np.asarray(density.log_prob(z)), np.asarray(density2.log_prob(z)))


def test_loading_into_another_architecture_is_a_clear_error(trained_dir):
    wrong = build(CNNConfig(channels=(16, 16), hidden=32))
    with pytest.raises(checkpoint.CheckpointMismatchError, match="conv1"):
        checkpoint.load(trained_dir / "checkpoint", wrong)


@pytest.mark.standard_promotion  # optax's Adam inside the train step
def test_a_second_classifier_of_the_same_kind_trains_without_recompiling(mnist_test):
    """The optimiser is a static part of the step's graph: equal settings must give the same
    transformation, or every classifier trained in a process (seeds, augmentation) traces and
    compiles the step again."""
    from jaxcf.training import ClassifierTask, fit

    config = TrainConfig(
        model=CNNConfig(channels=(4, 8), hidden=8),
        optimizer="adam",
        learning_rate=1e-3,
        lr_boundaries=(0.5,),
        epochs=1,
        batch_size=32,
        train_examples=64,
    )
    data = (mnist_test.images[:64], mnist_test.labels[:64])

    def train(seed: int) -> None:
        c = dataclasses.replace(config, seed=seed)
        fit(ClassifierTask(c, *data), data, c.loop_config(), desc="cnn")

    train(0)
    compiled = classification.train_step.jitted_fn._cache_size()
    train(1)
    assert classification.train_step.jitted_fn._cache_size() == compiled
    other = dataclasses.replace(config, learning_rate=2e-3)
    assert make_optimizer(other, 10) is not make_optimizer(config, 10)
    assert make_optimizer(dataclasses.replace(config, seed=5), 10) is make_optimizer(config, 10)


def test_sgd_schedule_cuts_learning_rate_at_boundaries():
    config = TrainConfig(learning_rate=0.1, momentum=0.0, lr_boundaries=(2, 3), lr_decay=0.1)
    tx = make_optimizer(config, steps_per_epoch=10)
    params = {"w": np.ones(3, np.float32)}
    state = tx.init(params)
    sizes = []
    with jax.numpy_dtype_promotion("standard"):  # as train_step runs optax (int32 step counts)
        for _ in range(35):
            updates, state = tx.update({"w": np.ones(3, np.float32)}, state, params)
            sizes.append(float(-updates["w"][0]))
    np.testing.assert_allclose(sizes[:20], 0.1, rtol=1e-6)
    np.testing.assert_allclose(sizes[20:30], 0.01, rtol=1e-6)
    np.testing.assert_allclose(sizes[30:], 0.001, rtol=1e-5)


def test_killed_training_resumes_after_last_finished_epoch(tmp_path, monkeypatch):
    config = TrainConfig(
        model=MLPConfig(hidden=16),
        epochs=3,
        lr_boundaries=(2,),
        batch_size=100,
        train_examples=1000,
    )
    unbroken, _, meta = train_and_evaluate(config, tmp_path / "unbroken")

    calls = []
    real_accuracy = classification.accuracy

    def dies_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is stopped during epoch 3
        return real_accuracy(*args, **kwargs)

    monkeypatch.setattr(classification, "accuracy", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path / "resumed")
    assert (tmp_path / "resumed" / training.PROGRESS_DIR).exists()
    monkeypatch.setattr(classification, "accuracy", real_accuracy)

    with pytest.raises(ValueError, match="another configuration"):
        train_and_evaluate(dataclasses.replace(config, seed=1), tmp_path / "resumed")
    resumed, _, meta2 = train_and_evaluate(config, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / training.PROGRESS_DIR).exists()
    assert [h["epoch"] for h in meta2["history"]] == [1, 2, 3]
    assert meta2["history"] == meta["history"]
    for a, b in zip(
        jax.tree.leaves(nnx.state(unbroken)), jax.tree.leaves(nnx.state(resumed)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_progress_of_the_per_epoch_trainer_still_resumes(tmp_path, monkeypatch):
    """A run interrupted under the trainer that preceded the shared loop (its progress: the model
    as a checkpoint, the optimizer as an extra, per-epoch history) resumes bitwise."""
    config = TrainConfig(
        model=MLPConfig(hidden=16), epochs=2, lr_boundaries=(1,), batch_size=100, train_examples=600
    )
    unbroken, _, _ = train_and_evaluate(config, tmp_path / "unbroken")

    real_accuracy = classification.accuracy
    calls = []

    def dies_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_accuracy(*args, **kwargs)

    monkeypatch.setattr(classification, "accuracy", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path / "legacy")
    monkeypatch.undo()

    # Rewrite the progress after epoch 1 as the old trainer wrote it.
    progress = tmp_path / "legacy" / training.PROGRESS_DIR
    accuracy = checkpoint.read_metadata(progress)["history"][0]["test_accuracy"]
    task = classification.ClassifierTask(config, np.zeros((1, 28, 28, 1), np.float32), np.zeros(1))
    modules = task.init(config.seed, training.Plan.make(config.loop_config(), 600))
    checkpoint.load(progress, modules)
    shutil.rmtree(progress)
    checkpoint.save(
        progress,
        modules["model"],
        metadata={
            "model": config_to_dict(config.model),
            "train_config": json.loads(json.dumps(dataclasses.asdict(config))),
            "history": [{"epoch": 1, "step": 6, "loss": 0.5, "test_accuracy": accuracy}],
            "train_seconds": 1.0,
        },
        extras={"optimizer": nnx.to_pure_dict(nnx.state(modules["optimizer"]))},
    )
    with pytest.raises(ValueError, match="another configuration"):
        train_and_evaluate(dataclasses.replace(config, seed=1), tmp_path / "legacy")
    resumed, _, meta = train_and_evaluate(config, tmp_path / "legacy")
    assert [(h["step"], h["loss"]) for h in meta["history"]][0] == (6, 0.5)
    assert [h["step"] for h in meta["history"]] == [6, 12]
    for a, b in zip(_state(unbroken), _state(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def _state(model: nnx.Module) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Not(nnx.RngState)))]


def test_same_config_and_seed_give_bitwise_identical_parameters(tmp_path):
    config = TrainConfig(
        model=MLPConfig(hidden=16), epochs=1, lr_boundaries=(), batch_size=100, train_examples=600
    )
    first, density1, meta1 = train_and_evaluate(config, tmp_path / "first")
    second, density2, meta2 = train_and_evaluate(config, tmp_path / "second")
    for a, b in zip(_state(first), _state(second), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for a, b in zip(density1.to_arrays().values(), density2.to_arrays().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert meta1["history"] == meta2["history"]
    other, _, _ = train_and_evaluate(dataclasses.replace(config, seed=1), tmp_path / "other")
    assert not np.array_equal(_state(other)[0], _state(first)[0])


def test_checkpoint_records_the_data_set_and_its_domain(trained_dir):
    meta = checkpoint.read_metadata(trained_dir / "checkpoint")
    assert meta["data"] == {
        "input_shape": [28, 28, 1],
        "domain": [0.0, 1.0],
        "class_names": [str(d) for d in range(10)],
    }
    assert [h["step"] for h in meta["history"]] == [6000 // 64]
    assert set(meta["history"][0]) == {"step", "epoch", "loss", "test_accuracy"}


def test_existing_checkpoint_is_refused_before_training(trained_dir):
    config = TrainConfig(model=MLPConfig(hidden=16), epochs=1, train_examples=100)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        train_and_evaluate(config, trained_dir)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": -1},
        {"epochs": 0},
        {"epochs": float("inf")},
        {"batch_size": 0},
        {"batch_size": 12.5},
        {"learning_rate": 0.0},
        {"learning_rate": -0.1},
        {"momentum": 1.0},
        {"weight_decay": -1e-4},
        {"lr_decay": 0.0},
        {"lr_boundaries": (-1,)},
        {"train_examples": 0},
        {"seed": -1},
        {"optimizer": "rmsprop"},
        {"dataset": "kmnist"},
    ],
)
def test_train_config_rejects_impossible_values(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_train_config_names_its_data_set_through_the_registry():
    from jaxcf.data import dataset_names

    with pytest.raises(ValueError, match="registered: " + ", ".join(sorted(dataset_names()))):
        TrainConfig(dataset="cifar10")
    with pytest.raises(TypeError, match="model config"):
        TrainConfig(model={"kind": "mlp"})
    config = TrainConfig(dataset="fashion_mnist", lr_boundaries=[1, 2])
    assert config.lr_boundaries == (1, 2)  # hashable, and equal to its JSON round trip's tuple
    assert config.loop_config().batch_size == config.batch_size


def test_public_names_of_the_old_module_still_import():
    for name in ("PROGRESS_DIR", "accuracy", "extract_features", "make_optimizer", "train_step"):
        assert hasattr(training, name)
