"""The seed-spread tool (explain.seeds) on a tiny Adult generator job trained on real rows: seeds
change the generator and not the classifier, the same seed gives bitwise the same weights and
metrics in a fresh folder, finished seeds are reused, and the spread is the plain mean and
sample standard deviation of each seed's value."""

from __future__ import annotations

import dataclasses
import json
import statistics
import textwrap

import pytest

from explain import seeds
from jaxcf.models import checkpoint

pytestmark = pytest.mark.standard_promotion  # training runs optax's Adam

TRAIN = """
from jaxcf.data import ADULT_CONSTRAINTS, adult_transform
from jaxcf.models.generators import TabularGeneratorConfig
from jaxcf.training import GeneratorTrainConfig
from explain.amortised import GeneratorJob
from tests.conftest import adult_mlp


def get_config():
    transform = adult_transform()
    generator = GeneratorTrainConfig(
        generator=TabularGeneratorConfig(
            transform=transform.to_dict(),
            constraints=ADULT_CONSTRAINTS.to_dict(),
            cond_dim=2,
            width=32,
            blocks=1,
            noise_dim=4,
        ),
        discriminator=None,
        target="flip",
        w_model=1.0,
        w_l1=1.0,
        w_cycle=0.0,
        w_gan=0.0,
        w_mmd=1.0,
        lr_generator=2e-3,
        batch_size=64,
        steps=40,
        eval_every=40,
        save_every=40,
        val_examples=64,
    )
    classifier = adult_mlp(transform, hidden=16, train_examples=2000)
    return GeneratorJob("adult", classifier, generator, train_examples=2000)
"""

EXPLAIN = """
from pathlib import Path

from explain.amortised import ExplainConfig
from jaxcf.runner import RunnerConfig


def get_config():
    return ExplainConfig(
        job=str(Path(__file__).with_name("train_job.py")),
        queries=16,
        num_cfs=2,
        peers=("wachter",),
        wachter_queries=8,
        soft_queries=8,
        mmd_reference=200,
        runner=RunnerConfig(chunk_size=8),
        grid_queries=4,
        changes_queries=4,
    )
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    where = tmp_path_factory.mktemp("seeds")
    (where / "train_job.py").write_text(textwrap.dedent(TRAIN))
    (where / "explain.py").write_text(textwrap.dedent(EXPLAIN))
    spec = seeds.SeedStudy(
        train=str(where / "train_job.py"),
        seeds=(0, 1),
        seed_fields=("generator.seed",),
        explain=str(where / "explain.py"),
    )
    records = [seeds.run_seed(spec, s, where / "study") for s in spec.seeds]
    return spec, records, where


def test_seeds_change_the_generator_not_the_classifier(study):
    _, (r0, r1), where = study
    assert r0["weights"] != r1["weights"]
    assert r0["classifier_weights"] == r1["classifier_weights"]
    assert r0["metrics"] != r1["metrics"]
    for name in ("validity", "mmd2", "l1", "l0", "l0_categorical", "mmd2_paper"):
        assert name in r0["metrics"]
    assert {"class_mmd2[<=50K]", "class_mmd2[>50K]"} <= set(r0["metrics"])
    # The generator alone: the peers and soft targets of the explain config are left out.
    report = json.loads((where / "study" / "seed_0" / "report" / "report.json").read_text())
    assert list(report["methods"]) == ["generator"]
    assert report["soft_targets"] is None


def test_same_seed_is_bitwise_in_a_fresh_folder_and_reused(study):
    spec, (r0, _), where = study
    again = seeds.run_seed(spec, 0, where / "again")
    assert again["weights"] == r0["weights"]
    assert again["classifier_weights"] == r0["classifier_weights"]
    assert again["metrics"] == r0["metrics"]
    # A finished seed is read back, not retrained.
    (where / "again" / "seed_0" / "models").rename(where / "again" / "moved")
    assert seeds.run_seed(spec, 0, where / "again") == again


def test_spread_and_reference(study):
    spec, records, _ = study
    recorded = dict(records[0]["metrics"])
    shifted = {k: v + 1.0 for k, v in recorded.items()}
    doc = seeds.summarize(spec, records, {"recorded": recorded, "elsewhere": shifted})
    for name, s in doc["spread"].items():
        values = [r["metrics"][name] for r in records]
        assert s["values"] == values
        assert s["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert s["std"] == pytest.approx(statistics.stdev(values), rel=1e-12, abs=1e-15)
    assert doc["references"]["recorded"]["bitwise_seeds"] == [0]
    assert doc["references"]["elsewhere"]["bitwise_seeds"] == []
    text = seeds.markdown(doc, "tiny")
    assert "| validity | " in text and " ± " in text
    assert "recorded: seed 0 reproduces it bitwise" in text
    assert "elsewhere: no seed reproduces it bitwise" in text
    assert doc["references"]["elsewhere"]["max_relative_gap"] > 0


CLASSIFIER = """
from jaxcf.data import adult_transform
from tests.conftest import adult_mlp


