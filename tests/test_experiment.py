"""The experiment skeleton and the ``jaxcf`` command: models found or trained by spec, target
rules, the run store (a finished run reused by any experiment asking for the same explainer,
queries and seed), a user's experiment from a config file kept outside the repository, and the
command's subcommands."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from jaxcf import cli
from jaxcf.core import Results
from jaxcf.experiment import (
    HTML_DIR,
    REPORT_DIR,
    RUNS_DIR,
    DataSpec,
    Experiment,
    ExperimentConfig,
    ModelSpec,
    every_other_class,
    flip_targets,
    model_dir,
    resolve_model,
    run_key,
    targets_by_rule,
    train,
    write_html_report,
)
from jaxcf.methods import DeDUCEConfig, FGSMConfig, MethodSpec, make
from jaxcf.models import CNNConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import TrainConfig

# ----------------------------------------------------------------------------- target rules


def test_every_other_class_pairs_each_query_with_the_other_classes_in_order():
    index, target = every_other_class(np.array([2, 0]), 4)
    np.testing.assert_array_equal(index, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(target, [0, 1, 3, 1, 2, 3])
    assert target.dtype == np.int32


def test_target_rules():
    pred = np.array([0, 1, 2, 2])
    np.testing.assert_array_equal(targets_by_rule("next", pred, 3), [1, 2, 0, 0])
    np.testing.assert_array_equal(targets_by_rule(1, pred, 3), [1, 1, 1, 1])
    logits = np.array([[3.0, 2.0, 1.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(targets_by_rule("second", pred, 3, logits=logits), [1, 2, 0, 0])
    np.testing.assert_array_equal(targets_by_rule("opposite", np.array([0, 1]), 2), [1, 0])
    flipped = targets_by_rule("flip", pred, 3, seed=5)
    assert np.all(flipped != pred)
    np.testing.assert_array_equal(flipped, flip_targets(pred, 3, 5))
    for rule, error in (("opposite", "two classes"), ("sideways", "unknown"), (3, "not among")):
        with pytest.raises(ValueError, match=error):
            targets_by_rule(rule, pred, 3)
    with pytest.raises(ValueError, match="logits"):
        targets_by_rule("second", pred, 3)


# ----------------------------------------------------------------------------- models


def test_model_specs_validate():
    with pytest.raises(ValueError, match="checkpoint or a training config"):
        ModelSpec()
    with pytest.raises(TypeError, match="config"):
        ModelSpec(train="train/configs/cnn_mnist.py")
    with pytest.raises(TypeError, match="cannot train"):
        train(CNNConfig(), "nowhere")


def _tiny_classifier() -> TrainConfig:
    return TrainConfig(
        model=CNNConfig(channels=(4, 8), hidden=16),
        optimizer="adam",
        learning_rate=3e-3,
        lr_boundaries=(),
        epochs=1,
        batch_size=64,
        train_examples=512,
    )


@pytest.mark.standard_promotion  # optax's Adam trains it
def test_a_missing_model_is_trained_once_into_its_folder_then_found(tmp_path, capsys):
    spec = ModelSpec(train=_tiny_classifier())
    first = resolve_model("classifier", "classifier", spec, tmp_path)
    assert (model_dir(tmp_path, "classifier") / "checkpoint").is_dir()
    assert "training one" in capsys.readouterr().out
    again = resolve_model("classifier", "classifier", spec, tmp_path)
    assert "training one" not in capsys.readouterr().out
    assert again.metadata["test_accuracy"] == first.metadata["test_accuracy"]
    assert first.density is not None and first.summary()["dataset"] == "mnist"
    given = ModelSpec(checkpoint=str(model_dir(tmp_path, "classifier")))
    assert resolve_model("other", "classifier", given, tmp_path / "elsewhere").source == str(
        model_dir(tmp_path, "classifier")
    )
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_model("x", "classifier", ModelSpec(checkpoint=str(tmp_path / "none")), tmp_path)
    with pytest.raises(FileNotFoundError, match="no bundled model"):
        resolve_model("x", "classifier", ModelSpec(checkpoint="bundled:nope"), tmp_path)


# ----------------------------------------------------------------------------- the run store


def test_a_runs_key_covers_its_inputs_and_seed_but_not_its_chunking(trained, queries):
    model, density, _ = trained
    x, t = queries
    deduce = make("deduce", DeDUCEConfig(max_iter=10), classifier=model, density=density)
    key = run_key(deduce, x, t, None, num_cfs=1, seed=0)
    assert key == run_key(deduce, x.copy(), t.copy(), None, num_cfs=1, seed=0)
    other = make("deduce", DeDUCEConfig(max_iter=11), classifier=model, density=density)
    changed = [
        run_key(other, x, t, None, num_cfs=1, seed=0),
        run_key(deduce, x, (t + 1) % 10, None, num_cfs=1, seed=0),
        run_key(deduce, x, t, None, num_cfs=1, seed=1),
        run_key(deduce, x, t, None, num_cfs=2, seed=0),
        run_key(deduce, x, t, np.ones(len(x), np.int32), num_cfs=1, seed=0),
    ]
    assert key not in changed and len(set(changed)) == len(changed)


def _user_config(checkpoint: str, **overrides) -> ExperimentConfig:
    base = dict(
        classifier=ModelSpec(checkpoint=checkpoint),
        data=DataSpec("mnist", split="test", queries=2, seed=1),
        methods=(
            MethodSpec("deduce", DeDUCEConfig(max_iter=40)),
            MethodSpec("fgsm", FGSMConfig(eps=0.1, schedule=(0.3,))),
        ),
        runner=RunnerConfig(chunk_size=9, slots=6),
        title="A user's experiment",
        progress=False,
    )
    return ExperimentConfig(**{**base, **overrides})


def test_the_generic_experiment_runs_reports_and_reuses_its_runs(trained_dir, tmp_path, capsys):
    config = _user_config(str(trained_dir / "checkpoint"))
    assert isinstance(config, Experiment)
    doc = config.run(tmp_path)
    # Two queries, each towards the 9 classes it is not predicted as.
    assert doc["rows"] == 18 and set(doc["summaries"]) == {"deduce", "fgsm"}
    report = tmp_path / REPORT_DIR
    assert json.loads((report / "metrics.json").read_text()) == doc
    assert "# A user's experiment" in (report / "report.md").read_text()
    for png in ("grid.png", "l0.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = tmp_path / REPORT_DIR / HTML_DIR / "index.html"
    assert html.is_file() and "user" in (html.parent / "data" / "site.js").read_text()
    # The generic HTML report of any run store (what jaxcf report --html writes for protocols
    # that do not write their own): every finished run, labelled by its folder.
    generic = write_html_report(tmp_path / "generic", store=tmp_path / RUNS_DIR, title="runs")
    assert generic.is_file() and (generic.parent / "data" / "site.js").is_file()
    runs = sorted((tmp_path / RUNS_DIR).iterdir())
    assert [p.name.rsplit("-", 1)[0] for p in runs] == ["deduce", "fgsm"]
    deduce = Results.load(runs[0])
    assert len(deduce) == 18 and np.all(np.bincount(deduce.target, minlength=10) <= 2)
    assert doc["models"]["classifier"]["source"] == str(trained_dir / "checkpoint")
    # Another experiment in another workdir, chunked otherwise, sharing the run store: it
    # reads both runs instead of computing them, and reports the same numbers.
    shared = _user_config(
        str(trained_dir / "checkpoint"),
        runner=RunnerConfig(chunk_size=5, slots=2),
        runs=str(tmp_path / RUNS_DIR),
        progress=True,
    )
    capsys.readouterr()
    again = shared.run(tmp_path / "second")
    assert again["summaries"] == doc["summaries"]
    assert capsys.readouterr().out.count("reusing the finished run") == 2
    assert not (tmp_path / "second" / RUNS_DIR).exists()


def test_experiment_configs_refuse_what_cannot_run():
    spec = ModelSpec(checkpoint="bundled:demo_resnet_w32")
    data = DataSpec("mnist")
    methods = (MethodSpec("fgsm"),)
    with pytest.raises(ValueError, match="methods"):
        ExperimentConfig(spec, data, ())
    with pytest.raises(ValueError, match="targets"):
        ExperimentConfig(spec, data, methods, targets="sideways")
    with pytest.raises(TypeError, match="ModelSpec"):
        ExperimentConfig("bundled:demo_resnet_w32", data, methods)
    with pytest.raises(ValueError, match="distinct and new"):
        ExperimentConfig(spec, data, methods, models=(("density", spec),))
    with pytest.raises(ValueError, match="queries"):
        DataSpec("mnist", queries=0)


# ----------------------------------------------------------------------------- the command


def test_jaxcf_explain_and_report_run_a_config_kept_outside_the_repository(
    trained_dir, tmp_path, capsys
):
    """The config file lives in a temporary folder, imports only the installed library, and
    overrides on the command line reach it; ``jaxcf report`` rebuilds it from the workdir."""
    path = tmp_path / "elsewhere" / "my_experiment.py"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(
            f"""
            from jaxcf.experiment import DataSpec, ExperimentConfig, ModelSpec
            from jaxcf.methods import FGSMConfig, MethodSpec

            def get_config():
                return ExperimentConfig(
                    classifier=ModelSpec(checkpoint={str(trained_dir / "checkpoint")!r}),
                    data=DataSpec("mnist", queries=3),
                    targets="next",
                    methods=(MethodSpec("fgsm", FGSMConfig(eps=0.1)),),
                    progress=False,
                )
            """
        )
    )
    work = tmp_path / "work"
    assert cli.main(["explain", str(path), "--workdir", str(work), "--config.data.queries=2"]) == 0
    metrics = json.loads((work / REPORT_DIR / "metrics.json").read_text())
    assert metrics["rows"] == 2  # the override reached the config
    recorded = json.loads((work / cli.EXPERIMENT_FILE).read_text())
    assert recorded["overrides"] == ["--config.data.queries=2"]
    (work / REPORT_DIR / "metrics.json").unlink()
    assert cli.main(["report", str(work)]) == 0
    assert json.loads((work / REPORT_DIR / "metrics.json").read_text())["rows"] == 2
    assert "wrote" in capsys.readouterr().out


def test_the_command_lists_methods_and_refuses_bad_input(capsys, tmp_path):
    assert cli.main(["methods", "deduce"]) == 0
    assert "DeDUCEConfig; needs classifier, density" in capsys.readouterr().out
    assert cli.main([]) == 2 and "usage: jaxcf COMMAND" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["methods", "nope"])
    assert "unknown method" in capsys.readouterr().err
    not_an_experiment = tmp_path / "train_config.py"
    not_an_experiment.write_text(
        "from jaxcf.training import TrainConfig\n\ndef get_config():\n    return TrainConfig()\n"
    )
    with pytest.raises(SystemExit):
        cli.main(["explain", str(not_an_experiment), "--workdir", str(tmp_path / "w")])
    assert "not an experiment" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["report", str(tmp_path)])
    assert "run jaxcf explain into it first" in capsys.readouterr().err
