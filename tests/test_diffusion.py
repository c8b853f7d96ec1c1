"""Diffusion core: schedules against their closed forms, DDPM / DDIM steps against the
textbook formulas, exact sampling and inversion with an analytic denoiser, a briefly trained
UNet whose DDIM inversion reconstructs held-out digits, reproducible training, and the
guided-sampler pieces the contract table does not cover (cost accounting, bad setups)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcf import diffusion as diff
from jaxcf.core import Retry
from jaxcf.methods import GuidedDiffusionConfig, make
from jaxcf.models import UNet, UNetConfig, load_diffusion
from jaxcf.training import DiffusionTrainConfig, train_diffusion
from tests.conftest import tiny_diffae_config, tiny_diffusion

pytestmark = pytest.mark.standard_promotion  # optax's Adam runs in the training tests


# ----------------------------------------------------------------------------- schedules


def test_linear_schedule_matches_ho_et_al():
    s = diff.make_schedule(diff.ScheduleConfig("linear", 1000))
    b = np.asarray(s.betas, np.float64)
    np.testing.assert_allclose([b[0], b[-1]], [1e-4, 0.02], rtol=1e-5)
    np.testing.assert_allclose(np.diff(b), (0.02 - 1e-4) / 999, rtol=1e-3)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(s.alphas_cumprod, abar, rtol=1e-5)
    np.testing.assert_allclose(s.alphas_cumprod_prev[1:], abar[:-1], rtol=1e-5)
    assert float(s.alphas_cumprod_prev[0]) == 1.0
    # 100 steps keep the overall noise: the scaled betas end at 0.2.
    np.testing.assert_allclose(diff.linear_betas(100)[[0, -1]], [1e-3, 0.2])
    # From 20 steps down the scaled betas would reach 1 (abar 0 or negative): capped at 0.999.
    for n in (20, 10):
        short = diff.make_schedule(diff.ScheduleConfig("linear", n))
        assert float(np.max(short.betas)) <= np.float32(0.999)
        assert np.all(np.asarray(short.alphas_cumprod) > 0)


def test_cosine_schedule_matches_its_closed_form():
    T = 1000
    s = diff.make_schedule(diff.ScheduleConfig("cosine", T))

    def f(t):
        return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 1, 10, 250, 500, 900):
        np.testing.assert_allclose(float(s.alphas_cumprod[t]), f(t + 1) / f(0), rtol=1e-4)
    assert float(np.max(s.betas)) <= np.float32(0.999)


def test_respacing_keeps_the_marginals_of_the_kept_steps():
    full = diff.make_schedule(diff.ScheduleConfig("cosine", 1000))
    short = full.respace(50)
    assert short.num_steps == 50 and int(short.timesteps[-1]) == 999
    t = np.asarray(short.timesteps)
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(short.alphas_cumprod, np.asarray(full.alphas_cumprod)[t], rtol=1e-6)
    # beta_i = 1 - abar_i / abar_{i-1} over the kept steps.
    abar = np.asarray(short.alphas_cumprod, np.float64)
    np.testing.assert_allclose(short.betas[1:], 1 - abar[1:] / abar[:-1], rtol=1e-4)
    assert full.respace(1000) is full
    assert short.index_of(int(t[7])) == 7
    for bad in (0, 51, 2.5):
        with pytest.raises(ValueError, match="num_steps"):
            short.respace(bad)


@pytest.mark.parametrize(
    "kwargs", [dict(kind="quadratic"), dict(num_steps=1), dict(num_steps=0)], ids=str
)
def test_bad_schedule_configs_raise(kwargs):
    with pytest.raises(ValueError):
        diff.ScheduleConfig(**kwargs)


# ----------------------------------------------------------------------------- steps


def _schedule(n=20):
    return diff.make_schedule(diff.ScheduleConfig("linear", n))


def test_ddpm_step_is_the_posterior_of_ho_et_al():
    s = _schedule()
    rng = np.random.default_rng(0)
    x_t, eps, z = (rng.normal(size=(3, 4, 4, 1)).astype(np.float32) for _ in range(3))
    i = np.array([0, 7, 19])
    got = np.asarray(diff.ddpm_step(s, x_t, jnp.asarray(i), eps, z, clip=False))
    b = np.asarray(s.betas, np.float64)
    abar = np.cumprod(1 - b)
    for q, k in enumerate(i):
        prev = abar[k - 1] if k else 1.0
        x0 = (x_t[q] - np.sqrt(1 - abar[k]) * eps[q]) / np.sqrt(abar[k])
        mean = (
            b[k] * np.sqrt(prev) / (1 - abar[k]) * x0
            + (1 - prev) * np.sqrt(1 - b[k]) / (1 - abar[k]) * x_t[q]
        )
        var = b[k] * (1 - prev) / (1 - abar[k])
        np.testing.assert_allclose(got[q], mean + np.sqrt(var) * z[q], rtol=1e-4, atol=1e-5)


def test_ddim_step_matches_song_et_al():
    s = _schedule()
    rng = np.random.default_rng(1)
    x_t, eps, z = (rng.normal(size=(2, 4, 4, 1)).astype(np.float32) for _ in range(3))
    abar = np.cumprod(1 - np.asarray(s.betas, np.float64))
    for eta in (0.0, 0.5, 1.0):
        got = np.asarray(diff.ddim_step(s, x_t, 9, eps, z, eta=eta, clip=False))
        a, p = abar[9], abar[8]
        x0 = (x_t - np.sqrt(1 - a) * eps) / np.sqrt(a)
        sigma = eta * np.sqrt((1 - p) / (1 - a) * (1 - a / p))
        want = np.sqrt(p) * x0 + np.sqrt(1 - p - sigma**2) * eps + sigma * z
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _oracle(s, c):
    """The exact noise predictor of a data set holding the single image ``c``."""

    def denoise(x, t):
        abar = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        return (x - jnp.sqrt(abar) * c) / jnp.sqrt(1 - abar)

    return denoise


def test_an_exact_denoiser_samples_and_inverts_exactly():
    s = diff.make_schedule(diff.ScheduleConfig("cosine", 200))
    c = jnp.asarray(np.random.default_rng(2).uniform(-0.9, 0.9, (1, 6, 6, 1)), jnp.float32)
    denoise = _oracle(s, c)
    keys = jax.random.split(jax.random.key(0), 4)
    noise = jax.random.normal(jax.random.key(1), (4, 6, 6, 1))
    for method in ("ddpm", "ddim"):
        for steps in (s, s.respace(25)):
            out = diff.sample(denoise, steps, noise, keys, method=method)
            np.testing.assert_allclose(out, jnp.broadcast_to(c, out.shape), atol=1e-4)
    steps = s.respace(25)
    x0 = jnp.broadcast_to(c, (4, 6, 6, 1))
    x_T = diff.ddim_invert(denoise, steps, x0)
    np.testing.assert_allclose(
        diff.sample(denoise, steps, x_T, keys, method="ddim", clip=False), x0, atol=1e-4
    )
    # Forward noising has the closed-form marginal: mean sqrt(abar) c, std sqrt(1 - abar).
    big = jax.random.normal(jax.random.key(3), (4000, 6, 6, 1))
    xt = np.asarray(diff.q_sample(s, jnp.broadcast_to(c, big.shape), 100, big))
    a = float(s.alphas_cumprod[100])
    np.testing.assert_allclose(xt.mean(0), math.sqrt(a) * np.asarray(c[0]), atol=0.05)
    np.testing.assert_allclose(xt.std(0), math.sqrt(1 - a), atol=0.05)


def test_sampling_is_per_query():
    """A query's sample depends only on its own start and key."""
    s = _schedule(30)
    c = jnp.zeros((1, 4, 4, 1))

    def denoise(x, t):  # not exact: the noise prediction of every query is its own business
        return 0.5 * _oracle(s, c)(x, t) + 0.1 * jnp.tanh(x)

    keys = jax.random.split(jax.random.key(4), 5)
    x = jax.random.normal(jax.random.key(5), (5, 4, 4, 1))
    batch = diff.sample(denoise, s, x, keys, method="ddpm")
    for q in range(5):
        one = diff.sample(denoise, s, x[q : q + 1], keys[q : q + 1], method="ddpm")
        np.testing.assert_allclose(batch[q], one[0], atol=1e-6)
    with pytest.raises(ValueError, match="start"):
        diff.sample(denoise, s, x, keys, start=30)


