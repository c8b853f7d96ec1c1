"""A tiny ECG generator job (a 4-unit BiLSTM classifier, a 4-unit series generator with separate
condition embeddings) on real ECG5000 beats: the generator keeps its EMA copies at the asked
steps, a run killed part-way resumes to bitwise the same generator and the same kept copies as
an unbroken one (also under other keep_steps, which are no part of the run's identity), and the
learning curve's last point is the protocol's own generator row."""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

import jaxcf.training._counterfactual as counterfactual
from explain.amortised import ExplainConfig, GeneratorJob, run_protocol, train_models
from explain.amortised.curve import add_reference, evaluate_curve, kept_generators, write_curve
from jaxcf.data import load_dataset
from jaxcf.models import BiLSTMConfig, checkpoint, load_generator
from jaxcf.models.generators import (
    SeriesDiscriminatorConfig,
    SeriesGeneratorConfig,
    build,
    config_from_dict,
)
from jaxcf.runner import RunnerConfig
from jaxcf.training import PROGRESS_DIR, GeneratorTrainConfig, TrainConfig

pytestmark = pytest.mark.standard_promotion  # training runs optax's Adam

KEEP = (1, 3, 6)


def _job(**generator) -> GeneratorJob:
    classifier = TrainConfig(
        model=BiLSTMConfig(input_shape=(140, 1), num_classes=2, hidden=4),
        dataset="ecg5000",
        optimizer="adam",
        learning_rate=1e-2,
        lr_boundaries=(),
        epochs=1,
        batch_size=64,
        train_examples=128,
    )
    train = GeneratorTrainConfig(
        generator=SeriesGeneratorConfig(
            input_shape=(140, 1), cond_dim=2, hidden=4, noise_dim=2, cond_embed=3
        ),
        discriminator=SeriesDiscriminatorConfig(input_shape=(140, 1), cond_dim=2, hidden=4),
        lr_generator=1e-2,
        lr_discriminator=1e-2,
        batch_size=16,
        steps=6,
        eval_every=6,
        save_every=2,
        keep_steps=KEEP,
        val_examples=32,
    )
    train = dataclasses.replace(train, **generator)
    return GeneratorJob("ecg5000", classifier, train, train_examples=128)


def _params(module) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(nnx.state(module, nnx.Param))]


def _assert_same(a, b) -> None:
    for x, y in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _snapshot(workdir, step):
    return workdir / "models" / "generator" / "snapshots" / f"step_{step:06d}"


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("unbroken")
    classifier, generator, meta = train_models(_job(), workdir)
    return workdir, classifier, generator, meta


def test_condition_embeddings_are_an_option_that_defaults_off():
    plain = build(SeriesGeneratorConfig(hidden=4, noise_dim=2))
    embedded = build(SeriesGeneratorConfig(hidden=4, noise_dim=2, cond_embed=3))
    assert not hasattr(plain, "embed_m")
    assert embedded.embed_m.kernel.shape == embedded.embed_t.kernel.shape == (2, 3)
    # The LSTM reads x (1), noise (2) and both embedded conditions (3 + 3).
    assert embedded.rnn.fwd.in_features == 1 + 2 + 6
    assert plain.rnn.fwd.in_features == 1 + 2 + 4
    # A checkpoint written before the option existed (no cond_embed in its config) still loads.
    assert config_from_dict({"kind": "series_generator", "hidden": 4}).cond_embed == 0
    with pytest.raises(ValueError, match="cond_embed"):
        SeriesGeneratorConfig(cond_embed=-1)
    with pytest.raises(ValueError, match="keep_steps"):
        _job(keep_steps=(7,))


