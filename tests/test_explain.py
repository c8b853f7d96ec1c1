"""The DeDUCE protocol end to end on a small configuration, its pair list, its published numbers,
and the shipped config files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from explain.aip import AIPJob
from explain.amortised import ExplainConfig, GeneratorJob
from explain.deduce import (
    BASELINE,
    DEFAULT_METHODS,
    PUBLISHED,
    ProtocolConfig,
    protocol_pairs,
    run_protocol,
)
from explain.deduce.ablation import AblationConfig
from explain.density import DensityComparison
from explain.diffexplainer import DiffExplainerJob
from explain.guided import GuidedExplainConfig
from jaxcf.core import Results, load_config
from jaxcf.experiment import REPORT_DIR, RUNS_DIR, ModelSpec, model_dir
from jaxcf.methods import DeDUCEConfig, FGSMConfig, JSMAConfig, MethodSpec, WachterConfig
from jaxcf.models import config_from_dict, config_to_dict, denoiser_config_from_dict, generators
from jaxcf.report import published_for
from jaxcf.runner import RunnerConfig
from jaxcf.training import (
    AttGANTrainConfig,
    DiffusionTrainConfig,
    TrainConfig,
    VAETrainConfig,
    WGANTrainConfig,
)
from tests.conftest import tiny_mnist_vae


def test_protocol_pairs_cover_every_other_class():
    labels = np.arange(50) % 10
    index, target, sets = protocol_pairs(labels, n_sets=2, set_size=5, seed=3)
    assert len(index) == len(target) == len(sets) == 2 * 5 * 9
    assert np.all(labels[index] != target)
    assert len(np.unique(index)) == 10 and set(sets) == {0, 1}
    for i in np.unique(index):
        assert sorted(target[index == i]) == [c for c in range(10) if c != labels[i]]
    with pytest.raises(ValueError, match="test images"):
        protocol_pairs(labels, n_sets=6, set_size=10, seed=0)


def test_published_numbers():
    # The numbers themselves are quotations kept once, in explain/deduce/published.py; here
    # only their shape and the ordering the paper's Table 1 shows.
    pub = PUBLISHED
    assert set(pub) == {"deduce", "jsma", "cfproto", "revise"}
    assert "wachter" not in pub and "fgsm" not in pub
    for row in pub.values():
        assert set(row) == {"l0", "l1", "failure_rate", "seconds_per_cf"}
        assert 0 <= row["failure_rate"] < 1 and 0 < row["l1"] < row["l0"] <= 784
    order = sorted(pub, key=lambda m: pub[m]["l0"])
    assert order == ["deduce", "jsma", "cfproto", "revise"]
    assert pub["deduce"]["failure_rate"] == 0.0
    assert published_for("DeDUCE", PUBLISHED) is pub["deduce"]
    assert published_for("CF-Proto", PUBLISHED) is pub["cfproto"]
    assert published_for("wachter", PUBLISHED) is None
    json.dumps(pub, allow_nan=False)


def test_default_methods():
    assert [s.key for s in DEFAULT_METHODS] == ["deduce", "jsma", "wachter", "fgsm"]
    assert ProtocolConfig().methods == DEFAULT_METHODS
    # DeDUCE explains the main classifier, the baselines the baseline one.
    assert DEFAULT_METHODS[0].resource_keys() == {"classifier": "classifier", "density": "density"}
    assert all(s.resource_keys() == {"classifier": "baseline"} for s in DEFAULT_METHODS[1:])
    with pytest.raises(ValueError, match="methods"):
        ProtocolConfig(methods=())


METHODS = (
    MethodSpec("deduce", DeDUCEConfig(max_iter=60)),
    MethodSpec("jsma", JSMAConfig(max_iter=60), resources=BASELINE),
    MethodSpec("wachter", WachterConfig(max_iter=60), resources=BASELINE),
    MethodSpec("fgsm", FGSMConfig(eps=0.1, schedule=(0.2, 0.3, 0.5)), resources=BASELINE),
)


@pytest.mark.standard_promotion  # Wachter runs optax's Adam
def test_run_protocol_writes_results_metrics_and_figures(trained_dir, tmp_path, capsys):
    config = ProtocolConfig(
        classifier=ModelSpec(checkpoint=str(trained_dir / "checkpoint")),
        baseline=ModelSpec(checkpoint=str(trained_dir / "checkpoint")),  # the two-model path
        methods=METHODS,
        n_sets=2,
        set_size=2,
        runner=RunnerConfig(chunk_size=16, slots=8),
        grid_queries=3,
    )
    result = run_protocol(config, tmp_path)
    names = [s.key for s in METHODS]
    assert result["pairs"] == 36
    runs = {p.name.rsplit("-", 1)[0]: p for p in (tmp_path / RUNS_DIR).iterdir()}
    assert sorted(runs) == sorted(names)
    loaded = {name: Results.load(runs[name]) for name in names}
    for name, out in loaded.items():
        assert len(out) == 36 and out.x.shape == out.x_cf.shape == (36, 28, 28, 1), name
        for field in ("target", "success", "n_iter", "score", "group"):
            assert getattr(out, field).shape == (36,), (name, field)
        assert out.x_cf.min() >= 0 and out.x_cf.max() <= 1
        np.testing.assert_array_equal(out.group, np.repeat([0, 1], 18))
        np.testing.assert_array_equal(out.target, loaded["deduce"].target)
        assert out.meta["method"] == name
    assert np.all(loaded["fgsm"].n_iter == 1) and "attempt" in loaded["fgsm"].extras
    report = tmp_path / REPORT_DIR
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics == result
    for key in ("summaries", "common", "timing", "queries", "classifier", "baseline_classifier"):
        assert key in metrics, key
    assert metrics["queries"] == {}  # one counterfactual per pair
    for name in names:
        s = metrics["summaries"][name]
        assert s["n"] == 36 and s["n_sets"] == 2 and 0 <= s["failure_rate"] <= 1
        assert "l0_std_over_sets" in s and "nll" in s and "valid_rate" in s
        assert s["failure_rate"] == pytest.approx(1 - loaded[name].success.mean())
        assert metrics["timing"][name]["seconds_per_counterfactual"] > 0
    assert metrics["baseline_classifier"]["methods"] == ["jsma", "wachter", "fgsm"]
    assert metrics["classifier"]["checkpoint"] == str(trained_dir / "checkpoint")
    # Wachter moves many pixels, the pixel searches few.
    assert metrics["summaries"]["wachter"]["l0"] > metrics["summaries"]["deduce"]["l0"]
    # L0/L1 on the pairs every method solved: the overall means agree with the results files.
    common = metrics["common"]
    solved = np.logical_and.reduce([loaded[m].success for m in names])
    assert common["n"] == solved.sum() > 0
    assert sum(r["n"] for r in common["per_group"]) == common["n"]
    l0_deduce = np.abs(loaded["deduce"].x_cf - loaded["deduce"].x) > 1e-6
    l0_deduce = l0_deduce.reshape(36, -1).sum(1)
    assert common["deduce"]["l0"] == pytest.approx(l0_deduce[solved].mean())
    assert set(common["paired"]) == {f"deduce_minus_{m}" for m in names[1:]}
    assert common["over"] == list(names)
    # Paired differences are on the pairs the two methods both solved.
    paired = common["paired"]["deduce_minus_jsma"]
    both = loaded["deduce"].success & loaded["jsma"].success
    assert paired["n"] == both.sum() >= common["n"]
    l0_jsma = (np.abs(loaded["jsma"].x_cf - loaded["jsma"].x) > 1e-6).reshape(36, -1).sum(1)
    assert paired["l0"]["diff"] == pytest.approx((l0_deduce - l0_jsma)[both].mean())
    text = (report / "report.md").read_text()
    assert "deduce - jsma on the" in text and "deduce - fgsm on the" in text
    for png in ("grid.png", "l0.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "deduce" in printed and "fgsm" in printed
    assert "21.16" in printed  # the published DeDUCE L0 beside ours
    # A second experiment asking for the same explainers, pairs and seed reuses every run,
    # whatever its chunking, and writes the same numbers.
    again = dataclasses.replace(config, runner=RunnerConfig(chunk_size=7, slots=3))
    assert run_protocol(again, tmp_path)["summaries"] == metrics["summaries"]
    assert capsys.readouterr().out.count("reusing the finished run") == len(names)


@pytest.mark.standard_promotion  # the VAE's training and REVISE run optax's Adam
def test_run_protocol_trains_a_missing_vae_for_the_latent_searches(trained_dir, tmp_path):
    from jaxcf.methods import REVISEConfig

    vae_train = tiny_mnist_vae()
    methods = (MethodSpec("revise", REVISEConfig(max_iter=5)),)
    base = dict(
        classifier=ModelSpec(checkpoint=str(trained_dir / "checkpoint")),
        methods=methods,
        n_sets=1,
        set_size=1,
        runner=RunnerConfig(chunk_size=9, slots=9),
        grid_queries=2,
    )
    # Without a VAE the latent search has no resource to decode from.
    with pytest.raises(ValueError, match="needs a 'vae'"):
        run_protocol(ProtocolConfig(**base), tmp_path / "none")
    doc = run_protocol(ProtocolConfig(**base, vae=ModelSpec(train=vae_train)), tmp_path / "run")
    vae_dir = model_dir(tmp_path / "run", "vae")
    assert (vae_dir / "checkpoint").is_dir()  # trained there when missing
    assert doc["vae"]["latent_dim"] == 4 and doc["pairs"] == 9
    (run,) = (tmp_path / "run" / RUNS_DIR).iterdir()
    out = Results.load(run)
    assert out.extras["z"].shape == out.extras["z0"].shape == (9, 4)
    assert "4-d code of the VAE" in (tmp_path / "run" / REPORT_DIR / "report.md").read_text()
    # The trained VAE is found again by path; one of other images is refused.
    again = ProtocolConfig(**base, vae=ModelSpec(checkpoint=str(vae_dir)))
    assert run_protocol(again, tmp_path / "run")["vae"]["checkpoint"] == str(vae_dir)
    wrong = dataclasses.replace(vae_train, dataset="fashion_mnist")
    with pytest.raises(ValueError, match="fashion_mnist"):
        run_protocol(ProtocolConfig(**base, vae=ModelSpec(train=wrong)), tmp_path / "fashion")


_ROOT = Path(__file__).resolve().parent.parent
_CONFIG_FILES = sorted(
    str(p.relative_to(_ROOT))
    for pattern in ("train/configs/*.py", "explain/*/configs/*.py")
    for p in _ROOT.glob(pattern)
    if p.name != "__init__.py"
)


@pytest.mark.parametrize("path", _CONFIG_FILES)
def test_config_files_load(path):
    """Every shipped config file builds its config, and each named model architecture exists."""
    config = load_config(_ROOT / path)
    if isinstance(config, ExplainConfig):  # an amortised generator's explanation run
        config = config.resolved_job()
    if isinstance(config, GeneratorJob):
        trains = [config.classifier]
        gen = config.generator
        for part in (gen.generator, gen.discriminator):
            if part is not None:
                assert generators.config_from_dict(generators.config_to_dict(part)) == part
    elif isinstance(config, DiffusionTrainConfig):
        assert denoiser_config_from_dict(dataclasses.asdict(config.model)) == config.model
        trains = []
    elif isinstance(config, VAETrainConfig):
        assert VAETrainConfig(**config.to_dict()) == config
        trains = []
    elif isinstance(config, AttGANTrainConfig):
        assert AttGANTrainConfig(**config.to_dict()) == config
        assert config.model.latent_dim == 1024  # the AIP image setting's latent size
        trains = []
    elif isinstance(config, WGANTrainConfig):
        assert WGANTrainConfig(**config.to_dict()) == config
        trains = []
    elif isinstance(config, GuidedExplainConfig):
        trains = [config.classifier.train]
    elif isinstance(config, AIPJob):
        assert config.attgan.train.model.latent_dim == 1024 and config.queries == 500
        trains = [config.classifier.train, config.age_classifier.train]
    elif isinstance(config, DiffExplainerJob):
        model = config.diffusion.train.model
        assert denoiser_config_from_dict(dataclasses.asdict(model)) == model
        trains = [config.teacher.train]
    elif isinstance(config, DensityComparison):
        trains = [config.classifier.train]
    elif isinstance(config, AblationConfig):
        assert config.classifier.checkpoint is not None and config.variants
        trains = []
    elif path.startswith("explain"):
        assert isinstance(config, ProtocolConfig)
        assert config.methods and all(isinstance(s, MethodSpec) for s in config.methods)
        specs = [s for s in (config.classifier, config.baseline) if s is not None]
        trains = [s.train for s in specs if s.train is not None]
    else:
        assert isinstance(config, TrainConfig)
        trains = [config]
    for train in trains:
        assert config_from_dict(config_to_dict(train.model)) == train.model


def test_cfproto_codes_its_prototypes_with_the_protocols_autoencoder(
    trained_dir, tmp_path, monkeypatch
):
    """With an ``autoencoder`` spec CFProto's prototypes (and its reconstruction term) use that
    model, trained into the workdir when missing; without one, the VAE's encoder."""
    from jaxcf.methods import CFProtoConfig
    from jaxcf.models import VAEConfig

    def tiny(latent, loss, beta):
        model = VAEConfig(input_shape=(28, 28, 1), latent_dim=latent, widths=(4, 8), hidden=0)
        short = dict(steps=2, eval_every=2, save_every=2, train_examples=32)
        return tiny_mnist_vae(model=model, loss=loss, beta=beta, **short)

    config = ProtocolConfig(
        classifier=ModelSpec(checkpoint=str(trained_dir / "checkpoint")),
        vae=ModelSpec(train=tiny(4, "bernoulli", 1.0)),
        autoencoder=ModelSpec(train=tiny(3, "gaussian", 0.0)),
        methods=(MethodSpec("cfproto", CFProtoConfig(gamma=1.0, c_steps=1, max_iter=3)),),
        n_sets=1,
        set_size=1,
        runner=RunnerConfig(chunk_size=9, slots=9),
        grid_queries=2,
        prototype_rows=64,
    )
    from explain.deduce import protocol

    banks, build = [], protocol.mnist_prototypes

    def spy(*args, **kwargs):
        banks.append(build(*args, **kwargs))
        return banks[-1]

    monkeypatch.setattr(protocol, "mnist_prototypes", spy)
    doc = run_protocol(config, tmp_path)
    assert (model_dir(tmp_path, "autoencoder") / "checkpoint").is_dir()
    (bank,) = banks
    assert bank.codes.shape == (64, 3)  # the autoencoder's 3-d codes, not the VAE's 4-d
    assert doc["autoencoder"]["latent_dim"] == 3 and doc["vae"]["latent_dim"] == 4
    assert doc["pairs"] == 9
    with pytest.raises(TypeError, match="autoencoder must be a ModelSpec"):
        dataclasses.replace(config, autoencoder="workdir/ae")


