"""Tests for jaxcf.tabular, jaxcf.tabular, the Adult loader and the DiCE peer.

Real-data tests read Adult the way every loader does (``$JAXCF_DATA_DIR``, then the shared
data folder beside the checkout) and are skipped where the files are absent.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcf.core import FunctionClassifier
from jaxcf.data import (
    ADULT_CONSTRAINTS,
    ADULT_SCHEMA,
    DataError,
    adult_transform,
    load_adult_table,
    load_dataset,
)
from jaxcf.data import _adult as adult_module
from jaxcf.data._adult import FEATURES, SPLIT_SIZES, parse_adult
from jaxcf.methods import CFProtoConfig, cfproto
from jaxcf.tabular import (
    Column,
    Constraints,
    Schema,
    TabularTransform,
    activate,
    changes,
    enforce,
    fit_mixture_1d,
    fixed_mask,
    project,
    violations,
    write_changes_csv,
)


@pytest.fixture(scope="module")
def transform() -> TabularTransform:
    try:
        return adult_transform()
    except FileNotFoundError as exc:
        pytest.skip(f"Adult data not available: {exc}")


@pytest.fixture(scope="module")
def tables(transform) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    return {split: load_adult_table(split) for split in ("train", "test")}


def _rows(table: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {name: np.asarray(values)[idx] for name, values in table.items()}


# ---------------------------------------------------------------------------------------------
# Adult: rows, encoding width, exact round trip
# ---------------------------------------------------------------------------------------------


def test_adult_rows_schema_and_width(transform, tables):
    assert transform.dim == 85
    widths = [b.width for b in transform.layout.blocks]
    # Age, Workclass, Education, Marital, Occupation, Relationship, Race, Sex, CG, CL, Hours,
    # Country: 53 one-hot dimensions + 4 numeric columns x (alpha + 7 modes).
    assert widths == [8, 9, 7, 4, 9, 6, 5, 2, 8, 8, 8, 11]
    assert transform.schema == ADULT_SCHEMA and transform.schema.names == FEATURES
    for split, (table, labels) in tables.items():
        assert len(labels) == SPLIT_SIZES[split]
        assert labels.dtype == np.int32 and set(np.unique(labels)) == {0, 1}
        assert all(len(v) == len(labels) for v in table.values())
        assert table["Age"].dtype == np.int64 and table["Race"].dtype == object
    # From the data README: 7841 of 32561 train and 3846 of 16281 test rows earn >50K.
    assert int(tables["train"][1].sum()) == 7841 and int(tables["test"][1].sum()) == 3846
    # '?' is a category of its own (as in alibi): 1836 train rows lack a workclass.
    assert int((tables["train"][0]["Workclass"] == "?").sum()) == 1836


@pytest.mark.parametrize("split", ["train", "test"])
def test_round_trip_is_exact_on_every_row(transform, tables, split):
    table, labels = tables[split]
    x = transform.encode(table)
    assert x.shape == (SPLIT_SIZES[split], 85) and x.dtype == np.float32
    decoded = transform.decode(x)
    for name in FEATURES:
        assert decoded[name].dtype == np.asarray(table[name]).dtype, name
        np.testing.assert_array_equal(decoded[name], table[name], err_msg=name)
    # Every block is one-hot and every alpha within its mode's +-4 sigma.
    for lo, hi in transform.layout.groups():
        np.testing.assert_array_equal(x[:, lo:hi].sum(axis=1), 1.0)
    scalars = [b.scalar for b in transform.layout.blocks if b.kind == "numeric"]
    assert np.abs(x[:, scalars]).max() <= 1.0
    dataset = load_dataset("adult", split)
    np.testing.assert_array_equal(dataset.inputs, x)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.class_names == ("<=50K", ">50K") and dataset.domain is None


def test_mixture_fit_is_deterministic(tables):
    ages = tables["train"][0]["Age"]
    a, b = fit_mixture_1d(ages, 7, seed=0), fit_mixture_1d(ages, 7, seed=0)
    assert a == b and a.n_modes == 7 and math.isclose(sum(a.weights), 1.0)
    assert list(a.means) == sorted(a.means) and (a.low, a.high) == (17.0, 90.0)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def _bad(table, column, row, value):
    out = {name: np.asarray(v).copy() for name, v in table.items()}
    if out[column].dtype != object:
        out[column] = out[column].astype(object)
    out[column][row] = value
    return out


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("Race", "Martian", r"column 'Race' row 2: unknown category 'Martian'"),
        ("Education", None, r"column 'Education' row 2: missing value None"),
        ("Sex", float("nan"), r"column 'Sex' row 2: missing value nan"),
        ("Race", "?", r"column 'Race' row 2: missing value '\?'"),
        ("Age", "?", r"column 'Age' row 2: missing value '\?'"),
        ("Hours per week", None, r"column 'Hours per week' row 2: missing value None"),
        ("Capital Gain", float("nan"), r"column 'Capital Gain' row 2: missing value nan"),
        ("Age", 150, r"column 'Age' row 2: 150 is outside the fitted range \[17, 90\]"),
        ("Capital Loss", -1, r"column 'Capital Loss' row 2: -1 is outside the fitted range"),
        ("Age", 37.5, r"column 'Age' row 2: 37.5 is not an integer"),
        ("Age", "forty", r"column 'Age' row 2: 'forty' is not a number"),
    ],
)
def test_bad_values_name_the_column(transform, tables, column, value, message):
    table = _rows(tables["test"][0], slice(0, 5))
    with pytest.raises(ValueError, match=message):
        transform.encode(_bad(table, column, 2, value))


def test_bad_columns_and_widths(transform, tables):
    table = _rows(tables["test"][0], slice(0, 5))
    missing = {k: v for k, v in table.items() if k != "Country"}
    with pytest.raises(ValueError, match=r"missing column 'Country'"):
        transform.encode(missing)
    with pytest.raises(ValueError, match=r"unexpected column 'fnlwgt'"):
        transform.encode({**table, "fnlwgt": np.zeros(5)})
    with pytest.raises(ValueError, match=r"different lengths"):
        transform.encode({**table, "Age": table["Age"][:4]})
    x = transform.encode(table)
    with pytest.raises(ValueError, match=r"must be \[N, 85\].*got shape \[5, 84\]"):
        transform.decode(x[:, :84])
    with pytest.raises(ValueError, match=r"must be \[N, 85\]"):
        transform.decode(x[0])
    x[1, 10] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf \(row 1, column 'Workclass'\)"):
        transform.decode(x)
    with pytest.raises(ValueError, match=r"raw outputs must be \[B, 85\]"):
        activate(transform.layout, jnp.zeros((2, 86)))


def test_schema_validation():
    with pytest.raises(ValueError, match=r"category 'a' is listed twice"):
        Column.categorical("c", ["a", "a"])
    with pytest.raises(ValueError, match=r"column 'x' appears twice"):
        Schema((Column.numeric("x"), Column.numeric("x")))
    with pytest.raises(ValueError, match=r"unknown column 'Income'"):
        ADULT_SCHEMA.index("Income")


def test_parse_errors_and_missing_files(tmp_path):
    good = "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
    good += "White, Male, 2174, 0, 40, United-States, <=50K"
    table, labels = parse_adult("|1x3 Cross validator\n" + good + ".\n\n", "t")
    assert labels.tolist() == [0] and table["Education"].tolist() == ["Bachelors"]
    assert table["Marital Status"].tolist() == ["Never-Married"]
    with pytest.raises(DataError, match=r"t:1: 14 fields"):
        parse_adult(good.rsplit(", ", 1)[0], "t")
    with pytest.raises(DataError, match=r"t:1: unknown label"):
        parse_adult(good.replace("<=50K", "rich"), "t")
    with pytest.raises(DataError, match=r"t:1: unknown Country 'Atlantis'"):
        parse_adult(good.replace("United-States", "Atlantis"), "t")
    with pytest.raises(DataError, match=r"t:1: Age is 'x'"):
        parse_adult("x" + good[2:], "t")
    with pytest.raises(FileNotFoundError, match=r"no adult.test"):
        adult_module.load_adult_table("test", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Serialisation
# ---------------------------------------------------------------------------------------------


def test_to_dict_round_trip(transform, tables):
    text = json.dumps(transform.to_dict())
    restored = TabularTransform.from_dict(json.loads(text))
    assert restored == transform and restored.digest() == transform.digest()
    assert restored.layout == transform.layout and hash(restored.layout) == hash(transform.layout)
    table = _rows(tables["test"][0], slice(0, 100))
    np.testing.assert_array_equal(restored.encode(table), transform.encode(table))
    other = transform.to_dict()
    other["numeric"]["Age"]["high"] = 91.0
    assert TabularTransform.from_dict(other).digest() != transform.digest()
    with pytest.raises(ValueError, match="format"):
        TabularTransform.from_dict({"format": "something else"})


# ---------------------------------------------------------------------------------------------
# Activation
# ---------------------------------------------------------------------------------------------


def test_activate_gumbel_soft_and_hard(transform):
    layout = transform.layout
    raw = jax.random.normal(jax.random.key(0), (64, 85)) * 3.0
    soft = jax.jit(lambda r, k: activate(layout, r, k, temperature=0.5))(raw, jax.random.key(1))
    hard = jax.jit(lambda r: activate(layout, r))(raw)
    straight = jax.jit(lambda r, k: activate(layout, r, k, straight_through=True))(
        raw, jax.random.key(1)
    )
    scalars = np.asarray([b.scalar for b in layout.blocks if b.kind == "numeric"])
    for lo, hi in layout.groups():
        np.testing.assert_allclose(np.asarray(soft[:, lo:hi]).sum(axis=1), 1.0, rtol=1e-5)
        assert np.all(np.asarray(soft[:, lo:hi]) > 0)  # soft: not one-hot
        block = np.asarray(hard[:, lo:hi])
        assert set(np.unique(block)) <= {0.0, 1.0} and np.all(block.sum(axis=1) == 1.0)
        np.testing.assert_array_equal(block.argmax(1), np.asarray(raw[:, lo:hi]).argmax(1))
        np.testing.assert_allclose(np.asarray(straight[:, lo:hi]).max(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(hard[:, scalars], jnp.tanh(raw[:, scalars]), rtol=1e-6)
    # Soft samples are differentiable in the raw outputs.
    loss = lambda r: jnp.sum(activate(layout, r, jax.random.key(1))[:, 1:9] ** 2)
    grad = jax.jit(jax.grad(loss))(raw)
    assert np.all(np.isfinite(grad)) and np.any(np.asarray(grad) != 0)
    # Hard activations decode to valid rows.
    decoded = transform.decode(hard)
    assert set(decoded["Race"]) <= set(ADULT_SCHEMA.column("Race").categories)


def test_project_is_decode_then_encode(transform, tables):
    """``project`` (pure JAX) gives what decode -> encode gives, on real rows moved off their
    encodings as a search moves them; real rows are fixed points."""

    def same_rows(got, want):  # one-hot blocks exactly; alphas to float32 (decode: float64)
        for lo, hi in transform.layout.groups():
            np.testing.assert_array_equal(got[:, lo:hi], want[:, lo:hi])
        np.testing.assert_allclose(got, want, atol=5e-5)

    table, _ = tables["test"]
    x = transform.encode(_rows(table, np.arange(512)))
    step = jax.jit(transform.projection())
    same_rows(np.asarray(step(jnp.asarray(x))), x)
    moved = x + np.asarray(jax.random.normal(jax.random.key(3), x.shape)) * 0.4
    got = np.asarray(step(jnp.asarray(moved)))
    same_rows(got, transform.encode(transform.decode(moved)))
    assert not np.allclose(got, x, atol=1e-3)  # the noise did change rows
    # Equal layouts give equal (hashable) projections: one compiled program for both.
    assert transform.projection() == adult_transform().projection()
    assert hash(transform.projection()) == hash(adult_transform().projection())
    with pytest.raises(ValueError, match=r"\[B, 85\]"):
        project(transform.layout, jnp.zeros((2, 84)))


# ---------------------------------------------------------------------------------------------
# Constraints
# ---------------------------------------------------------------------------------------------


def test_constraints_validation():
    with pytest.raises(ValueError, match=r"unknown column 'Gender'"):
        Constraints(immutable=("Gender",)).check(ADULT_SCHEMA)
    with pytest.raises(ValueError, match=r"increasing column 'Education' is categorical"):
        Constraints(increasing=("Education",)).check(ADULT_SCHEMA)
    with pytest.raises(ValueError, match=r"got the string 'Race'"):
        Constraints(immutable="Race")
    with pytest.raises(ValueError, match=r"'Age' is both immutable and increasing"):
        Constraints(immutable=("Age",), increasing=("Age",))
    with pytest.raises(ValueError, match=r"unknown column 'Height'"):
        fixed_mask(ADULT_SCHEMA, ["Height"], 3)
    with pytest.raises(ValueError, match=r"must be \[12\] or \[3, 12\]"):
        fixed_mask(ADULT_SCHEMA, np.zeros((3, 11), bool), 3)
    mask = fixed_mask(ADULT_SCHEMA, ["Age", "Country"], 2)
    assert mask.shape == (2, 12) and mask.sum() == 4 and mask[:, 0].all() and mask[:, 11].all()


@pytest.mark.parametrize("soft", [False, True])
def test_enforce_property_zero_violations(transform, tables, soft):
    """Random test rows x random generator outputs x random fixed masks: after enforce, every
    constraint holds exactly on decoded rows, and unconstrained columns keep the generator's
    values."""
    rng = np.random.default_rng(0)
    table, _ = tables["test"]
    batch, layout, constraints = 512, transform.layout, ADULT_CONSTRAINTS
    run = jax.jit(enforce, static_argnums=(0, 1))
    act = jax.jit(lambda r, k: activate(layout, r, k))
    for trial in range(4):
        idx = rng.choice(len(table["Age"]), batch, replace=False)
        x_table = _rows(table, idx)
        x = transform.encode(x_table)
        raw = rng.normal(size=(batch, 85)).astype(np.float32) * 2.0
        key = jax.random.key(trial) if soft else None
        cf = (
            act(jnp.asarray(raw), key) if soft else jax.jit(activate, static_argnums=0)(layout, raw)
        )
        fixed = rng.random((batch, 12)) < 0.3
        out = run(layout, constraints, jnp.asarray(x), cf, jnp.asarray(fixed))
        cf_table, out_table = transform.decode(cf), transform.decode(out)
        before = violations(transform, x_table, cf_table, constraints, fixed)
        assert before.sum() > 0  # the raw outputs do break the constraints
        after = violations(transform, x_table, out_table, constraints, fixed)
        np.testing.assert_array_equal(after, 0)
        for i, name in enumerate(FEATURES):
            free = ~fixed[:, i] & (name not in constraints.immutable)
            if name in constraints.increasing:
                free &= np.asarray(cf_table[name]) > np.asarray(x_table[name])
            np.testing.assert_array_equal(out_table[name][free], cf_table[name][free], name)
    # Differentiable: the gradient reaches the counterfactual where it is kept.
    loss = lambda c: jnp.sum(enforce(layout, constraints, jnp.asarray(x), c) ** 2)
    grad = jax.jit(jax.grad(loss))(cf)
    assert np.all(np.isfinite(grad)) and np.any(np.asarray(grad) != 0)


def test_enforce_without_fixed_and_names_unknown_columns(transform, tables):
    x = jnp.asarray(transform.encode(_rows(tables["test"][0], slice(0, 8))))
    cf = jax.jit(activate, static_argnums=0)(
        transform.layout, jax.random.normal(jax.random.key(3), (8, 85))
    )
    out = jax.jit(enforce, static_argnums=(0, 1))(transform.layout, ADULT_CONSTRAINTS, x, cf)
    race = transform.layout.block("Race")
    np.testing.assert_array_equal(out[:, race.start : race.stop], x[:, race.start : race.stop])
    with pytest.raises(ValueError, match=r"unknown column 'Gender'"):
        enforce(transform.layout, Constraints(immutable=("Gender",)), x, cf)
    with pytest.raises(ValueError, match=r"fixed must be a bool mask \[8, 12\]"):
        enforce(transform.layout, ADULT_CONSTRAINTS, x, cf, jnp.zeros((8, 11), bool))


# ---------------------------------------------------------------------------------------------
# Readable changes
# ---------------------------------------------------------------------------------------------


def test_changes_csv(transform, tables, tmp_path):
    x_table = _rows(tables["test"][0], [0, 1])  # rows 0 and 1 of adult.test
    cf_table = {name: np.asarray(v).copy() for name, v in x_table.items()}
    cf_table["Education"] = np.asarray(["Masters", cf_table["Education"][1]], object)
    cf_table["Age"] = cf_table["Age"] + np.asarray([3, 0])
    x, cf = transform.encode(x_table), transform.encode(cf_table)
    path = tmp_path / "changes.csv"
    rows = write_changes_csv(path, transform, x, cf, ["q7", "q9"], extra={"target": [1, 1]})
    assert rows == changes(transform, x, cf, ["q7", "q9"], extra={"target": [1, 1]})
    # adult.test row 0: a 25-year-old Dropout (11th grade).
    assert rows[0] == {
        "query": "q7",
        "target": 1,
        "changed": 2,
        "Age": "25 -> 28",
        "Education": "Dropout -> Masters",
    }
    assert rows[1] == {"query": "q9", "target": 1, "changed": 0}
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == ["query", "target", "changed", *FEATURES]
    assert read[0]["Education"] == "Dropout -> Masters" and read[0]["Age"] == "25 -> 28"
    assert read[0]["Race"] == "" and read[1]["changed"] == "0"
    assert all(read[1][name] == "" for name in FEATURES)


# ---------------------------------------------------------------------------------------------
# DiCE peer
# ---------------------------------------------------------------------------------------------


def _linear_logits(params, x):
    return x @ params["w"] + params["b"][None, :]


def _logistic_regression(tables) -> tuple[np.ndarray, np.ndarray]:
    """A logistic regression on the encoding (a few hundred gradient steps on 8,000 rows)."""
    x_train, y_train = load_dataset("adult", "train").inputs[:8000], tables["train"][1][:8000]
    w, b = np.zeros((85, 2), np.float32), np.zeros(2, np.float32)
    onehot = np.eye(2, dtype=np.float32)[y_train]
    for _ in range(300):
        z = x_train @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(y_train)
        w -= 2.0 * x_train.T @ g
        b -= 2.0 * g.sum(0)
    accuracy = ((x_train @ w + b).argmax(1) == y_train).mean()
    assert accuracy > 0.8
    return w, b


def test_cfproto_with_projection_returns_valid_rows(transform, tables):
    """With ``project``, every counterfactual CFProto returns is the encoding of a real row
    (decode -> encode leaves it) that the classifier puts at its target; judged on its raw
    iterates, most of its counterfactuals decode back to the query's class."""
    w, b = _logistic_regression(tables)
    classifier = FunctionClassifier(_linear_logits, {"w": jnp.asarray(w), "b": jnp.asarray(b)})
    x = transform.encode(_rows(tables["test"][0], np.arange(32)))
    target = (1 - (x @ w + b).argmax(1)).astype(np.int32)
    config = CFProtoConfig(
        theta=0.0, c_init=100.0, c_steps=5, max_iter=300, patience=50, domain=(-1.0, 1.0)
    )
    raw = cfproto(classifier, None, x, target, config)
    rows = cfproto(classifier, None, x, target, config, project=transform.projection())

    def valid(r):
        back = transform.encode(transform.decode(np.asarray(r.x_cf)))
        return (back @ w + b).argmax(1) == target

    assert np.asarray(raw.success).all() and valid(raw).mean() < 0.5
    ok = np.asarray(rows.success)
    assert ok.all() and valid(rows).all()  # measured: 100% against 3% of the raw iterates
    back = transform.encode(transform.decode(np.asarray(rows.x_cf)))
    np.testing.assert_allclose(np.asarray(rows.x_cf)[ok], back[ok], atol=5e-5)

    @dataclasses.dataclass  # eq without frozen: unhashable
    class Unhashable:
        def __call__(self, rows):
            return rows

    with pytest.raises(TypeError, match="hash by value"):
        cfproto(classifier, None, x, target, config, project=Unhashable())
    with pytest.raises(TypeError, match="callable"):
        cfproto(classifier, None, x, target, config, project=3)


