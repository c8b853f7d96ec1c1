"""The amortised generator's explanation protocol end to end on a tiny Adult job: a small MLP and
a tabular generator trained for a few steps on real rows, explained with Wachter, DiCE and CFProto
as peers; the report holds every metric, the generator never breaks a constraint, every method's
MMD shares one bandwidth, and bad configs fail where they are written."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from explain.amortised import PUBLISHED, ExplainConfig, GeneratorJob, run_protocol, units
from jaxcf import peers
from jaxcf.core import Results
from jaxcf.data import ADULT_CONSTRAINTS, adult_transform, load_dataset
from jaxcf.experiment import flip_targets
from jaxcf.methods import CFProtoConfig, WachterConfig
from jaxcf.models.generators import TabularGeneratorConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import GeneratorTrainConfig
from tests.conftest import adult_mlp

pytestmark = pytest.mark.standard_promotion  # training and Wachter run optax's Adam

# DiCE is an optional extra: without it the protocol leaves its rows out and says so.
HAS_DICE = peers.available("dice")


def _tiny_job() -> GeneratorJob:
    transform = adult_transform()
    classifier = adult_mlp(transform, hidden=16, train_examples=4000)
    generator = GeneratorTrainConfig(
        generator=TabularGeneratorConfig(
            transform=transform.to_dict(),
            constraints=ADULT_CONSTRAINTS.to_dict(),
            cond_dim=2,
            width=32,
            blocks=1,
            noise_dim=4,
        ),
        discriminator=None,  # the autoencoder-style loss: no GAN step to compile
        target="flip",
        w_model=1.0,
        w_l1=1.0,
        w_cycle=0.0,
        w_gan=0.0,
        w_mmd=1.0,
        fixed_prob=0.1,
        lr_generator=2e-3,
        lr_discriminator=2e-3,
        batch_size=64,
        steps=60,
        eval_every=60,
        save_every=60,
        val_examples=64,
    )
    return GeneratorJob("adult", classifier, generator, train_examples=4000)


def _config(job, **overrides) -> ExplainConfig:
    base = ExplainConfig(
        job=job,
        queries=24,
        num_cfs=2,
        peers=("wachter", "dice", "cfproto"),
        wachter=WachterConfig(learning_rate=0.05, max_iter=60),
        wachter_queries=12,
        dice_queries=4,
        cfproto=CFProtoConfig(theta=10.0, c_steps=2, max_iter=40, patience=10),
        cfproto_queries=6,
        prototype_examples=1000,
        cfproto_runner=RunnerConfig(chunk_size=8, slots=8),
        soft_queries=8,
        mmd_reference=400,
        runner=RunnerConfig(chunk_size=16),
        wachter_runner=RunnerConfig(chunk_size=8, slots=8),
        changes_queries=6,
        train_missing=True,
        progress=False,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("amortised")
    doc = run_protocol(_config(_tiny_job()), workdir)
    return doc, workdir


def test_report_has_every_metric_and_no_generator_violations(protocol):
    doc, workdir = protocol
    report = workdir / "report"
    assert (report / "report.md").is_file()
    on_disk = json.loads((report / "report.json").read_text())
    assert on_disk["methods"].keys() == doc["methods"].keys()
    labels = set(doc["methods"])
    expected = {"generator", "wachter", "generator (first 12)", "cfproto", "generator (first 6)"}
    if HAS_DICE:
        expected |= {"dice", "generator (first 4)"}
        assert doc["left_out"] == {}
    else:
        assert "dice" not in labels and "pip install -e '.[dice]'" in doc["left_out"]["dice"]
        assert doc["left_out"]["dice"] in (workdir / "report" / "report.md").read_text()
    assert expected <= labels
    for label, m in doc["methods"].items():
        for key in ("validity", "validity_raw", "mmd2", "l1", "l0", "violations"):
            assert m[key] is not None, (label, key)
        assert len(m["class_mmd2"]) == 2
        assert m["seconds_per_cf"] > 0, label
        assert m["generator_speedup"] is not None, label
    gen = doc["methods"]["generator"]
    assert gen["counterfactuals"] == 24 * 2 and gen["queries"] == 24
    assert gen["violations"] == 0 and gen["rows_violating"] == 0
    assert gen["timing"]["steady_state"]  # 48 rows in chunks of 16: the first one left out
    assert doc["methods"]["wachter"]["counterfactuals"] == 12
    assert doc["methods"]["wachter"]["diversity"] is None  # one counterfactual per query
    if HAS_DICE:
        assert doc["methods"]["dice"]["counterfactuals"] == 4 * 2
    soft = doc["soft_targets"]
    assert soft["queries"] == 8 and 0.0 <= soft["within_tolerance"] <= 1.0
    # The paper's numbers come from explain/amortised/published.py (tuples become lists).
    assert doc["published"] == json.loads(json.dumps(PUBLISHED["adult"]))
    assert doc["real_queries"]["mmd2"] is not None and len(doc["real_queries"]["class_mmd2"]) == 2
    text = (report / "report.md").read_text()
    assert "MMD\u00b2" in text and "paper (generator)" in text
    for name in doc["figures"]:
        assert (report / name).is_file(), name
    assert "changes_generator.csv" in doc["figures"]
    assert ("changes_dice.csv" in doc["figures"]) == HAS_DICE


def test_one_bandwidth_shared_by_every_method(protocol):
    doc, _ = protocol
    bandwidth = doc["bandwidth"]["value"]
    assert bandwidth > 0
    assert {m["bandwidth"] for m in doc["methods"].values()} == {bandwidth}


def test_rerun_reuses_runs(protocol):
    """The runs are resumable and DiCE's result is cached: a second call only re-evaluates."""
    doc, workdir = protocol
    again = run_protocol(_config(_tiny_job(), soft_queries=0), workdir)
    labels = ("generator", "wachter", "cfproto") + (("dice",) if HAS_DICE else ())
    for label in labels:
        assert again["methods"][label]["mmd2"] == doc["methods"][label]["mmd2"]
        assert again["methods"][label]["validity"] == doc["methods"][label]["validity"]