def test_cfproto_tuning_queries_are_held_out_from_the_full_table_and_the_rule_is_stated():
    from explain.deduce.tune_cfproto import TuneConfig, held_out_queries, select

    labels = np.random.default_rng(1).integers(0, 10, 2000)
    config = TuneConfig(images=27)
    idx, target = held_out_queries(labels, config)
    table, _, _ = protocol_pairs(labels, 5, 100, config.seed)  # the full table's images
    assert len(idx) == 27 and not set(idx) & set(table)
    assert np.all(target != labels[idx]) and set(target) <= set(range(10))
    shift = (target - labels[idx]) % 10  # the targets cycle through the other nine classes
    np.testing.assert_array_equal(shift, 1 + np.arange(27) % 9)
    rows = [
        {"gamma": 0.1, "theta": 1.0, "success": 1.0, "l1": 17.0},
        {"gamma": 1.0, "theta": 1.0, "success": 1.0, "l1": 16.4},
        {"gamma": 10.0, "theta": 1.0, "success": 0.9, "l1": 3.0},  # sparser, but fails more
    ]
    assert (select(rows)["gamma"], select(rows)["theta"]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="exceed the test split"):
        held_out_queries(labels[:510], config)
    with pytest.raises(ValueError, match=">= 0"):
        TuneConfig(gammas=(-1.0,))
