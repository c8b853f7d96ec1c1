"""Config files and their command-line overrides (``--config.FIELD=VALUE``)."""

import argparse
import dataclasses
from pathlib import Path

import pytest

from jaxcf import cli
from jaxcf.core import load_config, override, override_all
from jaxcf.core.config_file import add_config_argument, parse_args, split_overrides
from jaxcf.models import CNNConfig

_ROOT = Path(__file__).resolve().parents[1]
CNN_MNIST = _ROOT / "train" / "configs" / "cnn_mnist.py"
AIP_CELEBA = _ROOT / "explain" / "aip" / "configs" / "aip_celeba.py"


@pytest.fixture(scope="module")
def train_config():
    return load_config(CNN_MNIST)


@pytest.mark.parametrize(
    "field, text, read",
    [
        ("epochs", "0.5", lambda c: c.epochs == 0.5),
        ("epochs", "2", lambda c: c.epochs == 2.0 and isinstance(c.epochs, float)),
        ("batch_size", "64", lambda c: c.batch_size == 64),
        ("optimizer", "sgd", lambda c: c.optimizer == "sgd"),  # no quotes needed
        ("optimizer", "'sgd'", lambda c: c.optimizer == "sgd"),
        ("lr_boundaries", "(1, 2.5)", lambda c: c.lr_boundaries == (1.0, 2.5)),
        ("lr_boundaries", "[1]", lambda c: c.lr_boundaries == (1.0,)),
        ("model.channels", "(8,16)", lambda c: c.model.channels == (8, 16)),
        ("model.hidden", "32", lambda c: c.model == CNNConfig(hidden=32)),
    ],
)
def test_an_override_sets_one_field_and_keeps_the_rest(train_config, field, text, read):
    got = override(train_config, field, text)
    assert read(got)
    assert type(got) is type(train_config)
    untouched = {"epochs", "batch_size", "optimizer", "lr_boundaries", "model"} - {
        field.split(".")[0]
    }
    assert all(getattr(got, f) == getattr(train_config, f) for f in untouched)


def test_tuple_items_are_addressed_by_index():
    job = load_config(AIP_CELEBA, [("methods.0.config.mu", "0.5"), ("queries", "20")])
    base = load_config(AIP_CELEBA)
    assert job.methods[0].config == dataclasses.replace(base.methods[0].config, mu=0.5)
    assert job.methods[1:] == base.methods[1:] and job.queries == 20


@pytest.mark.parametrize(
    "field, text, match",
    [
        ("epoch", "2", r"TrainConfig has no field 'epoch'; its fields: model, dataset"),
        ("model.width", "2", "CNNConfig has no field 'width'"),
        ("batch_size", "2.5", r"batch_size: expected int .*got '2.5'"),
        ("batch_size", "True", "expected int"),
        (
            "optimizer",
            "adamw",
            "optimizer: expected one of 'sgd', 'adam' \\(now 'adam'\\), got 'adamw'",
        ),
        ("model.channels", "(8, 16, 32)", "model.channels: expected"),
        ("model", "3", r"model is a CNNConfig: set its fields instead"),
        ("epochs.x", "3", "cannot go into 'x' of a int value"),
        ("lr_boundaries.4", "3", r"'4' is not an index of this 0-item tuple"),
        ("model..hidden", "3", "empty field name"),
        ("epochs", "-1", "epochs"),  # the config's own validation
    ],
)
def test_bad_overrides_raise_naming_the_field(train_config, field, text, match):
    with pytest.raises(ValueError, match=match):
        override(train_config, field, text)


def test_fields_checked_against_each_other_change_together_in_any_order():
    """AugmentConfig refuses augmented > subset: one override at a time, shrinking both would
    depend on which comes first."""
    pairs = [("augment.subset", "16"), ("augment.augmented", "4")]
    for order in (pairs, pairs[::-1]):
        config = load_config(AIP_CELEBA, order)
        assert (config.augment.subset, config.augment.augmented) == (16, 4)
    with pytest.raises(ValueError, match=r"augmented \(40\) must be <= subset \(16\)"):
        load_config(AIP_CELEBA, [*pairs, ("augment.augmented", "40")])  # the later value wins
    base = load_config(CNN_MNIST)
    with pytest.raises(ValueError, match="an earlier override sets a field inside it"):
        override_all(base, [("model.hidden", "8"), ("model", "3")])
    with pytest.raises(ValueError, match="an earlier override sets a field above it"):
        override_all(base, [("epochs", "2"), ("epochs.x", "3")])
    assert override_all(base, []) is base


def test_split_overrides_takes_both_spellings_and_returns_the_rest_in_order():
    tokens = ["--config.a=1", "--out", "--config.b.c", "(1, 2)", "x", "--config.d=e=f"]
    overrides, unknown = split_overrides([*tokens, "--config.last"])
    assert overrides == [("a", "1"), ("b.c", "(1, 2)"), ("d", "e=f")]
    assert unknown == ["--out", "x", "--config.last"]  # the last one lacks its value


def _parser():
    parser = argparse.ArgumentParser()
    add_config_argument(parser)
    parser.add_argument("--workdir")
    return parser


def test_parse_args_takes_both_flag_spellings_in_order():
    argv = ["--config", str(CNN_MNIST), "--config.epochs=2", "--workdir", "w"]
    argv += ["--config.model.hidden", "16", "--config.epochs", "0.25"]
    args, config = parse_args(_parser(), argv)
    assert args.workdir == "w" and args.config == str(CNN_MNIST)
    assert config == override(
        override(load_config(CNN_MNIST), "model.hidden", "16"), "epochs", "0.25"
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config.epoch=2"], "TrainConfig has no field 'epoch'"),
        (["--config.epochs=-1"], "epochs"),
        (["--epochs=2"], "unrecognized arguments: --epochs=2"),
        (["--config.epochs"], "unrecognized arguments: --config.epochs"),  # no value
    ],
)
def test_parse_args_exits_with_a_usage_error(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(_parser(), ["--config", str(CNN_MNIST), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_refuses_a_bad_override_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", str(CNN_MNIST), "--workdir", str(tmp_path), "--config.lr=1"])
    assert "has no field 'lr'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