def test_flip_targets():
    pred = np.array([0, 1, 1, 0])
    assert flip_targets(pred, 2, 0).tolist() == [1, 0, 0, 1]
    pred = np.arange(100) % 10
    t = flip_targets(pred, 10, 0)
    assert t.dtype == np.int32 and np.all(t != pred) and np.all((t >= 0) & (t < 10))
    assert np.array_equal(t, flip_targets(pred, 10, 0))


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"queries": 0}, ValueError),
        ({"num_cfs": 0}, ValueError),
        ({"peers": ("wachter", "lime")}, ValueError),
        ({"peers": ("wachter", "wachter")}, ValueError),
        ({"peers": "wachter"}, ValueError),
        ({"target": "soft"}, ValueError),
        ({"wachter_queries": 100}, ValueError),  # more than the 24 queries
        ({"dice_method": "gradient"}, ValueError),
        ({"mmd_reference": 1}, ValueError),
        ({"soft_queries": -1}, ValueError),
        ({"wachter": RunnerConfig()}, TypeError),
        ({"cfproto_queries": 100}, ValueError),  # more than the 24 queries
        ({"cfproto": WachterConfig()}, TypeError),
        ({"fixed": ("Sex",)}, ValueError),  # CFProto moves rows freely: no fixed columns
        ({"prototype_examples": 0}, ValueError),
        ({"job": 3}, TypeError),
    ],
)
def test_bad_config_raises(overrides, error):
    job = _tiny_job()
    with pytest.raises(error):
        _config(job, **overrides)


def test_cfproto_row(protocol):
    """CFProto explains the protocol's first queries towards the generator's targets (one
    counterfactual each), is measured like every row (the paper's units included), and the
    report prints it beside the paper's CFProto row."""
    doc, workdir = protocol
    (gen_run,) = (workdir / "runs").glob("generator-*")
    (run,) = (workdir / "runs").glob("cfproto-*")
    gen, res = Results.load(gen_run), Results.load(run)
    first = np.asarray(gen.query) < 6
    np.testing.assert_array_equal(np.asarray(res.query), np.arange(6))
    # The same queries and targets as the generator's (its num_cfs rows per query).
    np.testing.assert_array_equal(np.asarray(res.x), np.asarray(gen.x)[first][::2])
    np.testing.assert_array_equal(np.asarray(res.target), np.asarray(gen.target)[first][::2])
    m = doc["methods"]["cfproto"]
    assert m["method"] == "cfproto" and doc["peer_queries"]["cfproto"] == 6
    assert m["counterfactuals"] == 6 and m["queries"] == 6 and m["diversity"] is None
    for key in ("l0_categorical", "l1_scaled", "mmd2_paper", "validity", "l1"):
        assert m[key] is not None, key
    # Success is the shared criterion (target probability >= 0.5): on two classes, the argmax.
    assert m["validity_raw"] == pytest.approx(m["timing"]["success_rate"])
    assert m["timing"]["prototypes"]["instances"] == 1000
    assert m["timing"]["config"]["domain"] is not None  # the encodings' box, as Wachter's
    text = (workdir / "report" / "report.md").read_text()
    paper = PUBLISHED["adult"]["peers"]["cfproto"]
    (line,) = [row for row in text.splitlines() if row.startswith("| paper (cfproto)")]
    assert f"{paper['mmd2']:.4f}" in line and f"{paper['l0']:.2f}" in line


def test_peer_counts_only_checked_for_peers_that_run():
    config = _config(_tiny_job(), peers=("wachter",), dice_queries=1000)
    assert config.dice_queries == 1000


def test_dice_and_fixed_need_a_tabular_job():
    from pathlib import Path

    from jaxcf.core import load_config

    root = Path(__file__).resolve().parents[1]
    job = load_config(root / "train" / "configs" / "generator_mnist.py")
    with pytest.raises(ValueError, match="tabular"):
        ExplainConfig(job=job, peers=("wachter", "dice"))
    with pytest.raises(ValueError, match="tabular"):
        ExplainConfig(job=job, fixed=("Age",))