# ----------------------------------------------------------------------------- a trained UNet


def _tiny_config(**overrides) -> DiffusionTrainConfig:
    base = DiffusionTrainConfig(
        model=UNetConfig(
            input_shape=(32, 32, 1), width=8, channel_mult=(1, 2), attention=(), groups=4
        ),
        schedule=diff.ScheduleConfig("cosine", 200),
        dataset="mnist",
        pad=2,
        learning_rate=2e-3,
        warmup_steps=20,
        batch_size=32,
        steps=80,
        eval_every=80,
        save_every=80,
        train_examples=1024,
        val_examples=64,
        sample_steps=4,
        samples=4,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="session")  # survives other modules' tests in between
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ddpm")
    model, meta = train_diffusion(_tiny_config(), workdir)
    return model, meta, workdir


@pytest.mark.xdist_group("tiny_ddpm")  # one worker trains the fixture
def test_training_learns_and_ddim_inversion_reconstructs_held_out_digits(tiny_run, mnist_test):
    model, meta, workdir = tiny_run
    history = meta["history"]
    assert history[-1]["val_loss"] < 0.35  # an untrained model scores ~1 (predicts no noise)
    assert (workdir / "samples.png").exists() and list((workdir / "samples").glob("*.png"))
    loaded, _ = load_diffusion(workdir)
    x = jnp.asarray(mnist_test.images[:16])
    steps = loaded.schedule.respace(50)
    y = loaded.space.to_model(x)
    end = diff.inversion_end(steps)
    assert end >= 40  # most of the way to noise
    x_T = jax.jit(lambda m, y: diff.ddim_invert(m.denoise, steps, y))(loaded, y)
    keys = jax.random.split(jax.random.key(0), 16)
    decode = jax.jit(
        lambda m, z: diff.sample(m.denoise, steps, z, keys, start=end, method="ddim", clip=False)
    )
    back = loaded.space.from_model(decode(loaded, x_T))
    err = float(jnp.mean(jnp.abs(back - x)))
    fresh = loaded.space.from_model(decode(loaded, jax.random.normal(jax.random.key(1), x_T.shape)))
    baseline = float(jnp.mean(jnp.abs(fresh - x)))
    assert err < 0.03 and err < baseline / 5, (err, baseline)


