"""The AIP CelebA protocol end to end with tiny models trained a few steps on real faces (every
stage runs, the metrics agree with the saved results, a rerun reuses everything), and its
pieces: the latent perturbation ratio, the attribute ranking, the job's checks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from flax import struct

from explain.aip import PUBLISHED_AUGMENTATION, AIPJob, AugmentConfig, run_aip_protocol
from explain.aip.attributes import attribute_ranking
from explain.aip.augmentation import _with_new_defaults, run_augmentation
from explain.aip.scores import latent_perturbation, score_methods
from jaxcf.core import Results
from jaxcf.experiment import RUNS_DIR, ModelSpec, model_dir
from jaxcf.methods import (
    AIPConfig,
    FGSMConfig,
    MethodSpec,
    REVISEConfig,
)
from jaxcf.models import AttGANConfig, CNNConfig, VAEConfig
from jaxcf.runner import RunnerConfig
from jaxcf.training import AttGANTrainConfig, TrainConfig, VAETrainConfig

pytestmark = pytest.mark.standard_promotion  # optax's Adam trains the models


def _run(workdir, label):
    """The run store's folder of the run labelled ``label`` (one per label in these tests)."""
    (path,) = (workdir / RUNS_DIR).glob(f"{label}-*")
    return path


def _job(**overrides) -> AIPJob:
    clf = TrainConfig(
        model=CNNConfig(input_shape=(64, 64, 3), num_classes=2, channels=(4, 8), hidden=8),
        dataset="celeba",
        optimizer="adam",
        learning_rate=3e-3,
        lr_boundaries=(),
        epochs=2,
        batch_size=64,
        train_examples=256,
    )
    vae = VAETrainConfig(
        model=VAEConfig(input_shape=(64, 64, 3), latent_dim=4, widths=(4, 8), hidden=0),
        dataset="celeba",
        loss="gaussian",
        batch_size=16,
        steps=3,
        warmup_steps=1,
        eval_every=3,
        save_every=3,
        train_examples=64,
        val_examples=16,
        samples=4,
    )
    attgan = AttGANTrainConfig(
        model=AttGANConfig(
            encoder_widths=(4, 8, 8, 8),
            latent_channels=4,
            discriminator_widths=(4, 8, 8, 8),
            discriminator_hidden=8,
        ),
        dataset="celeba",
        batch_size=16,
        steps=3,
        eval_every=3,
        save_every=3,
        train_examples=64,
        val_examples=16,
        samples=2,
        flip_attributes=("Male",),
    )
    methods = (
        # Three of the five: one of each kind of model (the latent searches and AIP_R go
        # through the same runner and scoring; each method is in the contract table).
        MethodSpec("aip", AIPConfig(max_iter=8, schedule=(4.0,))),
        MethodSpec("revise", REVISEConfig(max_iter=8)),
        MethodSpec("fgsm", FGSMConfig(eps=0.05, schedule=(0.2,))),
        MethodSpec("fgsm", FGSMConfig(eps=0.2), label="fgsm_eps_0.2"),  # one fixed step
    )
    base = dict(
        classifier=ModelSpec(train=clf),
        age_classifier=ModelSpec(train=dataclasses.replace(clf, dataset="celeba_young")),
        vae=ModelSpec(train=vae),
        attgan=ModelSpec(train=attgan),
        methods=methods,
        queries=6,
        real_faces=24,
        attribute_queries=4,
        attribute_method=MethodSpec("aip", AIPConfig(max_iter=3, mu=1.0)),
        augment=AugmentConfig(subset=64, augmented=6, seeds=(0, 1)),
        runner=RunnerConfig(chunk_size=3, slots=3),
        grid=2,
    )
    return AIPJob(**{**base, **overrides})


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    from jaxcf.data import load_dataset

    try:
        load_dataset("celeba", "test")
    except FileNotFoundError as e:
        pytest.skip(f"no CelebA files: {e}")
    workdir = tmp_path_factory.mktemp("aip")
    return run_aip_protocol(_job(), workdir), workdir


