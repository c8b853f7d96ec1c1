"""The pieces of the core every family builds on: configs that validate, the retry combinator,
the registry, pure wrappers for NNX modules and plain objects, and the pool's one init per
query."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, struct

from jaxcf import runner
from jaxcf.core import (
    CFResult,
    PureModule,
    PureObject,
    Retry,
    as_pytree,
    compiler_options_for,
    explain_compiler_options,
    targets,
)
from jaxcf.core.targets import check_target
from jaxcf.methods import (
    DeDUCEConfig,
    FGSMConfig,
    JSMAConfig,
    MethodSpec,
    WachterConfig,
    deduce,
    deduce_search,
    describe,
    jsma_search,
    make,
    method_names,
    register,
    solve_pool,
)
from jaxcf.methods import _registry as registry_lib
from jaxcf.methods._search import solve

# ----------------------------------------------------------------------------- configs

BAD_CONFIGS = [
    (DeDUCEConfig, {"max_iter": -1}),
    (DeDUCEConfig, {"step": -0.2}),
    (DeDUCEConfig, {"threshold": 1.5}),
    (DeDUCEConfig, {"pixels": 0}),
    (DeDUCEConfig, {"max_changes": 0}),
    (DeDUCEConfig, {"momentum": -1.0}),
    (DeDUCEConfig, {"ce_weight": 0.0, "density_weight": 0.0}),
    (DeDUCEConfig, {"domain": (1.0, 0.0)}),
    (JSMAConfig, {"step": 0.0}),
    (JSMAConfig, {"tolerance": -0.1}),
    (JSMAConfig, {"max_iter": 0}),
    (WachterConfig, {"optimizer": "lbfgs"}),
    (WachterConfig, {"learning_rate": float("nan")}),
    (WachterConfig, {"l1_weight": -1.0}),
    (FGSMConfig, {"eps": 0.0}),
    (FGSMConfig, {"schedule": (0.1, -0.2)}),
    (FGSMConfig, {"schedule": 0.2}),
    (FGSMConfig, {"threshold": 0.0}),
    (runner.RunnerConfig, {"chunk_size": 0}),
    (runner.RunnerConfig, {"slots": 0}),
    (runner.RunnerConfig, {"segment": -4}),
    (runner.RunnerConfig, {"taper": (8, 0)}),
    (runner.RunnerConfig, {"progress_seconds": 0.0}),
]


@pytest.mark.parametrize(("cls", "kwargs"), BAD_CONFIGS, ids=lambda v: str(v))
def test_configs_reject_impossible_values_at_construction(cls, kwargs):
    with pytest.raises(ValueError, match=cls.__name__):
        cls(**kwargs)


def test_configs_are_hashable_and_equal_by_value():
    assert hash(DeDUCEConfig()) == hash(DeDUCEConfig())
    assert DeDUCEConfig(max_iter=9) == DeDUCEConfig(max_iter=9)


# ----------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        (np.array([1, 2], np.int32), "class"),
        (np.array([[0.5, 0.5], [1.0, 0.0]], np.float32), "soft"),
        (np.array([0.3, -2.0], np.float32), "regression"),
    ],
)
def test_target_kinds_pass_through_unchanged(target, kind):
    assert targets.kind_of(target) == kind
    checked = check_target(target, 2, {"class": 3, "soft": 2, "regression": 1}[kind])
    np.testing.assert_array_equal(np.asarray(checked), target)
    assert checked.shape == target.shape  # nothing flattened or truncated


def test_target_scores():
    logits = jnp.log(jnp.asarray([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], jnp.float32))
    p, ok = targets.score_outputs(logits, jnp.asarray([0, 0]), threshold=0.5, tolerance=0.1)
    np.testing.assert_allclose(p, [0.7, 0.1], rtol=1e-6)
    np.testing.assert_array_equal(ok, [True, False])
    q = jnp.asarray([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], jnp.float32)
    tv, ok = targets.score_outputs(logits, q, threshold=0.5, tolerance=0.05)
    np.testing.assert_allclose(tv, [0.1, 0.0], atol=1e-6)
    np.testing.assert_array_equal(ok, [False, True])
    err, ok = targets.score_outputs(
        jnp.asarray([[1.0], [2.0]]), jnp.asarray([1.25, 0.0]), threshold=0.5, tolerance=0.5
    )
    np.testing.assert_allclose(err, [0.25, 2.0])
    np.testing.assert_array_equal(ok, [True, False])


# ----------------------------------------------------------------------------- retry

CALLS: list[int] = []


@dataclasses.dataclass(frozen=True)
class LevelConfig:
    level: float = 0.0


class LevelExplainer(struct.PyTreeNode):
    """Succeeds where the query's first value is at most ``level``; records batch sizes run."""

    config: LevelConfig = struct.field(pytree_node=False, default=LevelConfig())

    def check(self, x, target):
        return jnp.asarray(x, jnp.float32), jnp.asarray(target)

    def __call__(self, x, target, key):
        jax.debug.callback(lambda n: CALLS.append(int(n)), x.shape[0])
        v = x[:, 0]
        ok = v <= self.config.level
        noise = jax.vmap(lambda k: jax.random.uniform(k))(key)
        return CFResult(x + self.config.level, ok, jnp.ones(x.shape[0], jnp.int32), v, {"u": noise})