@pytest.mark.xdist_group("tiny_ddpm")  # one worker trains the fixture
def test_training_is_reproducible_and_checks_its_data(tiny_run, trained_dir):
    """Same seed, same batch and key: the same weights after two steps (the loop's seeding and
    shuffling are tested with the loop); a finished workdir and misfit configs are refused
    before any training."""
    from jaxcf.training import DiffusionTask

    cfg = _tiny_config()
    x = jax.random.uniform(jax.random.key(0), (8, 32, 32, 1), minval=-1.0, maxval=1.0)

    def two_steps():
        task = DiffusionTask(cfg, np.asarray(x), (28, 28, 1))
        modules = task.init(cfg.seed, None)
        for i in range(2):
            task.train_step(modules, {"x": x}, jax.random.key(i))
        return nnx.state(modules["unet_ema"], nnx.Param)

    a, b = two_steps(), two_steps()
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    with pytest.raises(FileExistsError):
        train_diffusion(cfg, tiny_run[2])
    with pytest.raises(ValueError, match="padded by 0"):
        train_diffusion(dataclasses.replace(cfg, pad=0), tiny_run[2] / "c")
    with pytest.raises(ValueError, match="not a diffusion checkpoint"):
        load_diffusion(trained_dir)  # a classifier's checkpoint
    with pytest.raises(ValueError, match="multiples of 4"):
        UNetConfig(input_shape=(30, 30, 1), channel_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="takes no"):
        UNet(UNetConfig(width=8, groups=4), rngs=nnx.Rngs(0))(
            jnp.zeros((1, 32, 32, 1)), jnp.zeros(1, jnp.int32), jnp.zeros((1, 4))
        )