@pytest.mark.xdist_group("aip_protocol")  # one worker trains the fixture
def test_every_stage_runs_and_the_report_agrees_with_the_results(protocol):
    doc, workdir = protocol
    methods = ["aip", "revise", "fgsm", "fgsm_eps_0.2"]
    assert list(doc["scores"]) == [
        *methods,
        "attgan reconstruction",
        "vae reconstruction",
        "query",
    ]
    for name in ("classifier", "classifier_young", "vae", "attgan"):
        assert (model_dir(workdir, name) / "checkpoint").is_dir(), name  # trained when missing
    from jaxcf.evaluation import metrics
    from jaxcf.models import load_classifier

    clf, _, _ = load_classifier(model_dir(workdir, "classifier") / "checkpoint")
    for m in methods:
        r = Results.load(_run(workdir, m))
        assert len(r) == 6 and r.x_cf.shape == (6, 64, 64, 3)
        ok = r.success.astype(bool) & metrics.validity(clf, r.x_cf, r.target)
        s = doc["scores"][m]
        assert s["n"] == 6 and s["fr"] == pytest.approx(ok.mean())
        if ok.any():
            l1 = np.abs(r.x_cf - r.x).reshape(6, -1).mean(1)[ok].mean()
            assert s["l1"] == pytest.approx(l1, rel=1e-6)
            for key in ("lpr_attgan", "lpr_vae", "lpr_start_attgan", "lpr_start_vae"):
                assert 0.0 <= s[key] <= 1.0, key
            if m.startswith("fgsm"):  # FGSM starts from the query: both LPRs are one count
                assert s["lpr_start_attgan"] == s["lpr_attgan"]
        # Every query heads for the class the classifier does not predict.
        np.testing.assert_array_equal(r.target, 1 - metrics.predict(clf, r.x))
        assert doc["timing"][m]["seconds_per_query"] > 0
        assert doc["timing"][m]["steady_seconds_per_query"] > 0  # two chunks: one after compiling
    aip = Results.load(_run(workdir, "aip"))
    assert aip.extras["a"].shape == aip.extras["a0"].shape == (6, 13)
    assert np.all((aip.extras["a"] >= 0) & (aip.extras["a"] <= 1))
    assert doc["scores"]["query"]["fr"] == 0.0 and np.isfinite(doc["scores"]["query"]["mmd2"])
    for m, field, schedule in (("aip", "step_scale", (1.0, 4.0)), ("fgsm", "eps", (0.05, 0.2))):
        retries = doc["retries"][m]  # every query's result is counted under one attempt
        assert retries["field"] == field and set(retries["values"]) <= set(schedule)
        assert sum(retries["queries"]) == 6 and retries["flipped"] <= retries["queries"]
        assert sum(retries["flipped"]) == round(doc["scores"][m]["fr"] * 6)
    assert doc["lpr_sweep"] == [0.25, 0.5, 1.0]  # larger tolerances count fewer moves
    for m in ("aip", "fgsm"):
        for key in ("lpr_attgan", "lpr_start_attgan"):
            s = doc["scores"][m]
            curve = [s[key], *(s[f"{key}_at"][t] for t in ("0.25", "0.5", "1"))]
            assert all(a >= b for a, b in zip(curve, curve[1:], strict=False)), (m, key, curve)
    ordering = doc["ordering_holds"]
    assert set(ordering) == {
        "fr_aip_ge_xgems",
        "fr_aip_ge_revise",
        "lpr_aip_lt_fgsm",
        "lpr_aip_lt_aip_random",
        "lpr_from_start_aip_lt_fgsm",
        "lpr_from_start_aip_lt_aip_random",
    }
    assert ordering["fr_aip_ge_xgems"] is None and ordering["lpr_aip_lt_aip_random"] is None
    att = doc["attributes"]
    assert att["age_queries"] == 4 and len(att["names"]) == 13
    # The age classifier's AIP is the job's attribute_method, not the gender task's.
    assert att["age_method"]["max_iter"] == 3 and att["age_method"]["mu"] == 1.0
    assert Results.load(_run(workdir, "aip_young")).n_iter.max() <= 3
    for ranking in (att["gender_classifier"], att["age_classifier"]):
        assert all(r["attribute"] in att["names"] for r in ranking)
        changes = [r["mean_abs_change"] for r in ranking]
        assert changes == sorted(changes, reverse=True)
    # The age ranking split by direction: the two halves are the flipped queries by target.
    young = Results.load(_run(workdir, "aip_young"))
    age_clf, _, _ = load_classifier(model_dir(workdir, "classifier_young") / "checkpoint")
    age_ok = young.success.astype(bool) & metrics.validity(age_clf, young.x_cf, young.target)
    split = att["age_by_direction"]
    assert att["age_flipped"] == int(age_ok.sum())
    for direction, t in (("towards young", 1), ("towards old", 0)):
        assert split[direction]["flipped"] == int((age_ok & (young.target == t)).sum())
        assert len(split[direction]["ranking"]) == (13 if split[direction]["flipped"] else 0)
    aug = doc["augmentation"]
    assert [s["seed"] for s in aug["seeds"]] == [0, 1]
    # The augmentation explains age classifiers: by default with the age classifier's AIP.
    assert all(s["method"]["config"]["max_iter"] == 3 for s in aug["seeds"])
    for s in aug["seeds"]:
        assert s["train_faces"] == 64 and 0 <= s["counterfactuals_added"] <= 6
        assert 0.0 < s["accuracy_without"] <= 1.0 and 0.0 < s["accuracy_with"] <= 1.0
    without = [s["accuracy_without"] for s in aug["seeds"]]
    assert aug["accuracy_without"]["mean"] == pytest.approx(np.mean(without))
    assert aug["accuracy_without"]["std"] == pytest.approx(np.std(without, ddof=1))
    report = workdir / "report"
    assert json.loads((report / "report.json").read_text()) == doc
    text = (report / "report.md").read_text()
    for m in methods:
        assert f"| {m} |" in text
    # The paper's augmentation numbers, from explain/aip/published.py, in the record and report.
    assert aug["published"] == PUBLISHED_AUGMENTATION
    assert "Counterfactual data augmentation" in text
    for row in PUBLISHED_AUGMENTATION.values():
        assert f"{100 * row['accuracy_without']:.2f} -> {100 * row['accuracy_with']:.2f}" in text
    assert "LPR % (AttGAN code) at tolerances 0.1 / 0.25 / 0.5 / 1 standard" in text
    assert "aip's counterfactuals by attempt: " in text
    assert "fgsm_eps_0.2: FGSM with one step of that fixed size and no retries" in text
    for name, model in doc["models"].items():  # where each model came from
        assert f"{name} `{model['dir']}`" in text
    assert "![LPR against L1](aip_lpr_l1.png)" in text
    for png in ("aip_faces.png", "aip_attributes.png", "aip_lpr_l1.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


@pytest.mark.xdist_group("aip_protocol")  # one worker trains the fixture
def test_a_rerun_reuses_every_model_run_and_seed(protocol):
    doc, workdir = protocol
    stamps = {
        p: p.stat().st_mtime_ns
        for p in [
            *workdir.glob("models/*/checkpoint"),
            *workdir.glob("runs/*/chunks/*.npz"),
            *workdir.glob("augment/seed_*/summary.json"),
        ]
    }
    assert len(stamps) == 4 + 4 * 2 + 1 + 2  # models, two chunks per method, age run, seeds
    again = run_aip_protocol(_job(), workdir)
    assert again["scores"] == doc["scores"] and again["augmentation"] == doc["augmentation"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # A finished seed made by another AIP is refused, not silently reported under this one.
    other = MethodSpec("aip", AIPConfig(mu=0.5))
    with pytest.raises(ValueError, match="delete .*seed_0"):
        run_augmentation(_job(), None, workdir / "augment", other)
    # A seed recorded before a config field existed stands when the field is at its default
    # (which keeps the old behaviour), and not otherwise.
    summary_path = workdir / "augment" / "seed_0" / "summary.json"
    summary = json.loads(summary_path.read_text())
    older = {**summary["method"], "config": dict(summary["method"]["config"])}
    del older["config"]["schedule"]
    spec = _job().attribute_method
    assert _with_new_defaults(older, spec) == summary["method"]
    retrying = {**summary["method"], "config": {**summary["method"]["config"], "schedule": [2.0]}}
    assert _with_new_defaults(older, spec) != retrying
    # Another age-classifier AIP is a run of its own beside the first; the gender runs and
    # every file of the first are reused untouched.
    changed = _job(attribute_method=other, augment=None)
    assert run_aip_protocol(changed, workdir)["scores"] == doc["scores"]
    assert len(list((workdir / RUNS_DIR).glob("aip_young-*"))) == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.xdist_group("aip_protocol")  # one worker trains the fixture
def test_named_model_folders_must_hold_the_right_models(protocol, tmp_path):
    _, workdir = protocol
    job = _job()

    def given(field, checkpoint):
        return {field: dataclasses.replace(getattr(job, field), checkpoint=checkpoint)}

    young = str(model_dir(workdir, "classifier_young"))
    with pytest.raises(ValueError, match="trained on 'celeba_young', not 'celeba'"):
        run_aip_protocol(_job(**given("classifier", young)), tmp_path)  # the age classifier
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_aip_protocol(_job(**given("vae", str(tmp_path / "nothing"))), tmp_path)
    with pytest.raises(FileNotFoundError, match="no bundled model 'nope'"):
        run_aip_protocol(_job(**given("attgan", "bundled:nope")), tmp_path)
    assert not (tmp_path / "models").exists()  # refused before training anything else


class _Coordinates(struct.PyTreeNode):
    """An "encoder" whose code is the first 4 pixel values of the image."""

    def encode(self, x):
        return x.reshape(x.shape[0], -1)[:, :4]


def test_latent_perturbation_counts_dimensions_past_the_tolerance():
    x = np.zeros((3, 2, 2, 1), np.float32)
    x_cf = x.copy()
    x_cf[0, 0, 0, 0] = 0.5  # one dimension moved by 0.5
    x_cf[1] = 0.05  # all four moved by 0.05
    x_cf[2, 1, 1, 0] = -1.0
    scale = np.array([1.0, 1.0, 1.0, 0.1])
    lpr = latent_perturbation(_Coordinates(), x, x_cf, scale, tolerance=0.1)
    # Row 1: 0.05 is below 0.1 * 1 in the first three dimensions, above 0.1 * 0.1 in the last.
    np.testing.assert_allclose(lpr, [0.25, 0.25, 0.25])
    assert latent_perturbation(_Coordinates(), x, x, scale, 0.1).tolist() == [0.0, 0.0, 0.0]


def test_a_start_naming_no_output_is_refused_before_encoding():
    x = np.zeros((2, 2, 2, 1), np.float32)
    outputs = {"aip": (x, np.ones(2, bool))}
    with pytest.raises(ValueError, match="starts name no output: \\['vae reconstruction'\\]"):
        score_methods(
            outputs, x, np.zeros(2), {}, (x, np.zeros(2)), 0.1, {"aip": "vae reconstruction"}
        )


def test_attribute_ranking_orders_by_mean_absolute_change_over_flipped_queries():
    delta = np.array([[0.1, -0.5, 0.0], [0.3, 0.2, 0.0], [9.0, 9.0, 9.0]])
    ok = np.array([True, True, False])  # the third query failed: ignored
    ranking = attribute_ranking(delta, ok, ("a", "b", "c"))
    assert [r["attribute"] for r in ranking] == ["b", "a", "c"]
    assert ranking[0]["mean_abs_change"] == pytest.approx(0.35)
    assert ranking[0]["mean_change"] == pytest.approx(-0.15)
    assert ranking[0]["top_share"] == 0.5 and ranking[1]["top_share"] == 0.5
    assert attribute_ranking(delta, np.zeros(3, bool), ("a", "b", "c")) == []


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(methods=(MethodSpec("xgems"),)), "include 'aip'"),
        (dict(queries=1), "queries"),
        (dict(lpr_tolerance=0.0), "lpr_tolerance"),
        (dict(real_faces=1), "real_faces"),
        (dict(attribute_method=MethodSpec("xgems")), "attribute_method"),
    ],
)
def test_bad_jobs_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        _job(**overrides)


def test_models_trained_on_other_data_are_refused():
    job = _job()
    with pytest.raises(ValueError, match="celeba_young"):
        dataclasses.replace(job, age_classifier=job.classifier)
    with pytest.raises(ValueError, match="must be trained on 'celeba'"):
        vae = ModelSpec(train=dataclasses.replace(job.vae.train, dataset="mnist"))
        dataclasses.replace(job, vae=vae)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(augmented=10, subset=5), "augmented"),
        (dict(seeds=()), "seeds"),
        (dict(seeds=(1, 1)), "seeds"),
        (dict(subset=1), "subset"),
        (dict(method=MethodSpec("xgems")), "method"),
    ],
)
def test_bad_augment_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kwargs)