@pytest.mark.parametrize("block", [None, 2, 3, 100])
def test_retry_reruns_only_failures_and_records_the_attempt(block):
    schedule = (0.2, 0.5, 0.9)
    x = jnp.asarray([[0.1], [0.3], [0.6], [0.95], [0.4], [0.15], [0.55]], jnp.float32)
    keys = jax.random.split(jax.random.key(1), len(x))
    retry = Retry(LevelExplainer(), "level", schedule, block=block)
    CALLS.clear()
    r = jax.jit(lambda e, x, k: e(x, jnp.zeros(len(x), jnp.int32), k))(retry, x, keys)
    jax.effects_barrier()
    v = np.asarray(x)[:, 0]
    want = np.array([next((i for i, s in enumerate(schedule) if vi <= s), 2) for vi in v])
    np.testing.assert_array_equal(r.extras["attempt"], want)
    np.testing.assert_allclose(r.extras["level"], np.asarray(schedule)[want])
    np.testing.assert_allclose(np.asarray(r.x_cf)[:, 0], v + np.asarray(schedule)[want])
    np.testing.assert_array_equal(r.success, v <= 0.9)
    # Each attempt's keys are the query's keys folded with the attempt index.
    for i in range(len(x)):
        k = jax.random.fold_in(keys[i], int(want[i]))
        assert float(r.extras["u"][i]) == pytest.approx(float(jax.random.uniform(k)))
    # Attempt 0 on all 7 queries, then only the failures: 5 left after 0.2, then 3 after 0.5.
    if block is None or block >= len(x):
        assert CALLS == [7, 7, 7]
    else:
        blocks = [-(-5 // block), -(-3 // block)]
        assert CALLS == [7] + [block] * sum(blocks)


def test_retry_skips_attempts_when_everything_succeeded():
    CALLS.clear()
    retry = Retry(LevelExplainer(), "level", (0.9, 1.0))
    x = jnp.full((3, 1), 0.1, jnp.float32)
    jax.jit(lambda e, x: e(x, jnp.zeros(3, jnp.int32), jax.random.split(jax.random.key(0), 3)))(
        retry, x
    )
    jax.effects_barrier()
    assert CALLS == [3]


def test_retry_rejects_bad_schedules():
    with pytest.raises(ValueError, match="field"):
        Retry(LevelExplainer(), "strength", (1.0,))
    with pytest.raises(ValueError, match="non-empty"):
        Retry(LevelExplainer(), "level", ())
    with pytest.raises(ValueError, match="FGSMConfig"):
        Retry(make("fgsm", classifier=_linear()), "eps", (0.1, -1.0))


# ----------------------------------------------------------------------------- registry


def _linear():
    from jaxcf.core import FunctionClassifier

    return FunctionClassifier(_linear_logits, jnp.zeros((4, 3)), domain=(0.0, 1.0))


def _linear_logits(w, x):
    return x.reshape(x.shape[0], -1) @ w


def test_registry_builds_methods_by_name_and_rejects_bad_specs():
    assert {"deduce", "jsma", "wachter", "fgsm"} <= set(method_names())
    listing = describe()  # jaxcf methods
    assert all(f"{name}: " in listing for name in method_names())
    assert describe("jsma").startswith("jsma: JSMAConfig; needs classifier\n    step=0.2,")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        describe("jsma", "nope")
    explainer = make(MethodSpec("jsma", JSMAConfig(max_iter=3)), classifier=_linear())
    assert explainer.config == JSMAConfig(max_iter=3)
    assert make("fgsm", classifier=_linear()).config == FGSMConfig()
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        MethodSpec("nope")
    with pytest.raises(TypeError, match="JSMAConfig"):
        MethodSpec("jsma", DeDUCEConfig())
    with pytest.raises(ValueError, match="needs a 'density'"):
        make("deduce", classifier=_linear())
    with pytest.raises(ValueError, match="resources"):
        MethodSpec("jsma", resources={"density": "d"})
    with pytest.raises(ValueError, match="already registered"):
        register("jsma", lambda config, classifier: None, config_type=JSMAConfig, needs=())
    baseline = MethodSpec("jsma", resources={"classifier": "baseline"})
    assert baseline.resource_keys() == {"classifier": "baseline"}


def test_registering_a_users_method(monkeypatch):
    monkeypatch.setattr(registry_lib, "_REGISTRY", dict(registry_lib._REGISTRY))
    register("level", lambda config: LevelExplainer(config), config_type=LevelConfig, needs=())
    e = make(MethodSpec("level", LevelConfig(0.4), label="level-0.4"))
    assert e.config.level == 0.4
    with pytest.raises(TypeError, match="not an explainer"):
        register("broken", lambda config: object(), config_type=LevelConfig, needs=())
        make("broken")


# ----------------------------------------------------------------------------- pure wrappers


class AutoEncoder(nnx.Module):
    """A module with methods beyond the classifier protocol and an RNG stream of its own."""

    def __init__(self, rngs: nnx.Rngs):
        self.enc = nnx.Linear(4, 2, rngs=rngs)
        self.dec = nnx.Linear(2, 4, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def encode(self, x):
        return self.enc(x)

    def decode(self, z):
        return self.dec(self.drop(z))


def test_pure_module_forwards_any_method_without_rng_state_in_the_pytree():
    ae = AutoEncoder(nnx.Rngs(0))
    pure = as_pytree(ae)
    assert isinstance(pure, PureModule)
    leaves = jax.tree.leaves(pure)
    assert all(not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) for leaf in leaves)
    assert all(leaf.dtype != jnp.uint32 for leaf in leaves)  # no raw key data either
    x = jnp.ones((3, 4), jnp.float32)
    z = jax.jit(lambda p, x: p.encode(x))(pure, x)
    np.testing.assert_allclose(z, ae.encode(x), rtol=1e-6)
    y = jax.jit(lambda p, z: p.decode(z))(pure, z)  # eval mode: dropout is off
    ae.eval()
    np.testing.assert_allclose(y, ae.decode(z), rtol=1e-6)
    # Equal RNG state -> equal static part -> one compiled program; fingerprints are stable.
    again = as_pytree(AutoEncoder(nnx.Rngs(0)))
    assert jax.tree.structure(again) == jax.tree.structure(pure)
    assert runner.fingerprint(pure, {}, {}) == runner.fingerprint(again, {}, {})
    other = as_pytree(AutoEncoder(nnx.Rngs(1)))
    assert runner.fingerprint(pure, {}, {}) != runner.fingerprint(other, {}, {})


class PlainDensity:
    """A new user's density: a plain class, two array attributes, a log_prob method."""

    def __init__(self, mean, inv_var):
        self.mean = mean
        self.inv_var = inv_var

    def log_prob(self, features):
        d = features[:, None, :] - self.mean[None]
        return -0.5 * jnp.sum(d * d * self.inv_var[None], axis=-1)


@struct.dataclass
class RegisteredDensity:
    mean: jax.Array
    inv_var: jax.Array

    def log_prob(self, features):
        d = features[:, None, :] - self.mean[None]
        return -0.5 * jnp.sum(d * d * self.inv_var[None], axis=-1)


def test_plain_object_density_works_with_deduce(trained, queries):
    from jaxcf.methods._search import solve_jit_eigen as solve_jit

    model, density, _ = trained
    x, t = queries
    d = density.feature_dim
    rng = np.random.default_rng(0)
    mean = jnp.asarray(rng.normal(size=(10, d)), jnp.float32)
    inv_var = jnp.asarray(rng.uniform(0.5, 2.0, size=(10, d)), jnp.float32)
    cfg = DeDUCEConfig(max_iter=30)
    plain = deduce(model, PlainDensity(mean, inv_var), x[:6], t[:6], cfg)
    registered = deduce(model, RegisteredDensity(mean, inv_var), x[:6], t[:6], cfg)
    np.testing.assert_array_equal(plain.x_cf, registered.x_cf)
    np.testing.assert_array_equal(plain.n_iter, registered.n_iter)
    assert isinstance(as_pytree(PlainDensity(mean, inv_var)), PureObject)
    before = solve_jit._cache_size()
    deduce(model, PlainDensity(mean + 1.0, inv_var), x[:6], t[:6], cfg)  # new values, same class
    assert solve_jit._cache_size() == before


# ----------------------------------------------------------------------------- pool init

INITS: list[int] = []


class CountingSearch(struct.PyTreeNode):
    """Needs ``q + 1`` steps for a query whose value is ``q``; counts rows initialised."""

    max_iter: int = struct.field(pytree_node=False, default=50)

    def init(self, x, target, key):
        jax.debug.callback(lambda n: INITS.append(int(n)), x.shape[0])
        return {"x": x, "left": jnp.round(x[:, 0]).astype(jnp.int32)}

    def step(self, state, target):
        done = state["left"] <= 0
        return done.astype(jnp.float32), done, {**state, "left": state["left"] - 1}

    def current(self, state):
        return state["x"]

    def extras(self, state):
        return {}


def test_pool_initialises_each_query_once_not_each_slot_each_segment():
    n, slots = 13, 4
    x = jnp.asarray(np.arange(n) % 5, jnp.float32)[:, None]
    target = jnp.zeros(n, jnp.int32)
    INITS.clear()
    r = jax.jit(solve_pool, static_argnames=("slots", "segment"))(
        CountingSearch(), x, target, slots=slots, segment=1
    )
    jax.effects_barrier()
    np.testing.assert_array_equal(r.n_iter, np.arange(n) % 5)
    assert sum(INITS) == -(-n // slots) * slots  # 16 rows: 4 blocks of 4, once each


# ----------------------------------------------------------------------------- other modalities


def _flat_logits(w, x):
    return jnp.tanh(x.reshape(x.shape[0], -1)) @ w


@pytest.mark.standard_promotion  # Wachter runs optax's Adam
@pytest.mark.parametrize("shape", [(6,), (12, 2)], ids=["tabular-rows", "time-series"])
def test_rows_and_series_run_unbounded_through_the_runner(shape, tmp_path):
    """Inputs of any rank; no domain declared anywhere means no clipping (values may leave
    [0, 1]); class and regression targets."""
    from jaxcf.core import FunctionClassifier, Results

    rng = np.random.default_rng(0)
    d = int(np.prod(shape))
    x = rng.normal(size=(9, *shape)).astype(np.float32) * 3.0  # far outside [0, 1]
    clf = FunctionClassifier(_flat_logits, jnp.asarray(rng.normal(size=(d, 3)), jnp.float32))
    reg = FunctionClassifier(_flat_logits, jnp.asarray(rng.normal(size=(d, 1)), jnp.float32))
    cases = [
        ("wachter", WachterConfig(max_iter=200, learning_rate=0.05), clf, np.arange(9) % 3),
        ("fgsm", FGSMConfig(eps=0.3, schedule=(1.0, 3.0)), clf, np.arange(9) % 3),
        (
            "wachter",
            WachterConfig(max_iter=200, learning_rate=0.05, tolerance=0.05),
            reg,
            np.linspace(-0.5, 0.5, 9),
        ),
    ]
    for k, (name, cfg, model, target) in enumerate(cases):
        target = target.astype(np.int32 if target.dtype.kind == "i" else np.float32)
        res = runner.run(
            make(name, cfg, classifier=model),
            x,
            target,
            tmp_path / str(k),
            progress=False,
            config=runner.RunnerConfig(chunk_size=4, slots=2),
        )
        assert res.x_cf.shape == x.shape and res.target.dtype == target.dtype
        assert res.success.mean() > 0.5, (name, res.success)
        assert Results.load(tmp_path / str(k)).x_cf.shape == x.shape
    with pytest.raises(ValueError, match="bounded input domain"):
        make("jsma", classifier=clf).check(x, np.zeros(9, np.int32))


# ----------------------------------------------------------------------------- shipped classifier


def test_bundled_classifier_loads_and_is_checked_against_its_digest(tmp_path, mnist_test):
    import shutil

    from jaxcf import assets
    from jaxcf.models import content_digest, load_classifier, verify

    assert "demo_resnet_w32" in assets.names()
    model, density, meta = load_classifier("bundled:demo_resnet_w32")
    assert meta["model"]["base_width"] == 32 and meta["test_accuracy"] > 0.99
    assert density is not None and density.feature_dim == 256
    # Every float is representable in bfloat16: the compact copy really is rounded.
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    for leaf in leaves:
        np.testing.assert_array_equal(
            leaf, np.asarray(leaf).astype(jnp.bfloat16).astype(np.float32)
        )
    pred = np.argmax(np.asarray(model.logits(mnist_test.images[:200])), -1)
    assert np.mean(pred == mnist_test.labels[:200]) > 0.97
    # A changed array no longer matches the digest stored beside it.
    copy = tmp_path / "copy"
    shutil.copytree(assets.resolve("bundled:demo_resnet_w32"), copy)
    (copy / "content.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(ValueError, match="content digest"):
        verify(copy, model, density)
    assert (
        content_digest(model, density)
        == (assets.resolve("bundled:demo_resnet_w32") / "content.sha256").read_text().strip()
    )
    with pytest.raises(FileNotFoundError, match="no bundled model 'nope'"):
        load_classifier("bundled:nope")


# ----------------------------------------------------------------------------- compiler options


@pytest.fixture
def fresh_options(monkeypatch):
    """:func:`explain_compiler_options` re-read from this test's environment."""
    explain_compiler_options.cache_clear()
    yield monkeypatch
    explain_compiler_options.cache_clear()


@pytest.mark.parametrize(
    ("env", "flags"),
    [({"JAXCF_CPU_KERNELS": "xla"}, ""), ({}, "--xla_cpu_experimental_ynn_fusion_type=")],
)
def test_user_choice_of_cpu_kernels_wins(fresh_options, env, flags):
    for name, value in env.items():
        fresh_options.setenv(name, value)
    fresh_options.setenv("XLA_FLAGS", flags)
    assert explain_compiler_options() == {}


def test_only_pixel_searches_take_the_cpu_kernel_choice(trained):
    """Continuous searches keep XLA's defaults: their counterfactuals must not depend on the
    batch's shape beyond rounding (batched = per-query loop, sharded = unsharded)."""
    model, density, _ = trained
    assert compiler_options_for(deduce_search(model, density, DeDUCEConfig())) == (
        explain_compiler_options()
    )
    assert compiler_options_for(jsma_search(model, JSMAConfig())) == explain_compiler_options()
    assert (
        compiler_options_for(make(MethodSpec("wachter", WachterConfig()), classifier=model).search)
        == {}
    )


def test_unknown_cpu_kernel_choice_is_refused(fresh_options):
    fresh_options.setenv("JAXCF_CPU_KERNELS", "onednn")
    with pytest.raises(ValueError, match="JAXCF_CPU_KERNELS='onednn'"):
        explain_compiler_options()


def test_pixel_search_is_bitwise_the_same_with_either_cpu_kernels(trained, queries):
    """The explanation programs' compiler options only change which library runs the
    convolutions: DeDUCE's and JSMA's counterfactuals are unchanged (their steps rank pixels)."""
    model, density, _ = trained
    x, t = queries
    x, t = x[:6], t[:6]
    searches = [
        deduce_search(model, density, DeDUCEConfig(max_iter=40)),
        jsma_search(model, JSMAConfig(max_iter=40)),
    ]
    options = explain_compiler_options()
    for search in searches:
        ours = jax.jit(solve, compiler_options=options)(search, x, t)
        xla = jax.jit(solve)(search, x, t)
        np.testing.assert_array_equal(ours.x_cf, xla.x_cf)
        np.testing.assert_array_equal(ours.n_iter, xla.n_iter)
