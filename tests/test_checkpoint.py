"""Tests for jaxcf.models.checkpoint: round trips (one model, or several named modules, optimiser
states,
EMA copies and plain pytrees), extras, mismatch errors, overwrite and atomicity."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcf
from jaxcf.models import checkpoint
from jaxcf.models.checkpoint import CheckpointMismatchError


class TinyNet(nnx.Module):
    """Linear -> BatchNorm -> Dropout -> list of Linear, so params, batch stats, RNG state and
    integer path keys all occur."""

    def __init__(self, width: int, *, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.lin = nnx.Linear(3, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.heads = nnx.List([nnx.Linear(width, 2, rngs=rngs)])

    def __call__(self, x):
        return self.heads[0](self.drop(self.bn(self.lin(x))))


def _trained_net(width: int = 8) -> TinyNet:
    """A net whose batch statistics differ from their initial values."""
    model = TinyNet(width, seed=0)
    model.train()
    model(jax.random.normal(jax.random.key(1), (16, 3)) * 3.0 + 1.0)
    model.eval()
    return model


def _values(model: nnx.Module) -> dict:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.RngState))))


def _assert_tree_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def _only_checkpoint_left(parent, name="ck"):
    """No temporary siblings remain beside the checkpoint."""
    assert sorted(p.name for p in parent.iterdir()) == ([name] if (parent / name).exists() else [])


def test_round_trip_params_and_batch_stats(tmp_path):
    model = _trained_net()
    assert not np.allclose(model.bn.mean[...], 0.0)
    config = {"width": 8}
    path = checkpoint.save(tmp_path / "ck", model, metadata={"model": config, "accuracy": 0.9})
    assert path == tmp_path / "ck"
    _only_checkpoint_left(tmp_path)

    fresh = TinyNet(8, seed=123)
    fresh.eval()
    meta = checkpoint.load(path, fresh)
    _assert_tree_equal(_values(fresh), _values(model))
    x = jnp.ones((4, 3))
    np.testing.assert_array_equal(fresh(x), model(x))

    assert meta["model"] == config and meta["accuracy"] == 0.9
    assert meta["versions"]["jaxcf"] == jaxcf.__version__
    assert {"jax", "flax", "optax", "orbax-checkpoint"} <= set(meta["versions"])
    assert meta["created"].endswith("+00:00")
    assert meta["format"] == 2 and meta["entries"]["model"]["kind"] == "module"
    assert checkpoint.entry_names(path) == ("model",)
    fp = {p: (tuple(s), d) for p, s, d in meta["entries"]["model"]["fingerprint"]}
    assert fp["lin.kernel"] == ((3, 8), "float32")
    assert fp["heads.0.kernel"] == ((8, 2), "float32")
    assert "bn.mean" in fp and "bn.var" in fp
    assert not any("rngs" in p for p in fp)  # RNG state is not part of the checkpoint
    assert checkpoint.read_metadata(path) == meta


def test_extras_round_trip_keeps_float64(tmp_path):
    assert not jax.config.jax_enable_x64
    density = {
        "means": np.linspace(0.0, 1.0, 6).reshape(2, 3) / 3.0,  # float64
        "chol": np.eye(3, dtype=np.float32)[None].repeat(2, axis=0),
        "counts": np.array([5, 7], dtype=np.int64),
    }
    other = {"w": jnp.arange(4, dtype=jnp.float32)}  # a JAX array is stored as NumPy
    checkpoint.save(
        tmp_path / "ck",
        _trained_net(),
        metadata={},
        extras={"density": density, "other-1": other},
    )

    like = jax.tree.map(lambda a: np.zeros_like(a), density)
    got = checkpoint.load_extras(tmp_path / "ck", "density", like)
    _assert_tree_equal(got, density)
    assert got["means"].dtype == np.float64

    abstract = {"w": jax.ShapeDtypeStruct((4,), jnp.float32)}
    got = checkpoint.load_extras(tmp_path / "ck", "other-1", abstract)
    assert isinstance(got["w"], np.ndarray)
    np.testing.assert_array_equal(got["w"], np.arange(4, dtype=np.float32))

    with pytest.raises(ValueError, match="no extra 'nope'"):
        checkpoint.load_extras(tmp_path / "ck", "nope", like)
    bad = dict(like, means=np.zeros((2, 4)))
    with pytest.raises(CheckpointMismatchError, match=r"means: checkpoint \(2, 3\) float64"):
        checkpoint.load_extras(tmp_path / "ck", "density", bad)


def test_mismatch_names_differing_paths_and_config(tmp_path):
    checkpoint.save(tmp_path / "ck", _trained_net(8), metadata={"model": {"width": 8}})
    with pytest.raises(CheckpointMismatchError) as err:
        checkpoint.load(tmp_path / "ck", TinyNet(16))
    msg = str(err.value)
    assert "lin.kernel: checkpoint (3, 8) float32, model (3, 16) float32" in msg
    assert "bn.mean: checkpoint (8,) float32, model (16,) float32" in msg
    assert '{"width": 8}' in msg
    assert isinstance(err.value, ValueError)


def test_mismatch_missing_and_extra_paths(tmp_path):
    class NoBN(nnx.Module):
        def __init__(self):
            rngs = nnx.Rngs(0)
            self.lin = nnx.Linear(3, 8, rngs=rngs)
            self.heads = nnx.List([nnx.Linear(8, 2, rngs=rngs), nnx.Linear(8, 2, rngs=rngs)])

    checkpoint.save(tmp_path / "ck", _trained_net(8), metadata={})
    with pytest.raises(CheckpointMismatchError) as err:
        checkpoint.load(tmp_path / "ck", NoBN())
    msg = str(err.value)
    assert "bn.bias: in checkpoint (8,) float32, missing from model" in msg
    assert "heads.1.bias: missing from checkpoint, model (2,) float32" in msg
    assert "no architecture config" in msg


def test_missing_directory_or_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        checkpoint.load(tmp_path / "nowhere", TinyNet(8))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        checkpoint.read_metadata(tmp_path / "nowhere")
    checkpoint.save(tmp_path / "ck", TinyNet(8), metadata={})
    (tmp_path / "ck" / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        checkpoint.load(tmp_path / "ck", TinyNet(8))


def test_overwrite_refused_then_allowed(tmp_path):
    first = TinyNet(8, seed=0)
    second = _trained_net(8)
    checkpoint.save(tmp_path / "ck", first, metadata={"run": 1})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        checkpoint.save(tmp_path / "ck", second, metadata={"run": 2})
    assert checkpoint.read_metadata(tmp_path / "ck")["run"] == 1

    checkpoint.save(tmp_path / "ck", second, metadata={"run": 2}, overwrite=True)
    _only_checkpoint_left(tmp_path)
    fresh = TinyNet(8, seed=5)
    assert checkpoint.load(tmp_path / "ck", fresh)["run"] == 2
    _assert_tree_equal(_values(fresh), _values(second))


def test_bad_metadata_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        checkpoint.save(tmp_path / "ck", TinyNet(8), metadata={"versions": 1})
    with pytest.raises(TypeError, match="JSON"):
        checkpoint.save(tmp_path / "ck", TinyNet(8), metadata={"f": object()})
    with pytest.raises(ValueError, match="extra names"):
        checkpoint.save(tmp_path / "ck", TinyNet(8), metadata={}, extras={"a/b": {"x": np.ones(2)}})
    assert list(tmp_path.iterdir()) == []


def _fail_after_orbax(monkeypatch):
    """Lets Orbax write its files, then fails as if the disk filled up."""
    real = checkpoint.ocp.save_checkpointables

    def half_save(path, checkpointables, **kwargs):
        real(path, checkpointables, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.ocp, "save_checkpointables", half_save)


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    _fail_after_orbax(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path / "ck", TinyNet(8), metadata={})
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_previous(tmp_path, monkeypatch):
    old = _trained_net(8)
    checkpoint.save(tmp_path / "ck", old, metadata={"run": 1})

    def broken_write(path, text):
        path.write_text(text[: len(text) // 2])  # half a metadata file, then a crash
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_write_text", broken_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "ck", TinyNet(8, seed=9), metadata={"run": 2}, overwrite=True)
    _only_checkpoint_left(tmp_path)
    meta = json.loads((tmp_path / "ck" / "metadata.json").read_text())
    assert meta["run"] == 1
    fresh = TinyNet(8, seed=3)
    checkpoint.load(tmp_path / "ck", fresh)
    _assert_tree_equal(_values(fresh), _values(old))


def test_relative_paths_work(tmp_path, monkeypatch):
    """Orbax itself refuses relative paths; the wrapper must not."""
    monkeypatch.chdir(tmp_path)
    model = _trained_net()
    checkpoint.save("rel/ckpt", model, metadata={"model": "tiny"})
    fresh = TinyNet(8, seed=1)
    checkpoint.load("rel/ckpt", fresh)
    _assert_tree_equal(_values(model), _values(fresh))
    assert checkpoint.read_metadata("rel/ckpt")["model"] == "tiny"


# ----------------------------------------------------------------------------- several entries


class TinyGen(nnx.Module):
    """A generator-like module: latent 4 -> 6 through a hidden layer."""

    def __init__(self, *, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.a = nnx.Linear(4, 5, rngs=rngs)
        self.b = nnx.Linear(5, 6, rngs=rngs)

    def __call__(self, z):
        return self.b(nnx.relu(self.a(z)))


def _gan(seed: int):
    """Generator, discriminator (TinyNet on 3 features), an EMA copy of the generator and one
    Adam optimiser per network, each advanced by one step so that no state is at its initial
    value."""
    gen, disc = TinyGen(seed=seed), TinyNet(8, seed=seed)
    gen_ema = nnx.clone(gen)
    opt_g = nnx.Optimizer(gen, optax.adam(1e-2), wrt=nnx.Param)
    opt_d = nnx.Optimizer(disc, optax.adam(1e-2), wrt=nnx.Param)
    z = jax.random.normal(jax.random.key(seed + 7), (16, 4))

    def g_loss(g):
        return jnp.mean(g(z) ** 2)

    def d_loss(d):
        return jnp.mean(d(z[:, :3]) ** 2)

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes floats and int32 counts
        opt_g.update(gen, nnx.grad(g_loss)(gen))
        disc.train()
        opt_d.update(disc, nnx.grad(d_loss)(disc))
        disc.eval()
    return {
        "generator": gen,
        "discriminator": disc,
        "generator_ema": gen_ema,
        "opt_generator": opt_g,
        "opt_discriminator": opt_d,
    }


def test_round_trip_of_several_modules_optimisers_ema_and_a_pytree(tmp_path):
    saved = _gan(seed=0)
    params = nnx.to_pure_dict(nnx.state(saved["generator"], nnx.Param))
    ema_tree = jax.tree.map(lambda p: p * 0.5, params)  # EMA weights as a plain pytree
    configs = {"generator": {"latent": 4}, "discriminator": {"width": 8}}
    checkpoint.save(
        tmp_path / "ck",
        {**saved, "ema_params": ema_tree},
        metadata={"configs": configs, "step": 1},
        extras={"density": {"m": np.ones(3)}},
    )
    _only_checkpoint_left(tmp_path)
    meta = checkpoint.read_metadata(tmp_path / "ck")
    assert meta["configs"] == configs
    assert checkpoint.entry_names(tmp_path / "ck") == tuple(sorted([*saved, "ema_params"]))
    assert meta["entries"]["opt_generator"]["kind"] == "module"
    assert meta["entries"]["ema_params"]["kind"] == "tree"

    fresh = _gan(seed=5)  # different values everywhere, same structure
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), ema_tree)
    meta2, values = checkpoint.load(tmp_path / "ck", {**fresh, "ema_params": abstract})
    assert meta2 == meta
    for name in saved:
        assert values[name] is fresh[name]
        _assert_tree_equal(_values(fresh[name]), _values(saved[name]))
    assert isinstance(values["ema_params"]["a"]["kernel"], jax.Array)
    _assert_tree_equal(values["ema_params"], ema_tree)
    assert int(fresh["opt_generator"].step[...]) == 1
    # The restored optimiser keeps optimising where the saved one was.
    z = jnp.ones((2, 4))
    grads = nnx.grad(lambda g: jnp.mean(g(z)))(saved["generator"])
    with jax.numpy_dtype_promotion("standard"):
        saved["opt_generator"].update(saved["generator"], grads)
        fresh["opt_generator"].update(fresh["generator"], grads)
    _assert_tree_equal(_values(fresh["generator"]), _values(saved["generator"]))


def test_load_a_subset_of_entries(tmp_path):
    saved = _gan(seed=0)
    checkpoint.save(tmp_path / "ck", saved, metadata={})
    gen_ema, disc = TinyGen(seed=3), TinyNet(8, seed=3)
    untouched = _values(disc)
    _, values = checkpoint.load(tmp_path / "ck", {"generator_ema": gen_ema})
    assert list(values) == ["generator_ema"]
    _assert_tree_equal(_values(gen_ema), _values(saved["generator_ema"]))
    _assert_tree_equal(_values(disc), untouched)
    # A module's state can also be read as a plain pytree (NumPy leaves stay NumPy).
    like = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(disc, nnx.Not(nnx.RngState))))
    _, values = checkpoint.load(tmp_path / "ck", {"discriminator": like})
    assert isinstance(values["discriminator"]["lin"]["kernel"], np.ndarray)
    _assert_tree_equal(values["discriminator"], _values(saved["discriminator"]))


def test_mismatch_names_each_entry_path_and_config(tmp_path):
    checkpoint.save(
        tmp_path / "ck",
        {"generator": TinyGen(), "discriminator": TinyNet(8), "generator_ema": TinyGen()},
        metadata={"configs": {"discriminator": {"width": 8}}},
    )
    with pytest.raises(CheckpointMismatchError) as err:
        checkpoint.load(
            tmp_path / "ck",
            {"generator": TinyGen(), "discriminator": TinyNet(16), "generator_ema": TinyNet(8)},
        )
    msg = str(err.value)
    assert "entry 'discriminator':\n  bn.bias: checkpoint (8,) float32, discriminator (16,)" in msg
    assert "lin.kernel: checkpoint (3, 8) float32, discriminator (3, 16) float32" in msg
    assert "The checkpoint's 'discriminator' was saved from the architecture config" in msg
    assert '{"width": 8}' in msg and "['configs']['discriminator']" in msg
    assert "a.kernel: in checkpoint (4, 5) float32, missing from generator_ema" in msg
    assert "bn.bias: missing from checkpoint, generator_ema (8,) float32" in msg
    assert "... and 2 more" in msg
    assert "no architecture config for 'generator_ema'" in msg
    assert "entry 'generator':" not in msg  # the matching entry is silent


def test_missing_entry_names_what_the_checkpoint_has(tmp_path):
    checkpoint.save(tmp_path / "ck", {"generator": TinyGen(), "disc": TinyNet(8)})
    with pytest.raises(CheckpointMismatchError, match=r"no entry 'critic'; it has \['disc', "):
        checkpoint.load(tmp_path / "ck", {"generator": TinyGen(), "critic": TinyNet(8)})
    with pytest.raises(CheckpointMismatchError, match="no entry 'model'"):
        checkpoint.load(tmp_path / "ck", TinyGen())  # the single-model form wants "model"


@pytest.mark.parametrize(
    ("entries", "metadata", "error", "match"),
    [
        ({"a/b": TinyGen()}, {}, ValueError, "entry names"),
        ({"_x": TinyGen()}, {}, ValueError, "entry names"),
        ({"extra_x": TinyGen()}, {}, ValueError, "may not start with 'extra_'"),
        ({"g": TinyGen()}, {"configs": {"h": {}}}, ValueError, r"names \['h'\]"),
        ({"g": {"w": "text"}}, {}, TypeError, "leaf of type str"),
        ({"g": {"k": jax.random.key(0)}}, {}, TypeError, "PRNG key"),
        ({"g": {}}, {}, ValueError, "has no arrays"),
        ({}, {}, ValueError, "at least one entry"),
    ],
)
def test_bad_entries_write_nothing(tmp_path, entries, metadata, error, match):
    with pytest.raises(error, match=match):
        checkpoint.save(tmp_path / "ck", entries, metadata=metadata)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_save_of_several_entries_leaves_nothing(tmp_path, monkeypatch):
    _fail_after_orbax(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path / "ck", _gan(seed=0))
    assert list(tmp_path.iterdir()) == []


def test_format_1_checkpoint_still_loads(tmp_path):
    """Checkpoints written before several entries were supported: one model, its fingerprint
    under "state_fingerprint"."""
    model = _trained_net()
    checkpoint.save(tmp_path / "ck", model, metadata={"model": {"width": 8}})
    path = tmp_path / "ck" / "metadata.json"
    meta = json.loads(path.read_text())
    meta["format"] = 1
    meta["state_fingerprint"] = meta.pop("entries")["model"]["fingerprint"]
    path.write_text(json.dumps(meta))
    fresh = TinyNet(8, seed=4)
    assert checkpoint.load(tmp_path / "ck", fresh)["model"] == {"width": 8}
    _assert_tree_equal(_values(fresh), _values(model))
    with pytest.raises(CheckpointMismatchError, match=r'config \{"width": 8\}'):
        checkpoint.load(tmp_path / "ck", TinyNet(16))
    meta["format"] = 3
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointMismatchError, match="format 3"):
        checkpoint.load(tmp_path / "ck", fresh)