def get_config():
    return adult_mlp(adult_transform(), hidden=8, train_examples=1000)
"""


def test_without_explain_reports_the_checkpoints_numbers(tmp_path):
    (tmp_path / "clf.py").write_text(textwrap.dedent(CLASSIFIER))
    spec = seeds.SeedStudy(train=str(tmp_path / "clf.py"), seeds=(0, 1))
    records = [seeds.run_seed(spec, s, tmp_path / "study") for s in spec.seeds]
    assert records[0]["weights"] != records[1]["weights"]
    for r in records:
        meta = checkpoint.read_metadata(tmp_path / "study" / f"seed_{r['seed']}" / "checkpoint")
        assert r["metrics"]["test_accuracy"] == meta["test_accuracy"]
        assert r["metrics"]["loss"] == meta["history"][-1]["loss"]
        assert r["train_seconds"] == meta["train_seconds"] > 0
    assert seeds.spread(records)["test_accuracy"]["values"] == [
        r["metrics"]["test_accuracy"] for r in records
    ]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(seeds=()), "integers >= 0"),
        (dict(seeds=(0, 0)), "distinct"),
        (dict(seeds=(-1,)), "integers >= 0"),
        (dict(seeds=(0,), seed_fields=("generator..seed",)), "dotted fields"),
    ],
)
def test_bad_study_raises(kwargs, error):
    with pytest.raises(ValueError, match=error):
        seeds.SeedStudy(train="x.py", **kwargs)


VAE = """
from tests.conftest import tiny_mnist_vae


def get_config():
    return tiny_mnist_vae()
"""

PROTOCOL = """
from pathlib import Path

from explain.deduce import ProtocolConfig
from jaxcf.core import load_config
from jaxcf.experiment import ModelSpec
from jaxcf.methods import MethodSpec, REVISEConfig
from jaxcf.runner import RunnerConfig


def get_config():
    return ProtocolConfig(
        classifier=ModelSpec(checkpoint={checkpoint!r}),
        methods=(MethodSpec("revise", REVISEConfig(max_iter=5)),),
        n_sets=1,
        set_size=1,
        runner=RunnerConfig(chunk_size=9, slots=9),
        grid_queries=2,
        vae={vae},
    )
"""


@pytest.mark.standard_promotion  # the VAE's training and REVISE run optax's Adam
def test_a_protocol_evaluates_its_reseeded_model(trained_dir, tmp_path):
    """A DeDUCE protocol config as the evaluation: the study reseeds the protocol's model
    trained from its config (here REVISE's VAE), reports each method's row beside the model's
    own held-out numbers, and reads a recorded protocol report as a reference."""
    (tmp_path / "vae.py").write_text(textwrap.dedent(VAE))
    clf = str(trained_dir / "checkpoint")
    vae = f"ModelSpec(train=load_config({str(tmp_path / 'vae.py')!r}))"
    (tmp_path / "protocol.py").write_text(PROTOCOL.format(checkpoint=clf, vae=vae))
    spec = seeds.SeedStudy(
        train=str(tmp_path / "vae.py"), seeds=(0, 1), explain=str(tmp_path / "protocol.py")
    )
    records = [seeds.run_seed(spec, s, tmp_path / "study") for s in spec.seeds]
    assert records[0]["weights"] != records[1]["weights"]
    for r in records:
        where = tmp_path / "study" / f"seed_{r['seed']}"
        meta = checkpoint.read_metadata(where / "models" / "vae" / "checkpoint")
        assert meta["train_config"]["seed"] == r["seed"]
        assert r["metrics"]["vae.val_mse"] == meta["history"][-1]["val_mse"]
        # Means over successes exist only where some pair was solved.
        solved = r["metrics"]["revise.failure_rate"] < 1
        for name in ("l0", "l1", "n_iter"):
            assert (f"revise.{name}" in r["metrics"]) == solved
        # The seed's own report, read as a recorded row, is that seed's record bitwise.
        row = seeds.reference_row(where / "report" / "metrics.json", "revise")
        assert row == {k: v for k, v in r["metrics"].items() if k.startswith("revise.")}
    doc = seeds.summarize(spec, records, {"seed 1's report": row})
    assert doc["references"]["seed 1's report"]["bitwise_seeds"] == [1]
    assert "(the DeDUCE protocol with the seeded vae)" in seeds.markdown(doc, "tiny VAE")
    with pytest.raises(KeyError, match="no method 'deduce'"):
        seeds.reference_row(where / "report" / "metrics.json", "deduce")
    # A protocol none of whose models is trained from the study's config cannot be reseeded.
    (tmp_path / "other.py").write_text(PROTOCOL.format(checkpoint=clf, vae="None"))
    other = dataclasses.replace(spec, explain=str(tmp_path / "other.py"))
    with pytest.raises(ValueError, match="found none"):
        seeds.run_seed(other, 2, tmp_path / "study")