# ----------------------------------------------------------------------------- guided sampler


def test_guided_cost_accounting_and_bad_setups(trained, mnist_test):
    model, _, _ = trained
    d = tiny_diffusion()
    one = make(
        "guided_diffusion",
        GuidedDiffusionConfig(num_steps=20, start=0.5),
        classifier=model,
        diffusion=d,
    )
    roll = make(
        "guided_diffusion",
        GuidedDiffusionConfig(num_steps=20, start=0.5, clean_estimate="rollout"),
        classifier=model,
        diffusion=d,
    )
    k = one.first + 1
    assert one.denoiser_calls == k and roll.denoiser_calls == k * (k + 1) // 2
    # DiME's budget: 60 steps cost 1,830 denoiser calls.
    assert dataclasses.replace(roll, first=59).denoiser_calls == 1830
    retry = make(
        "guided_diffusion",
        GuidedDiffusionConfig(schedule=(10.0, 15.0)),
        classifier=model,
        diffusion=d,
    )
    assert isinstance(retry, Retry) and retry.schedule == (8.0, 10.0, 15.0)
    for bad in (
        dict(start=0.0),
        dict(start=1.5),
        dict(guidance_scale=0.0),
        dict(guidance_scale=-1.0),
        dict(schedule=(10.0, -1.0)),
        dict(method="euler"),
        dict(distance_weight=-0.1),
    ):
        with pytest.raises(ValueError):
            GuidedDiffusionConfig(**bad)
    with pytest.raises(ValueError, match="exceeds"):
        make(
            "guided_diffusion", GuidedDiffusionConfig(num_steps=500), classifier=model, diffusion=d
        )
    wrong = dataclasses.replace(d, image_shape=(24, 24, 1))
    with pytest.raises(ValueError, match="shape"):
        make("guided_diffusion", GuidedDiffusionConfig(), classifier=model, diffusion=wrong)
    x = np.asarray(mnist_test.images[:2])
    with pytest.raises(ValueError, match="domain|range|box"):
        one.check(x * 3.0 - 1.0, np.array([1, 2]))


def test_non_finite_samples_are_failures_not_results(trained, mnist_test):
    model, _, _ = trained
    d = tiny_diffusion()
    broken = dataclasses.replace(
        d, unet=jax.tree.map(lambda a: a * jnp.nan if a.ndim == 4 else a, d.unet)
    )
    e = make(
        "guided_diffusion",
        GuidedDiffusionConfig(num_steps=10, start=0.3),
        classifier=model,
        diffusion=broken,
    )
    x = np.asarray(mnist_test.images[:3])
    xs, ts = e.check(x, np.array([1, 2, 3]))
    r = jax.jit(lambda e, a, b, k: e(a, b, k))(e, xs, ts, jax.random.split(jax.random.key(0), 3))
    assert np.all(np.asarray(r.extras["non_finite"])) and not np.any(np.asarray(r.success))
    assert np.all(np.isfinite(np.asarray(r.x_cf)))