def test_dice_peer_respects_constraints(transform, tables):
    pytest.importorskip("dice_ml")
    from jaxcf.peers.dice import dice_counterfactuals

    w, b = _logistic_regression(tables)
    classifier = FunctionClassifier(_linear_logits, {"w": jnp.asarray(w), "b": jnp.asarray(b)})
    table, _ = tables["test"]
    queries = _rows(table, [0, 1, 2])
    x = transform.encode(queries)
    desired = 1 - (x @ w + b).argmax(1)
    result = dice_counterfactuals(
        classifier,
        transform,
        queries,
        desired,
        data=tables["train"],
        method="random",
        constraints=ADULT_CONSTRAINTS,
        fixed=["Country"],
        seed=0,
    )
    assert result.x_cf.shape == (3, 85) and result.found.shape == (3,)
    assert result.found.all() and np.all(result.seconds > 0)
    np.testing.assert_array_equal(result.query_index, [0, 1, 2])
    np.testing.assert_array_equal((result.x_cf @ w + b).argmax(1), desired)
    cf_table = transform.decode(result.x_cf)
    counts = violations(transform, queries, cf_table, ADULT_CONSTRAINTS, ["Country"])
    np.testing.assert_array_equal(counts, 0)
    assert 0 < result.seconds_per_cf < 5.0