def test_a_killed_run_resumes_to_the_unbroken_generator_and_kept_copies(
    unbroken, tmp_path, monkeypatch
):
    workdir, classifier, generator, meta = unbroken
    assert [s for s, _ in kept_generators(workdir)] == list(KEEP)
    assert checkpoint.read_metadata(_snapshot(workdir, 3))["step"] == 3
    assert "keep_steps" not in meta["train_config"]
    _assert_same(load_generator(_snapshot(workdir, 6), classifier)[0], generator)
    # The copies differ from step to step: they are the run's, not one model saved thrice.
    first = load_generator(_snapshot(workdir, 1), classifier)[0]
    assert not np.array_equal(_params(first)[-1], _params(generator)[-1])

    broken = tmp_path / "broken"
    shutil.copytree(workdir / "models" / "classifier", broken / "models" / "classifier")
    step = counterfactual.train_step
    calls = {"n": 0}

    def dies_in_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return step(*args, **kwargs)

    monkeypatch.setattr(counterfactual, "train_step", dies_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_models(_job(), broken)
    progress = broken / "models" / "generator" / PROGRESS_DIR
    assert checkpoint.read_metadata(progress)["step"] == 4
    assert [s for s, _ in kept_generators(broken)] == [1, 3]
    monkeypatch.setattr(counterfactual, "train_step", step)

    # Resumed under other keep_steps: they are no part of the run's identity.
    _, resumed, resumed_meta = train_models(_job(keep_steps=(1, 3, 5, 6)), broken)
    _assert_same(resumed, generator)
    assert resumed_meta["history"] == meta["history"]
    assert [s for s, _ in kept_generators(broken)] == [1, 3, 5, 6]
    for s in KEEP:
        _assert_same(
            load_generator(_snapshot(broken, s))[0], load_generator(_snapshot(workdir, s))[0]
        )


def test_curve_ends_at_the_protocols_generator_row(unbroken, tmp_path):
    workdir = unbroken[0]
    config = ExplainConfig(
        job=_job(),
        queries=12,
        num_cfs=2,
        peers=(),
        soft_queries=0,
        mmd_reference=64,
        grid_queries=2,
        runner=RunnerConfig(chunk_size=12),
        progress=False,
    )
    doc = evaluate_curve(config, workdir)
    assert [p["step"] for p in doc["points"]] == list(KEEP)
    report = run_protocol(config, workdir)
    row = report["methods"]["generator"]
    last = doc["points"][-1]
    for key in ("validity", "mmd2", "l1", "diversity"):
        assert last[key] == pytest.approx(row[key], rel=1e-6), key
    assert last["class_mmd2"] == pytest.approx(row["class_mmd2"], rel=1e-6)
    assert doc["bandwidth"] == pytest.approx(report["bandwidth"]["value"])
    # The kernel table's own scale reads the last point again; wider kernels read lower.
    kernels = doc["kernels"]
    assert [k["scale"] for k in kernels] == [1.0, 2.5, 5.0]
    assert kernels[0]["class_mmd2"] == pytest.approx(last["class_mmd2"], rel=1e-6)
    assert kernels[2]["real_other_classes"][0] < kernels[0]["real_other_classes"][0]
    assert doc["pace"]["finished"] and doc["pace"]["step"] == 6
    assert len(load_dataset("ecg5000", "test")) >= doc["queries"] == 12

    doc = add_reference(doc, workdir / "report" / "report.json")
    assert doc["reference"]["step"] == 6
    paths = write_curve(doc, tmp_path / "curve")
    assert [p.suffix for p in paths] == [".json", ".md", ".png"]
    assert json.loads(paths[0].read_text())["points"][0]["step"] == 1
    text = paths[1].read_text()
    assert "| 3 |" in text and "| paper" in text and "small config (6" in text
    assert "| 2.5x |" in text
    # A hand-written reading survives writing the page again.
    paths[1].write_text(text.replace("## Points", "## Reading\n\nFlat.\n\n## Points"))
    write_curve(doc, tmp_path / "curve")
    again = paths[1].read_text()
    assert again.count("## Reading\n\nFlat.\n") == 1 and again.count("## Points") == 1
    assert paths[2].stat().st_size > 1000