@pytest.mark.xdist_group("tiny_ddpm")  # one worker trains the fixture
def test_guided_protocol_end_to_end(tiny_run, trained_dir, tmp_path):
    """The MNIST protocol on the briefly trained model, a handful of queries: every row, the
    report and the grid; the unguided row starts from the guided run's own noise."""

    from explain.guided import GuidedExplainConfig, run_guided_protocol
    from jaxcf.experiment import REPORT_DIR, ModelSpec
    from jaxcf.runner import RunnerConfig

    _, _, source = tiny_run
    workdir = tmp_path / "run"
    common = dict(start=0.6, num_steps=8, guidance_scale=50.0, distance_weight=1.0)
    config = GuidedExplainConfig(
        classifier=ModelSpec(checkpoint=str(trained_dir / "checkpoint")),
        diffusion=ModelSpec(checkpoint=str(source)),
        guided=GuidedDiffusionConfig(**common, schedule=(100.0,)),
        rollout=GuidedDiffusionConfig(**common, clean_estimate="rollout"),
        queries=6,
        rollout_queries=3,
        runner=RunnerConfig(chunk_size=3),
    )
    doc = run_guided_protocol(config, workdir)
    rows = doc["rows"]
    assert set(rows) == {"guided", "unguided", "rollout", "guided_on_rollout_queries"}
    k = doc["start_index"] + 1
    assert rows["rollout"]["denoiser_calls"] == k * (k + 1) // 2
    assert k <= rows["guided"]["denoiser_calls"] <= 2 * k  # a retry costs another pass
    for r in rows.values():
        assert 0.0 <= r["flip_rate"] <= 1.0 and r["l1"] > 0 and r["seconds_per_cf"] > 0
    text = (workdir / REPORT_DIR / "report.md").read_text()
    assert text.count("\n| ") == 6  # header, rule, 4 rows
    assert (workdir / "report" / "guided_grid.png").exists()


def test_frechet_distance_matches_its_closed_form():
    from jaxcf.evaluation.distribution import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(20_000, 3))
    b = 2.0 * rng.normal(size=(20_000, 3)) + 1.0
    # N(0, I) vs N(1, 4I) in 3-d: |mu|^2 + tr(I) + tr(4I) - 2 tr(2I) = 3 + 3 + 12 - 12 = 6.
    assert abs(frechet_distance(a, b) - 6.0) < 0.2
    assert abs(frechet_distance(a, a)) < 1e-9
    with pytest.raises(ValueError):
        frechet_distance(a[:1], b)


def test_query_keys_are_the_runners(trained, mnist_test, tmp_path):
    """runner.query_keys reproduces the keys the runner gives each query's first row."""
    from jaxcf import runner
    from jaxcf.methods import make

    model, _, _ = trained
    x = np.asarray(mnist_test.images[:5])
    e = make(
        "guided_diffusion",
        GuidedDiffusionConfig(num_steps=6, start=0.5, guidance_scale=1.0),
        classifier=model,
        diffusion=tiny_diffusion(),
    )
    t = np.array([1, 2, 3, 4, 5], np.int32)
    res = runner.run(e, x, t, tmp_path / "r", seed=11, progress=False)
    direct = jax.jit(lambda e, a, b, k: e(a, b, k))(
        e, jnp.asarray(x), jnp.asarray(t), runner.query_keys(11, 5)
    )
    np.testing.assert_allclose(res.x_cf, np.asarray(direct.x_cf), atol=1e-5)


def _tiny_ae_config():
    return _tiny_config(
        model=tiny_diffae_config(),
        dataset="pneumoniamnist",
        loss="l1",
        steps=20,
        eval_every=20,
        save_every=20,
        train_examples=512,
        samples=8,
        schedule=diff.ScheduleConfig("linear", 100),
    )


@pytest.fixture(scope="session")  # survives other modules' tests in between
def tiny_ae_run(tmp_path_factory):
    """A tiny diffusion autoencoder trained 20 steps on PneumoniaMNIST (shared by the
    autoencoder and DiffExplainer-protocol tests)."""
    workdir = tmp_path_factory.mktemp("diffae")
    trained, _ = train_diffusion(_tiny_ae_config(), workdir)
    return trained, workdir


