"""The AttGAN-like attribute-informed encoder-decoder (the AIP method's generative model): configs
that validate, shapes at the paper's and the CPU sizes, the attribute flips and target draws,
a tiny model trained briefly on a few hundred real faces that reconstructs held-out ones better
than the mean image, reproducible and resumable training, and loading as a pure, jittable model
that refuses checkpoints and attribute vectors it does not match.

Whether flipping an attribute in the decoder changes the attribute classifier's decision on
held-out faces needs a properly trained model (the tiny run here does not get that far):
:func:`test_a_trained_model_controls_the_classifier_decision` checks it on the shipped compact
copy of ``train/configs/attgan_celeba.py``'s model (or on the workdir in
``$JAXCF_ATTGAN_WORKDIR``)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcf.data import AIP_ATTRIBUTES
from jaxcf.models import (
    CPU_ATTGAN,
    PAPER_ATTGAN,
    AttGANConfig,
    AttGANGenerator,
    AttributeDiscriminator,
    AttributeModel,
    attribute_conflicts,
    build_attgan,
    checkpoint,
    flip_attributes,
    load_attgan,
)
from jaxcf.training import AttGANTask, AttGANTrainConfig, fit, train_attgan
from jaxcf.training._attgan import draw_targets

pytestmark = pytest.mark.standard_promotion  # optax's Adam runs in the training tests

TINY = AttGANConfig(
    encoder_widths=(8, 16, 16, 16),
    latent_channels=8,
    discriminator_widths=(8, 16, 16, 16),
    discriminator_hidden=32,
)
STEPS = 60
SHIPPED = "bundled:attgan_celeba"  # train/configs/attgan_celeba.py, see jaxcf/assets


def _tiny_config(**overrides) -> AttGANTrainConfig:
    base = AttGANTrainConfig(
        model=TINY,
        dataset="celeba",
        lr_generator=2e-3,
        lr_discriminator=2e-3,
        ema_decay=0.9,
        batch_size=16,
        steps=STEPS,
        eval_every=STEPS,
        save_every=STEPS,
        train_examples=384,
        val_examples=64,
        samples=4,
        flip_attributes=("Male", "Blond_Hair"),
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def celeba_test():
    from jaxcf.data import load_dataset

    try:
        return load_dataset("celeba", "test")
    except FileNotFoundError as e:
        pytest.skip(f"no CelebA files: {e}")


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_shape=(64, 64)),
        dict(input_shape=(64, 64, 0)),
        dict(input_shape=(48, 48, 3)),  # not a multiple of 2 ** 5
        dict(input_shape=(64, 32, 3)),  # spectral normalisation needs square images
        dict(encoder_widths=()),
        dict(encoder_widths=(8, 0, 8, 8, 8)),
        dict(decoder_widths=(8, 8)),  # needs len(encoder_widths) - 1 = 4
        dict(discriminator_widths=(8, 8, 8, 8, 8, 8, 8)),  # 64 is not a multiple of 2 ** 7
        dict(latent_channels=0),
        dict(num_attributes=0),
        dict(kernel_size=1),
        dict(inject_layers=-1),
        dict(inject_layers=5),
        dict(discriminator_hidden=0),
        dict(spectral_norm=1),
        dict(classifier_trunk="both"),
        dict(kind="vae"),
    ],
    ids=str,
)
def test_bad_model_configs_raise(kwargs):
    with pytest.raises(ValueError):
        AttGANConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(targets="random"),
        dict(gan_loss="wgan"),
        dict(w_rec=-1.0),
        dict(w_cls_g=float("nan")),
        dict(lr_generator=0.0),
        dict(lr_discriminator=-1e-4),
        dict(b1=1.0),
        dict(ema_decay=1.0),
        dict(batch_size=0),
        dict(batch_size=1),  # "mixed" permutes the batch
        dict(steps=0),
        dict(val_examples=0),
        dict(samples=0),
        dict(train_examples=0),
        dict(dataset=""),
        dict(flip_attributes=("Male", "Male")),
        dict(flip_attributes=("",)),
    ],
    ids=str,
)
def test_bad_train_configs_raise(kwargs):
    with pytest.raises(ValueError):
        AttGANTrainConfig(**kwargs)


def test_configs_round_trip_and_the_latent_is_the_papers_size():
    for config in (PAPER_ATTGAN, CPU_ATTGAN, TINY):
        again = json.loads(json.dumps(dataclasses.asdict(config)))  # lists, as stored
        assert AttGANConfig.from_dict(again) == config
    # The AIP image setting's 1024-d latent, in both shipped sizes.
    assert PAPER_ATTGAN.latent_shape == (2, 2, 256) and PAPER_ATTGAN.latent_dim == 1024
    assert PAPER_ATTGAN.encoder_widths == (64, 128, 256, 512, 1024)
    assert PAPER_ATTGAN.dec_widths == (512, 256, 128, 64, 3)
    assert CPU_ATTGAN.latent_dim == 1024 and TINY.latent_dim == 4 * 4 * 8
    train = _tiny_config()
    assert AttGANTrainConfig(**train.to_dict()) == train
    assert AttGANTrainConfig(**json.loads(json.dumps(train.to_dict()))) == train
    with pytest.raises(TypeError, match="AttGANConfig"):
        AttGANTrainConfig(model=TINY.input_shape)
    assert AttGANTrainConfig(targets="flip", batch_size=1).batch_size == 1


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize(
    "config",
    [
        PAPER_ATTGAN,
        CPU_ATTGAN,
        TINY,
        AttGANConfig(
            input_shape=(32, 32, 1),
            num_attributes=3,
            encoder_widths=(4, 8, 8),
            latent_channels=None,
            decoder_widths=(6, 5),
            inject_layers=2,
            discriminator_widths=(4, 8),
            discriminator_hidden=8,
            spectral_norm=False,
            classifier_trunk="shared",
        ),
    ],
    ids=["paper", "cpu", "tiny", "32x32-shared"],
)
def test_shapes(config):
    # Abstract evaluation: shapes without compiling (values are checked on trained models).
    g_def, g_state = nnx.split(nnx.eval_shape(lambda: AttGANGenerator(config, rngs=nnx.Rngs(0))))
    d_def, d_state = nnx.split(
        nnx.eval_shape(lambda: AttributeDiscriminator(config, rngs=nnx.Rngs(0)))
    )

    def gen(method, *args):
        return jax.eval_shape(
            lambda s, *a: getattr(nnx.merge(g_def, s), method)(*a), g_state, *args
        )

    def disc(method, *args):
        return jax.eval_shape(
            lambda s, *a: getattr(nnx.merge(d_def, s), method)(*a), d_state, *args
        )

    b, t, k = 3, config.num_attributes, config.latent_dim
    x = jax.ShapeDtypeStruct((b, *config.input_shape), jnp.float32)
    a = jax.ShapeDtypeStruct((b, t), jnp.float32)
    z = gen("encode", x)
    assert z.shape == (b, k) and k == int(np.prod(config.latent_shape))
    assert gen("decode", z, a).shape == x.shape
    assert gen("__call__", x, a).shape == x.shape
    adv, cls = disc("__call__", x)
    assert adv.shape == (b,) and cls.shape == (b, t)
    assert disc("attribute_logits", x).shape == (b, t)
    assert disc("adversarial", x).shape == (b,)
    with pytest.raises(ValueError, match="encoder takes images"):
        gen("encode", jax.ShapeDtypeStruct((b, 8, 8, 1), jnp.float32))
    with pytest.raises(ValueError, match="decoder takes codes"):
        gen("decode", jax.ShapeDtypeStruct((b, k + 1), jnp.float32), a)
    with pytest.raises(ValueError, match="attribute vectors"):
        gen("decode", z, jax.ShapeDtypeStruct((b, t + 1), jnp.float32))
    with pytest.raises(ValueError, match="share the batch"):
        gen("decode", z, jax.ShapeDtypeStruct((b + 1, t), jnp.float32))
    with pytest.raises(ValueError, match="discriminator takes images"):
        disc("attribute_logits", jax.ShapeDtypeStruct((b, 8, 8, 1), jnp.float32))


def test_attribute_flips_and_targets():
    names = AIP_ATTRIBUTES
    idx = {n: i for i, n in enumerate(names)}
    conflicts = attribute_conflicts(names)
    hair = [idx[n] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair")]
    for i in hair:  # one hair colour at a time; Bald and Bangs; Mustache and No_Beard
        assert sorted(np.flatnonzero(conflicts[i])) == sorted(set(hair) - {i})
    assert np.flatnonzero(conflicts[idx["Bald"]]).tolist() == [idx["Bangs"]]
    assert np.flatnonzero(conflicts[idx["Mustache"]]).tolist() == [idx["No_Beard"]]
    assert conflicts[idx["Male"]].sum() == 0 and conflicts[idx["Young"]].sum() == 0
    a = np.zeros((3, len(names)), np.float32)
    a[:, idx["Black_Hair"]] = 1.0
    a[1, idx["Blond_Hair"]] = 1.0
    a[2, idx["Male"]] = 0.8  # soft: flips to the other side of 1/2
    which = jnp.asarray([idx["Blond_Hair"], idx["Blond_Hair"], idx["Male"]])
    got = np.asarray(flip_attributes(jnp.asarray(a), which, jnp.asarray(conflicts)))
    want = a.copy()
    want[0, idx["Blond_Hair"]], want[0, idx["Black_Hair"]] = 1.0, 0.0  # on: black hair off
    want[1, idx["Blond_Hair"]] = 0.0  # off: nothing else changes
    want[2, idx["Male"]] = 0.0
    np.testing.assert_array_equal(got, want)
    # Target draws: a permutation of the rows, single flips, or a mix of both.
    rng = np.random.default_rng(0)
    batch = jnp.asarray((rng.uniform(size=(16, len(names))) < 0.5).astype(np.float32))
    none = jnp.zeros_like(jnp.asarray(conflicts))
    key = jax.random.key(3)
    permuted = np.asarray(draw_targets(key, batch, "permute", none))
    rows = {tuple(r) for r in np.asarray(batch)}
    assert {tuple(r) for r in permuted} == rows and not np.array_equal(permuted, batch)
    flipped = np.asarray(draw_targets(key, batch, "flip", none))
    assert np.all(np.abs(flipped - np.asarray(batch)).sum(axis=1) == 1)
    mixed = np.asarray(draw_targets(key, batch, "mixed", none))
    is_flip = np.abs(mixed - np.asarray(batch)).sum(axis=1) == 1
    assert all(f or tuple(r) in rows for f, r in zip(is_flip, mixed, strict=True))
    with pytest.raises(ValueError, match="unknown target mode"):
        draw_targets(key, batch, "shuffle", none)


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, celeba_test):
    del celeba_test  # skips without the data
    workdir = tmp_path_factory.mktemp("attgan")
    model, meta = train_attgan(_tiny_config(), workdir)
    return model, meta, workdir


@pytest.mark.xdist_group("tiny_attgan")  # one worker trains the fixture
def test_a_short_run_reconstructs_held_out_faces_better_than_the_mean_image(tiny_run, celeba_test):
    model, meta, workdir = tiny_run
    last = meta["history"][-1]
    assert last["step"] == STEPS
    # 60 steps on 384 faces: blurry faces well below the mean image's errors.
    assert last["val_l1"] < 0.8 * last["mean_image_l1"], last
    assert last["val_mse"] < 0.8 * last["mean_image_mse"], last
    assert last["val_l1_a0"] < last["mean_image_l1"], last
    for name in ("Male", "Blond_Hair"):
        assert 0.0 <= last[f"flip_acc_{name}"] <= 1.0 and 0.0 <= last[f"flip_base_{name}"] <= 1.0
    assert 0.5 < last["val_attr_acc"] <= 1.0 and 0.5 < last["majority_attr_acc"] <= 1.0
    for name in ("edits.png", f"samples/edits_{STEPS:07d}.png"):
        assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not (workdir / "progress").exists()
    assert meta["attribute_names"] == list(AIP_ATTRIBUTES) and meta["latent_dim"] == 128
    # Faces the periodic evaluation never saw, against their own mean: a stronger baseline.
    x = jnp.asarray(celeba_test.inputs[900:964])
    a = jnp.asarray(celeba_test.attributes[900:964])
    err = float(jnp.mean(jnp.abs(model.decode(model.encode(x), a) - x)))
    baseline = float(jnp.mean(jnp.abs(jnp.mean(x, axis=0, keepdims=True) - x)))
    assert err < 0.85 * baseline, (err, baseline)


@pytest.mark.xdist_group("tiny_attgan")  # one worker trains the fixture
def test_load_round_trips_and_the_pure_model_is_jittable(tiny_run, celeba_test):
    model, _, workdir = tiny_run
    loaded, _ = load_attgan(workdir / "checkpoint")
    assert isinstance(loaded, AttributeModel)
    assert (loaded.latent_dim, loaded.num_attributes, loaded.image_shape) == (128, 13, (64, 64, 3))
    assert loaded.attribute_names == AIP_ATTRIBUTES and loaded.latent_shape == (4, 4, 8)
    for u, v in zip(jax.tree.leaves(model), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    encode = jax.jit(lambda m, x: m.encode(x))
    attributes = jax.jit(lambda m, x: m.attributes(x))
    decode = jax.jit(lambda m, z, a: m.decode(z, a))
    x = jnp.asarray(celeba_test.inputs[:4])
    z = encode(loaded, x)
    a0 = attributes(loaded, x)
    assert z.shape == (4, 128) and a0.shape == (4, 13)
    assert bool(jnp.all((a0 >= 0) & (a0 <= 1)))
    y = decode(loaded, z, a0)
    assert y.shape == x.shape and bool(jnp.all((y >= 0) & (y <= 1)))
    # reconstruct decodes with the classifier's own a0 (one compiled program, not op by op).
    np.testing.assert_allclose(y, jax.jit(lambda m, x: m.reconstruct(x))(loaded, x), atol=1e-5)
    again, _ = load_attgan(workdir)  # another load of the same checkpoint: equal static parts
    encode(again, x + 0.1)
    attributes(again, x + 0.1)
    decode(model, z + 1.0, 1.0 - a0)
    assert encode._cache_size() == attributes._cache_size() == decode._cache_size() == 1
    # The decoder is differentiable in the code and the attributes (AIP searches both).
    gz, ga = jax.jit(jax.grad(lambda z, a: jnp.sum(again.decode(z, a) ** 2), argnums=(0, 1)))(z, a0)
    for g, like in ((gz, z), (ga, a0)):
        assert g.shape == like.shape and bool(jnp.all(jnp.isfinite(g)))
        assert float(jnp.abs(g).max()) > 0
    male = loaded.index("Male")
    flipped = loaded.flip(jnp.round(a0), "Male")
    np.testing.assert_array_equal(flipped[:, male], 1.0 - jnp.round(a0)[:, male])
    with pytest.raises(ValueError, match="no attribute 'Smiling'"):
        loaded.flip(a0, "Smiling")
    with pytest.raises(ValueError, match="attribute vectors must be"):
        loaded.flip(a0[:, :12], "Male")
    with pytest.raises(ValueError, match="attribute vectors"):
        loaded.decode(z, a0[:, :12])
    with pytest.raises(ValueError, match="codes"):
        loaded.decode(z[:, :64], a0)


@pytest.mark.xdist_group("tiny_attgan")  # one worker trains the fixture
def test_load_refuses_checkpoints_it_does_not_match(tiny_run, tmp_path):
    _, _, workdir = tiny_run
    with pytest.raises(ValueError, match="AttGAN of \\(64, 64, 3\\) images"):
        load_attgan(workdir, image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="AttGAN of the attributes"):
        load_attgan(workdir, attribute_names=tuple(reversed(AIP_ATTRIBUTES)))
    with pytest.raises(ValueError, match="trained on 'celeba'"):
        load_attgan(workdir, dataset="mnist")
    model, _ = load_attgan(workdir, image_shape=(64, 64, 3), attribute_names=AIP_ATTRIBUTES)
    assert model.num_attributes == 13
    # Another kind of checkpoint.
    g, _ = build_attgan(TINY)
    checkpoint.save(tmp_path / "other", {"vae": g}, metadata={"kind": "vae", "configs": {}})
    with pytest.raises(ValueError, match="not an AttGAN checkpoint"):
        load_attgan(tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        load_attgan(tmp_path / "nowhere")

    def tampered(name, edit):
        bad = tmp_path / name
        shutil.copytree(workdir / "checkpoint", bad)
        meta = json.loads((bad / "metadata.json").read_text())
        edit(meta)
        (bad / "metadata.json").write_text(json.dumps(meta))
        return bad

    # Weights that do not fit the stored config (here, a tampered latent width).
    def wider(meta):
        for entry in ("generator", "discriminator"):
            meta["configs"][entry]["latent_channels"] = 16

    with pytest.raises(checkpoint.CheckpointMismatchError):
        load_attgan(tampered("wider", wider))
    with pytest.raises(ValueError, match="names 12 attributes"):
        load_attgan(tampered("names", lambda m: m.update(attribute_names=m["attribute_names"][1:])))
    with pytest.raises(ValueError, match="unreadable AttGAN config"):
        load_attgan(tampered("config", lambda m: m["configs"]["generator"].update(depth=3)))


@pytest.mark.xdist_group("tiny_attgan")  # one worker trains the fixture
def test_compact_copy_is_rounded_measured_and_checked_against_its_digest(tiny_run, tmp_path):
    from jaxcf.models import DIGEST_FILE, content_digest, load_classifier, verify
    from jaxcf.training import export_attgan_compact

    _, meta, workdir = tiny_run
    out = tmp_path / "compact"
    digest = export_attgan_compact(workdir, out)
    assert (out / DIGEST_FILE).read_text().strip() == digest
    g, d = build_attgan(TINY)
    modules = {"generator": g, "discriminator": d}
    checkpoint.load(out, modules)
    assert content_digest(modules) == digest
    for leaf in jax.tree.leaves(nnx.state(modules, nnx.Param)):  # every value is a bfloat16
        np.testing.assert_array_equal(
            leaf, np.asarray(leaf).astype(jnp.bfloat16).astype(np.float32)
        )
    model, compact = load_attgan(out, image_shape=(64, 64, 3), dataset="celeba")
    assert model.attribute_names == tuple(meta["attribute_names"])
    scores, before = compact["test_scores"], compact["compact"]["source_test_scores"]
    for name in ("val_l1", "val_attr_acc", "flip_acc_Male"):
        assert abs(scores[name] - before[name]) < 0.05, (name, scores[name], before[name])
    assert str(tmp_path) not in (out / "commit_success.txt").read_text()  # no temporary paths
    (out / DIGEST_FILE).write_text("0" * 64 + "\n")
    with pytest.raises(ValueError, match="content digest"):
        verify(out, modules, None)
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        load_classifier(out)


@pytest.mark.xdist_group("tiny_attgan")  # one worker trains the fixture
def test_training_is_reproducible_resumable_and_checks_its_data(
    tiny_run, celeba_test, tmp_path, monkeypatch
):
    cfg = _tiny_config(steps=4, eval_every=4)
    # 64 held-out faces, as in the fixture's run: the evaluation's program is reused.
    x = np.asarray(celeba_test.inputs[:192])
    a = np.asarray(celeba_test.attributes[:192])
    task = AttGANTask(cfg, AIP_ATTRIBUTES, x[128:], a[128:], x[:128].mean(0), a[:128].mean(0))
    data = {"x": x[:128], "a": a[:128]}
    loop = cfg.loop_config()
    first = fit(task, data, loop)
    second = fit(task, data, loop)

    def same(u, v):
        for name in ("generator", "generator_ema", "discriminator"):
            for p, q in zip(
                jax.tree.leaves(nnx.state(u.modules[name])),
                jax.tree.leaves(nnx.state(v.modules[name])),
                strict=True,
            ):
                np.testing.assert_array_equal(np.asarray(p), np.asarray(q))

    same(first, second)
    assert first.history == second.history
    # A run killed after its step-2 progress checkpoint resumes to bitwise the same models.
    original = AttGANTask.train_step
    calls = []

    def crashing(self, modules, batch, key):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return original(self, modules, batch, key)

    monkeypatch.setattr(AttGANTask, "train_step", crashing)
    progress = tmp_path / "progress"
    resumable = dataclasses.replace(loop, save_every=2)
    with pytest.raises(RuntimeError, match="killed"):
        fit(task, data, resumable, progress_dir=progress)
    monkeypatch.setattr(AttGANTask, "train_step", original)
    resumed = fit(task, data, resumable, progress_dir=progress)
    assert resumed.resumed_from == 2 and resumed.history == first.history
    same(first, resumed)
    # The task and train_attgan check their inputs before training.
    with pytest.raises(ValueError, match="not among the attributes"):
        AttGANTask(_tiny_config(flip_attributes=("Smiling",)), AIP_ATTRIBUTES, x, a, x[0], a[0])
    with pytest.raises(ValueError, match="takes 13 attributes"):
        AttGANTask(cfg, AIP_ATTRIBUTES[:12], x, a, x[0], a[0])
    with pytest.raises(FileExistsError):
        train_attgan(cfg, tiny_run[2])
    shape = dataclasses.replace(TINY, input_shape=(32, 32, 3), encoder_widths=(8, 8))
    with pytest.raises(ValueError, match="AttGAN expects"):
        train_attgan(dataclasses.replace(cfg, model=shape), tmp_path / "a")
    fewer = dataclasses.replace(TINY, num_attributes=12)
    with pytest.raises(ValueError, match="13 attributes, but the AttGAN takes 12"):
        train_attgan(dataclasses.replace(cfg, model=fewer), tmp_path / "b")


# ----------------------------------------------------------------------------- trained model


def test_a_trained_model_controls_the_classifier_decision(celeba_test):
    """The done-criterion: flipping an attribute in the decoder changes the attribute
    classifier's decision on held-out faces (test faces 256-999, which the periodic evaluation
    never used), far more often than the unflipped reconstruction already shows the flipped
    value."""
    where = os.environ.get("JAXCF_ATTGAN_WORKDIR") or SHIPPED
    model, _ = load_attgan(where, image_shape=(64, 64, 3), dataset="celeba")
    x = jnp.asarray(celeba_test.inputs[256:])
    a = jnp.asarray(celeba_test.attributes[256:])

    @jax.jit
    def decisions(model, x, a, name_index):
        z = model.encode(x)
        b = flip_attributes(
            a, jnp.full((x.shape[0],), name_index), attribute_conflicts(AIP_ATTRIBUTES)
        )
        want = b[:, name_index] > 0.5
        flipped = model.attribute_logits(model.decode(z, b))[:, name_index] > 0
        plain = model.attribute_logits(model.decode(z, a))[:, name_index] > 0
        return jnp.mean(flipped == want), jnp.mean(plain == want)

    for name in ("Male", "Blond_Hair"):
        acc, base = (float(v) for v in decisions(model, x, a, model.index(name)))
        assert acc > 0.7 and acc > base + 0.5, (name, acc, base)