def test_missing_checkpoints_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="jaxcf train"):
        run_protocol(_config(_tiny_job(), train_missing=False), tmp_path)


# ------------------------------------------------------------------ the paper's units (Adult)


def test_categorical_changes_and_scaled_l1_by_hand():
    a = {
        "Age": np.array([30, 40, 50]),
        "Hours": np.array([40.0, 40.0, 10.0]),
        "Sex": np.array(["Male", "Female", "Male"], object),
        "Race": np.array(["White", "Black", "White"], object),
    }
    b = {
        "Age": np.array([30, 45, 20]),
        "Hours": np.array([20.0, 40.0, 10.0]),
        "Sex": np.array(["Male", "Male", "Female"], object),
        "Race": np.array(["White", "White", "White"], object),
    }
    # Row by row: no category changed; Sex and Race; Sex.
    assert units.categorical_changes(a, b, ["Sex", "Race"]).tolist() == [0, 2, 1]
    # Age range 73, Hours range 98: |0|/73 + |20|/98; 5/73 + 0; 30/73 + 0.
    l1 = units.scaled_l1(a, b, {"Age": 73.0, "Hours": 98.0})
    np.testing.assert_allclose(l1, [20 / 98, 5 / 73, 30 / 73], rtol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        units.scaled_l1(a, b, {"Age": 0.0})


def test_paper_units_in_the_report(protocol):
    """Every Adult row also carries the paper's L0 (categorical) and L1 (min-max units), checked
    against a direct computation on the decoded rows, and its MMD² at the paper's wider kernel;
    the report prints them beside the paper's generator and DiCE rows."""
    doc, workdir = protocol
    transform = adult_transform()
    train = transform.decode(np.asarray(load_dataset("adult", "train").inputs))
    numeric = [c.name for c in transform.schema.columns if c.kind == "numeric"]
    categorical = [c.name for c in transform.schema.columns if c.kind == "categorical"]
    (run,) = (workdir / "runs").glob("generator-*")
    res = Results.load(run)
    a = transform.decode(np.asarray(res.x))
    b = transform.decode(np.asarray(res.x_cf))  # already valid rows: decode is the projection
    l0 = np.mean([sum(a[c][i] != b[c][i] for c in categorical) for i in range(len(res.x))])
    l1 = np.mean(
        [
            sum(abs(float(b[c][i]) - float(a[c][i])) / np.ptp(train[c]) for c in numeric)
            for i in range(len(res.x))
        ]
    )
    gen = doc["methods"]["generator"]
    assert gen["l0_categorical"] == pytest.approx(l0, rel=1e-12)
    assert gen["l1_scaled"] == pytest.approx(l1, rel=1e-9)
    for label, m in doc["methods"].items():
        assert m["l0_categorical"] <= m["l0"] + 1e-12, label
        assert m["mmd2_paper"] is not None and len(m["class_mmd2_paper"]) == 2, label
        assert m["bandwidth_paper"] == doc["bandwidth_paper"]["value"]
    paper_bandwidth = doc["bandwidth_paper"]["value"]
    assert paper_bandwidth == pytest.approx(units.PAPER_BANDWIDTH_SCALE * doc["bandwidth"]["value"])
    text = (workdir / "report" / "report.md").read_text()
    assert "In the paper's units" in text and "paper (dice)" in text


def test_extra_generator_rows(protocol, tmp_path):
    """A second generator of the same classifier explains the same queries as its own row;
    the finished runs and models are reused (copied workdir), only the new generator trains."""
    _, workdir = protocol
    shutil.copytree(workdir / "models", tmp_path / "models")
    shutil.copytree(workdir / "runs", tmp_path / "runs")
    job = _tiny_job()
    other = dataclasses.replace(
        job, generator=dataclasses.replace(job.generator, w_l1=3.0, steps=20, eval_every=20)
    )
    doc = run_protocol(_config(job, soft_queries=0, extra_generators=(("other", other),)), tmp_path)
    row = doc["methods"]["generator (other)"]
    assert row["counterfactuals"] == 24 * 2 and row["violations"] == 0
    assert doc["extra_generators"]["other"]["train_steps"] == 20
    assert (tmp_path / "models" / "generator_other" / "checkpoint").is_dir()
    assert "generator (other)" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize(
    "extra, error",
    [
        ((("Bad Name", "x.py"),), ValueError),
        ((("a", "x.py"), ("a", "y.py")), ValueError),
        (("a",), ValueError),
        ((("a", 3),), TypeError),
    ],
)
def test_bad_extra_generators_raise(extra, error):
    with pytest.raises(error):
        _config(_tiny_job(), extra_generators=extra)


def test_extra_generator_must_share_the_classifier():
    job = _tiny_job()
    other = dataclasses.replace(job, classifier=dataclasses.replace(job.classifier, epochs=2))
    config = _config(job, extra_generators=(("other", other),))
    with pytest.raises(ValueError, match="classifier"):
        config.resolved_extra_jobs(job)