@pytest.mark.xdist_group("tiny_diffae")  # one worker trains the fixture
def test_diffusion_autoencoder_trains_encodes_and_reloads(tiny_ae_run):
    """The autoencoder variant: a semantic code per image conditions the decoder; configs that
    do not fit together raise."""
    from jaxcf.models import DiffAEConfig, SemanticEncoderConfig

    shape = (32, 32, 1)
    trained, workdir = tiny_ae_run
    loaded, meta = load_diffusion(workdir)
    assert loaded.is_autoencoder and meta["configs"]["unet"]["kind"] == "diffae"
    x0 = jnp.zeros((3,) + shape)
    z = loaded.encode(x0)
    assert z.shape == (3, 16)
    for a, b in zip(jax.tree.leaves(trained.unet), jax.tree.leaves(loaded.unet), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="code"):
        loaded.denoise(x0, jnp.zeros(3, jnp.int32))
    with pytest.raises(TypeError, match="semantic encoder"):
        tiny_diffusion().encode(x0)
    with pytest.raises(ValueError, match="cond_dim"):
        DiffAEConfig(unet=UNetConfig(cond_dim=8), encoder=SemanticEncoderConfig(code_dim=16))


def test_agent_distils_its_teacher_and_is_tied_to_it(trained, mnist_test, tmp_path):
    """The agent (linear map on the codes + the teacher's frozen head) learns to agree with the
    teacher on a two-class slice of MNIST; agreement metrics and image metrics are sane; a saved
    agent refuses another teacher; DiffExplainer refuses a mismatched setup."""
    from jaxcf.core import as_pure
    from jaxcf.evaluation import agreement
    from jaxcf.methods import DiffExplainerConfig, diffexplainer
    from jaxcf.models import load_agent, save_agent, semantic_codes
    from jaxcf.training import AgentConfig, train_agent
    from tests.conftest import random_agent, tiny_autoencoder

    teacher, _, _ = trained
    model = tiny_autoencoder()
    x = np.asarray(mnist_test.images[:512])
    codes = semantic_codes(model, x)
    assert codes.shape == (512, 16)
    agent, history = train_agent(teacher, codes, x, AgentConfig(steps=300, batch_size=128))
    assert history[-1] < history[0]
    logits_t = np.asarray(teacher.logits(jnp.asarray(x)))
    logits_a = np.asarray(agent.logits(jnp.asarray(codes)))
    # The untrained encoder's 16-d codes say little about a digit, but distilling must still
    # bring the agent's features and decisions closer to the teacher's than an undistilled one.
    before = random_agent(teacher)
    logits_r = np.asarray(before.logits(jnp.asarray(codes)))
    feats_t = np.asarray(teacher.features(jnp.asarray(x)))
    err = np.mean(np.abs(np.asarray(agent.features(jnp.asarray(codes))) - feats_t))
    err_r = np.mean(np.abs(np.asarray(before.features(jnp.asarray(codes))) - feats_t))
    agree, agree_r = (np.mean(logits_t.argmax(1) == lg.argmax(1)) for lg in (logits_a, logits_r))
    assert err < 0.7 * err_r and agree > agree_r
    two = agreement.binary_agreement(logits_t[:, :2], logits_t[:, :2])
    assert two["accuracy"] == 1.0 and abs(two["kl"]) < 1e-12 and two["auc"] == 1.0
    flipped = agreement.binary_agreement(logits_t[:, :2], -logits_t[:, :2])
    assert flipped["accuracy"] == 0.0 and flipped["auc"] == 0.0
    with pytest.raises(ValueError):
        agreement.binary_agreement(logits_t, logits_a)
    assert np.all(np.isinf(agreement.psnr(x[:4], x[:4])))
    np.testing.assert_allclose(agreement.ssim(x[:4], x[:4]), 1.0, atol=1e-5)
    assert np.all(agreement.psnr(x[:4], np.clip(x[:4] + 0.1, 0, 1)) < 25)

    save_agent(tmp_path / "agent", agent)
    back, _ = load_agent(tmp_path / "agent", teacher)
    np.testing.assert_array_equal(np.asarray(back.weight), np.asarray(agent.weight))
    other = jax.tree.map(lambda a: a + 1.0, as_pure(teacher))  # another teacher
    with pytest.raises(ValueError, match="another teacher"):
        load_agent(tmp_path / "agent", other)
    with pytest.raises(ValueError, match="another teacher"):
        diffexplainer(other, agent, model)
    with pytest.raises(ValueError, match="autoencoder"):
        diffexplainer(teacher, agent, tiny_diffusion())
    with pytest.raises(ValueError, match="codes"):
        diffexplainer(teacher, random_agent(teacher, code=8), model)
    for bad in (dict(alphas=()), dict(alphas=(0.2, 0.1)), dict(alphas=(-1.0,)), dict(num_steps=1)):
        with pytest.raises(ValueError):
            DiffExplainerConfig(**bad)


