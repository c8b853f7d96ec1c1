"""Training counterfactual generators on real data: a short run learns to flip Adult incomes
under exact constraints, a data-parallel step equals a single-device one, series and tabular
generators treat every query on its own, checkpoints are tied to their classifier, and bad
setups fail before compiling."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcf import tabular as constraints_lib
from jaxcf.data import ADULT_CONSTRAINTS, adult_transform, load_dataset
from jaxcf.methods import GeneratorConfig, generator_explainer
from jaxcf.models import generators, load_generator
from jaxcf.training import _counterfactual as cf_train
from jaxcf.training import train_and_evaluate
from tests.conftest import adult_mlp, jolt, mesh

pytestmark = pytest.mark.standard_promotion  # optax's Adam runs inside the train step


@pytest.fixture(scope="module")
def adult():
    transform = adult_transform()
    return transform, load_dataset("adult", "train"), load_dataset("adult", "test")


@pytest.fixture(scope="module")
def adult_classifier(adult, tmp_path_factory):
    transform, _, _ = adult
    config = adult_mlp(transform, hidden=32)
    model, _, meta = train_and_evaluate(config, tmp_path_factory.mktemp("adult_clf"))
    assert meta["test_accuracy"] > 0.8
    return model


def _tabular_config(transform, **overrides):
    base = cf_train.GeneratorTrainConfig(
        generator=generators.TabularGeneratorConfig(
            transform=transform.to_dict(),
            constraints=ADULT_CONSTRAINTS.to_dict(),
            cond_dim=2,
            width=64,
            blocks=1,
        ),
        discriminator=generators.TabularDiscriminatorConfig(
            input_dim=transform.dim, cond_dim=2, width=64, blocks=1
        ),
        w_model=2.0,  # the paper's 1 needs the full run's thousands of steps
        w_l1=10.0,
        w_cycle=0.0,
        gan_loss="vanilla",
        fixed_prob=0.1,
        lr_generator=2e-3,
        lr_discriminator=2e-3,
        ema_decay=0.99,
        batch_size=64,
        steps=800,
        eval_every=800,
        save_every=800,
        val_examples=500,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def short_run(adult, adult_classifier, tmp_path_factory):
    transform, train, test = adult
    workdir = tmp_path_factory.mktemp("gen")
    g, meta = cf_train.train_generator(
        _tabular_config(transform), adult_classifier, train.inputs, test.inputs, workdir
    )
    return g, meta, workdir


def test_short_training_flips_held_out_rows_within_constraints(short_run, adult, adult_classifier):
    g, meta, _ = short_run
    transform, _, test = adult
    assert meta["history"][-1]["val_validity"] >= 0.9, meta["history"][-1]
    x = test.inputs[1000:1300]
    target = 1 - np.argmax(np.asarray(adult_classifier.logits(x)), -1)
    e = generator_explainer(adult_classifier, g, GeneratorConfig(fixed=("Education",)))
    xs, ts = e.check(x, target.astype(np.int32))
    keys = jax.random.split(jax.random.key(0), len(x))
    res = jax.jit(lambda e, a, b, k: e(a, b, k))(e, xs, ts, keys)
    assert float(np.mean(res.success)) >= 0.9
    x_cf = np.asarray(res.x_cf)
    # Exact constraints: immutable columns, age never lower, the fixed column untouched.
    before, after = transform.decode(x), transform.decode(x_cf)
    bad = constraints_lib.violations(transform, before, after, ADULT_CONSTRAINTS, ("Education",))
    assert int(bad.sum()) == 0
    # Valid rows: every block one-hot, and a change is sparse (few features move).
    np.testing.assert_array_equal(transform.encode(after), transform.encode(transform.decode(x_cf)))
    changed = sum(np.asarray(before[c]) != np.asarray(after[c]) for c in transform.names)
    assert np.median(changed) <= 4


def test_checkpoint_is_tied_to_its_classifier(short_run, adult, tmp_path):
    g, meta, workdir = short_run
    transform, _, _ = adult
    loaded, meta2 = load_generator(workdir)
    assert meta2["classifier_digest"] == meta["classifier_digest"]
    other = train_and_evaluate(
        adult_mlp(transform, hidden=8, learning_rate=1e-3, epochs=0.05, batch_size=128),
        tmp_path,
    )[0]
    with pytest.raises(ValueError, match="another classifier"):
        load_generator(workdir, classifier=other)


def test_data_parallel_step_equals_single_device(adult, adult_classifier):
    """One step over a 4-device mesh (batch split, modules replicated) equals one device."""
    transform, train, test = adult
    cfg = _tabular_config(transform, steps=1, fixed_prob=0.0)
    x = jnp.asarray(train.inputs[:64])
    key = jax.random.key(5)
    out = []
    for m in (None, mesh(4)):
        task = cf_train.GeneratorTask(cfg, adult_classifier, test.inputs[:8], m)
        modules = task.init(0, None)
        metrics = task.train_step(modules, {"x": x}, key)
        out.append((metrics, nnx.state(modules["generator"], nnx.Param)))
    (m1, p1), (m4, p4) = out
    for k in m1:
        np.testing.assert_allclose(float(m1[k]), float(m4[k]), rtol=1e-4, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p4), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["series", "autoencoder", "tabular"])
def test_batched_equals_one_query_at_a_time(family, adult):
    """Nothing couples queries: a batch equals each query on its own with its own key."""
    if family == "tabular":
        transform = adult[0]
        cfg = generators.TabularGeneratorConfig(transform=transform.to_dict(), width=16, blocks=1)
        x = adult[2].inputs[:6]
    else:
        cls = (
            generators.SeriesGeneratorConfig
            if family == "series"
            else generators.SeriesAutoencoderConfig
        )
        cfg = cls(input_shape=(20, 1), cond_dim=2, hidden=8)
        x = np.asarray(np.random.default_rng(0).normal(size=(6, 20, 1)), np.float32)
    g = jolt(generators.build(cfg, seed=0), scale=0.2)
    y_m = jax.nn.softmax(jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)), jnp.float32))
    y_t = jnp.asarray(np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1, 0]])
    keys = jax.random.split(jax.random.key(2), 6)
    batch = np.asarray(nnx.jit(lambda g, *a: g(*a))(g, jnp.asarray(x), y_m, y_t, keys))
    for i in range(6):
        one = g(jnp.asarray(x[i : i + 1]), y_m[i : i + 1], y_t[i : i + 1], keys[i : i + 1])
        np.testing.assert_allclose(batch[i], np.asarray(one)[0], atol=1e-5)
    if family == "series":  # fresh noise per query key
        other = g(jnp.asarray(x[:1]), y_m[:1], y_t[:1], jax.random.split(jax.random.key(9), 1))
        assert not np.allclose(np.asarray(other)[0], batch[0])


def adult_table():
    from jaxcf.data import load_adult_table

    return load_adult_table("train")[0]


def test_bad_setups_raise_before_compiling(adult, adult_classifier, tmp_path):
    transform, train, test = adult
    cfg = _tabular_config(transform)
    wrong_k = dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, cond_dim=3))
    with pytest.raises(ValueError, match="cond_dim"):
        cf_train.train_generator(
            wrong_k, adult_classifier, train.inputs[:256], test.inputs[:8], tmp_path / "a"
        )
    with pytest.raises(ValueError, match="per-example shape"):
        cf_train.train_generator(
            cfg, adult_classifier, train.inputs[:256, :80], test.inputs[:8], tmp_path / "b"
        )
    with pytest.raises(ValueError, match="w_mmd"):
        dataclasses.replace(cfg, discriminator=None)
    with pytest.raises(ValueError, match="regression_range"):
        dataclasses.replace(cfg, target="regression")
    with pytest.raises(ValueError, match="unknown column"):
        generators.build(dataclasses.replace(cfg.generator, constraints={"immutable": ["Colour"]}))
    g = generators.build(cfg.generator)
    with pytest.raises(ValueError, match="unknown columns"):
        generator_explainer(adult_classifier, g, GeneratorConfig(fixed=("Colour",)))
    other_fit = type(transform).fit(transform.schema, adult_table(), n_modes=5)
    with pytest.raises(ValueError, match="another tabular schema"):
        generator_explainer(adult_classifier, g, transform=other_fit)
    e = generator_explainer(adult_classifier, g, transform=transform)
    with pytest.raises(ValueError, match="per-query shape"):
        e.check(test.inputs[:4, :80], np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="NaN"):
        e.check(np.full((4, transform.dim), np.nan, np.float32), np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="distribution|sum"):
        e.check(test.inputs[:4], np.full((4, 2), 0.7, np.float32))


def _margin(params, x):
    """A regressor built from the Adult classifier: its log-odds of >50K, ``[B, 1]``."""
    logits = params.logits(x)
    return logits[:, 1:] - logits[:, :1]


@pytest.mark.parametrize("mode", ["soft", "regression"])
def test_soft_and_regression_targets_are_learned(mode, adult, adult_classifier, tmp_path):
    """The other target transformations: a drawn class distribution (cross-entropy to it) or a
    drawn value of a regressor (RMSE). After a short run the counterfactuals land much nearer
    their targets than the queries themselves are."""
    from jaxcf.core import FunctionClassifier, as_pure

    transform, train, test = adult
    model = adult_classifier
    if mode == "regression":
        model = FunctionClassifier(_margin, as_pure(adult_classifier), input_shape=(transform.dim,))
    cfg = _tabular_config(
        transform,
        target=mode,
        regression_range=(-3.0, 3.0) if mode == "regression" else None,
        steps=400,
        eval_every=400,
        save_every=400,
    )
    k = 1 if mode == "regression" else 2
    cfg = dataclasses.replace(
        cfg,
        generator=dataclasses.replace(cfg.generator, cond_dim=k),
        discriminator=dataclasses.replace(cfg.discriminator, cond_dim=k),
    )
    g, _ = cf_train.train_generator(cfg, model, train.inputs, test.inputs[:200], tmp_path)
    x = jnp.asarray(test.inputs[2000:2300])
    rng = np.random.default_rng(0)
    if mode == "soft":
        p = rng.uniform(0.0, 1.0, len(x)).astype(np.float32)
        target = np.stack([1 - p, p], axis=1)
    else:
        target = rng.uniform(-3.0, 3.0, len(x)).astype(np.float32)
    e = generator_explainer(model, g, GeneratorConfig(tolerance=0.2))
    xs, ts = e.check(np.asarray(x), target)
    res = jax.jit(lambda e, a, b, k: e(a, b, k))(
        e, xs, ts, jax.random.split(jax.random.key(0), len(x))
    )
    out = np.asarray(as_pure(model).logits(x))
    if mode == "soft":  # score = total variation to the target distribution
        before = np.abs(jax.nn.softmax(out, -1)[:, 1] - target[:, 1])
    else:  # score = absolute error
        before = np.abs(out[:, 0] - target)
    assert float(np.mean(res.score)) < 0.6 * float(np.mean(before))
