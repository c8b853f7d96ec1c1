"""Training entry point pieces: optimiser schedule, checkpoint round trip, mismatch errors,
resume after an interruption."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxcf import checkpoint, training
from jaxcf.models import CNNConfig, MLPConfig, build
from jaxcf.training import TrainConfig, load_classifier, make_optimizer, train_and_evaluate


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


def test_sgd_schedule_cuts_learning_rate_at_boundaries():
    config = TrainConfig(learning_rate=0.1, momentum=0.0, lr_boundaries=(2, 3), lr_decay=0.1)
    tx = make_optimizer(config, steps_per_epoch=10)
    params = {"w": np.ones(3, np.float32)}
    state = tx.init(params)
    sizes = []
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
    real_accuracy = training.accuracy

    def dies_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is stopped during epoch 3
        return real_accuracy(*args, **kwargs)

    monkeypatch.setattr(training, "accuracy", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, tmp_path / "resumed")
    assert (tmp_path / "resumed" / training.PROGRESS_DIR).exists()
    monkeypatch.setattr(training, "accuracy", real_accuracy)

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