@pytest.mark.xdist_group("tiny_diffae")  # one worker trains the fixture
def test_diffexplainer_protocol_end_to_end(tiny_ae_run, tmp_path):
    """The PneumoniaMNIST protocol with tiny models trained for a few steps: every stage runs,
    resumes from what is there (the autoencoder is the shared tiny one), and writes its report
    and figures."""

    from explain.diffexplainer import PUBLISHED, DiffExplainerJob, run_diffexplainer_protocol
    from jaxcf.experiment import REPORT_DIR, ModelSpec, model_dir
    from jaxcf.methods import DiffExplainerConfig
    from jaxcf.models import CNNConfig
    from jaxcf.runner import RunnerConfig
    from jaxcf.training import AgentConfig, TrainConfig

    teacher = TrainConfig(
        model=CNNConfig(num_classes=2, channels=(8, 16), hidden=32),
        dataset="pneumoniamnist",
        optimizer="adam",
        learning_rate=3e-3,
        lr_boundaries=(),
        epochs=1,
        train_examples=1024,
        batch_size=64,
    )
    job = DiffExplainerJob(
        teacher=ModelSpec(train=teacher),
        diffusion=ModelSpec(checkpoint=str(tiny_ae_run[1])),  # the shared tiny autoencoder
        agent=AgentConfig(steps=100, batch_size=64),
        explain=DiffExplainerConfig(alphas=(0.5, 1.0), num_steps=6),
        queries=6,
        sweep_queries=4,
        indeterminate=2,
        runner=RunnerConfig(chunk_size=3),
    )
    doc = run_diffexplainer_protocol(job, tmp_path)
    assert doc["agent"]["agreement"]["n"] == 624  # every test image
    assert 0.0 <= doc["counterfactuals"]["flip_rate"] <= 1.0
    assert doc["reconstruction"]["psnr_db"] > 10 and 0 < doc["reconstruction"]["ssim"] <= 1
    for name in ("report.md", "heatmaps.png", "sequences.png", "indeterminate.png"):
        assert (tmp_path / REPORT_DIR / name).exists(), name
    text = (tmp_path / REPORT_DIR / "report.md").read_text()
    paper = PUBLISHED["reconstruction"]  # explain/diffexplainer/published.py
    assert f"(the paper: {paper['psnr_db']:.1f} dB, {paper['ssim']:.2f})" in text
    for name in ("teacher", "agent"):  # trained into the experiment's model folders
        assert (model_dir(tmp_path, name) / "checkpoint").is_dir(), name
    with pytest.raises(ValueError, match="same data set"):
        other = ModelSpec(train=dataclasses.replace(teacher, dataset="mnist"))
        dataclasses.replace(job, teacher=other, diffusion=ModelSpec(train=_tiny_ae_config()))
