"""Training entry point pieces: optimiser schedule, checkpoint round trip, mismatch errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxcf import checkpoint
from jaxcf.models import CNNConfig, build
from jaxcf.training import TrainConfig, load_classifier, make_optimizer


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
