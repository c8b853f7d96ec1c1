"""A user's own model and data through the generic experiment: an NNX factory with an Orbax
checkpoint on a folder of PNG files, a Linen module on a TFDS split (TFDS's mock data), a plain
function on a CSV table with constraints; and every kind of bad input refused with a clear error
before anything is compiled or written."""

from __future__ import annotations

import csv
import dataclasses
import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from orbax.checkpoint import v1 as ocp
from PIL import Image

from jaxcf.core import Results
from jaxcf.data import DataError
from jaxcf.experiment import (
    REPORT_DIR,
    RUNS_DIR,
    TFDS,
    DataSpec,
    ExperimentConfig,
    ImageFiles,
    NpyFiles,
    TableFile,
    TargetsFile,
    UserModel,
)
from jaxcf.methods import DeDUCEConfig, FGSMConfig, MethodSpec, REVISEConfig, WachterConfig
from jaxcf.runner import RunnerConfig
from tests import user_models

DIGITS = tuple(str(d) for d in range(10))
SMALL = RunnerConfig(chunk_size=8, slots=4)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory, mnist_test):
    """``train/`` and ``test/`` folders of real MNIST digits as PNG files, one sub-folder per
    digit (4 training and 2 test images of each)."""
    root = tmp_path_factory.mktemp("images")
    images, labels = mnist_test.images, mnist_test.labels
    for split, (lo, per) in {"train": (0, 4), "test": (400, 2)}.items():
        for digit in range(10):
            folder = root / split / str(digit)
            folder.mkdir(parents=True)
            picks = np.flatnonzero(labels[lo:] == digit)[:per] + lo
            for i in picks:
                pixels = (images[i, ..., 0] * 255).round().astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def nnx_checkpoint(tmp_path_factory):
    """The state of ``tests.user_models:small_cnn`` saved as an Orbax PyTree, and the model."""
    model = user_models.small_cnn()
    path = tmp_path_factory.mktemp("nnx") / "state"
    ocp.save(path, nnx.state(model))
    return path, model


def _nnx_model(checkpoint, **overrides) -> UserModel:
    base = dict(
        kind="nnx",
        code="tests.user_models:small_cnn",
        checkpoint=str(checkpoint),
        features="features",
        head="head",
    )
    return UserModel(**{**base, **overrides})


def test_nnx_factory_and_checkpoint_on_an_image_folder(image_root, nnx_checkpoint, tmp_path):
    path, model = nnx_checkpoint
    user = _nnx_model(path)
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(user.load().logits(x), model(x), rtol=1e-6, atol=1e-6)
    images = ImageFiles(str(image_root), (28, 28), channels=1, class_names=DIGITS)
    data = DataSpec(images, queries=3)
    reader = data.open()
    assert len(reader) == 20 and reader.input_shape == (28, 28, 1)
    config = ExperimentConfig(
        classifier=user,
        data=data,
        targets="next",
        methods=(
            MethodSpec("deduce", DeDUCEConfig(max_iter=15)),
            MethodSpec("fgsm", FGSMConfig(eps=0.1)),
        ),
        runner=SMALL,
        progress=False,
    )
    doc = config.run(tmp_path)
    assert doc["rows"] == 3 and set(doc["summaries"]) == {"deduce", "fgsm"}
    # DeDUCE's density was fitted on the training folder's 40 images and kept for next time.
    assert doc["models"]["density"]["samples"] == 40
    assert (tmp_path / "models" / "density" / "density.npz").is_file()
    assert doc["class_names"] == list(DIGITS)
    again = config.run(tmp_path)
    assert again["models"]["density"]["fitted"] == "earlier"
    assert again["summaries"] == doc["summaries"]
    assert (tmp_path / REPORT_DIR / "report.md").is_file()


@pytest.mark.standard_promotion  # Wachter runs optax's Adam
def test_linen_module_on_a_tfds_split(tmp_path):
    module = user_models.LinenMLP(num_classes=10)
    variables = user_models.linen_variables(module, (28, 28, 1))
    path = tmp_path / "variables"
    ocp.save(path, variables)
    user = UserModel(
        kind="linen",
        code="tests.user_models:LinenMLP",
        checkpoint=str(path),
        kwargs=(("num_classes", 10),),
        features="features",
        head="head",
    )
    x = np.random.default_rng(1).uniform(size=(2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(user.load().logits(x), module.apply(variables, x), atol=1e-6)
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        config = ExperimentConfig(
            classifier=user,
            data=DataSpec(TFDS("mnist"), queries=4),
            targets="second",
            methods=(MethodSpec("wachter", WachterConfig(max_iter=10)),),
            runner=SMALL,
            progress=False,
        )
        doc = config.run(tmp_path / "work")
    assert doc["rows"] == 4 and doc["data"]["kind"] == "tfds"
    (run,) = (tmp_path / "work" / RUNS_DIR).iterdir()
    assert run.name.startswith("wachter-")


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["age", "hours", "job", "sex", "income"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def table_root(tmp_path_factory):
    """``train.csv`` and ``test.csv``: two numeric and two categorical columns and a label."""
    root = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)

    def rows(n):
        out = []
        for _ in range(n):
            age, hours = int(rng.integers(18, 70)), float(rng.uniform(10, 60))
            job, sex = rng.choice(["clerk", "nurse", "pilot"]), rng.choice(["f", "m"])
            label = ">50K" if hours + age / 2 + (job == "pilot") * 20 > 60 else "<=50K"
            out.append([age, round(hours, 1), job, sex, label])
        return out

    _write_csv(root / "train.csv", rows(120))
    _write_csv(root / "test.csv", rows(12))
    return root


def _table(root, **overrides) -> TableFile:
    base = dict(
        path=str(root),
        label_column="income",
        categorical=("job", "sex"),
        numeric=("age", "hours"),
        integer=("age",),
        immutable=("sex",),
        increasing=("age",),
    )
    return TableFile(**{**base, **overrides})


@pytest.mark.standard_promotion  # Wachter runs optax's Adam
def test_plain_function_on_a_csv_table_with_constraints(table_root, tmp_path):
    table = _table(table_root)
    reader = DataSpec(table).open()
    assert reader.class_names == ("<=50K", ">50K") and len(reader) == 12
    dim = reader.input_shape[0]
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "params.npz", w=rng.normal(size=(dim, 2)), b=np.zeros(2))
    config = ExperimentConfig(
        classifier=UserModel(
            kind="function",
            code="tests.user_models:linear_logits",
            checkpoint=str(tmp_path / "params.npz"),
        ),
        data=DataSpec(table, queries=5),
        targets="opposite",
        methods=(MethodSpec("wachter", WachterConfig(max_iter=20, domain=(-3.0, 3.0))),),
        runner=SMALL,
        progress=False,
    )
    doc = config.run(tmp_path / "work")
    assert doc["rows"] == 5 and doc["data"]["kind"] == "table"
    assert doc["data"]["source"]["immutable"] == ["sex"]
    # Wachter knows nothing of the table's constraints: the report counts what it broke.
    broken = doc["constraints"]["wachter"]
    assert broken["rows"] == 5 and 0 <= broken["rows_violating"] <= 5
    text = (tmp_path / "work" / REPORT_DIR / "report.md").read_text()
    assert "Rows breaking a table constraint" in text


def test_a_parquet_table_reads_as_its_csv(table_root, tmp_path):
    """The same table as Parquet files (typed columns: integers, floats, strings) gives the
    same encoded rows, labels and class names as the CSV."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    for split in ("train", "test"):
        frame = pd.read_csv(table_root / f"{split}.csv")
        frame.to_parquet(tmp_path / f"{split}.parquet")
    from_csv = DataSpec(_table(table_root)).open()
    from_parquet = DataSpec(_table(tmp_path)).open()
    assert from_parquet.class_names == from_csv.class_names
    rows = np.arange(len(from_csv))
    x_csv, y_csv = from_csv.read(rows)
    x_pq, y_pq = from_parquet.read(rows)
    np.testing.assert_array_equal(y_pq, y_csv)
    np.testing.assert_allclose(x_pq, x_csv, rtol=1e-6)


@pytest.mark.standard_promotion  # REVISE runs optax's Adam
def test_a_vae_is_trained_by_default_on_a_registered_data_set(
    nnx_checkpoint, tmp_path, monkeypatch
):
    """REVISE needs a VAE: on a registered data set with none given, the experiment trains one
    (here for 30 steps instead of the default's 5,000) into the workdir and reuses it."""
    from jaxcf.experiment import _config

    monkeypatch.setattr(_config, "DEFAULT_VAE_STEPS", 30)
    path, _ = nnx_checkpoint
    config = ExperimentConfig(
        classifier=_nnx_model(path),
        data=DataSpec("mnist", queries=2),
        targets="next",
        methods=(MethodSpec("revise", REVISEConfig(max_iter=5)),),
        runner=SMALL,
        progress=False,
    )
    ((name, spec),) = config.default_models(config.data.open())
    assert name == "vae" and spec.train.dataset == "mnist" and spec.train.steps == 30
    assert spec.train.model.input_shape == (28, 28, 1)
    doc = config.run(tmp_path)
    assert doc["rows"] == 2 and "vae" in doc["models"]
    assert (tmp_path / "models" / "vae").is_dir()


# ----------------------------------------------------------------------------- bad input


def _refused(config, tmp_path, error, match):
    with pytest.raises(error, match=match):
        config.run(tmp_path / "w")
    assert not (tmp_path / "w" / RUNS_DIR).exists(), "nothing may be run or written"


def test_bad_models_and_data_are_refused_before_anything_runs(
    image_root, nnx_checkpoint, table_root, tmp_path
):
    path, _ = nnx_checkpoint
    images = ImageFiles(str(image_root), (28, 28), channels=1, class_names=DIGITS)
    fgsm = (MethodSpec("fgsm", FGSMConfig(eps=0.1)),)

    queries = DataSpec(images, queries=2)

    def config(classifier, data=queries, methods=fgsm, **kw):
        return ExperimentConfig(classifier, data, methods, runner=SMALL, progress=False, **kw)

    nowhere = _nnx_model(path, code="tests.nowhere:model")
    _refused(config(nowhere), tmp_path, ImportError, "nowhere")
    missing = _nnx_model(path, code="tests.user_models:nope")
    _refused(config(missing), tmp_path, AttributeError, "nope")
    wrong = _nnx_model(path, kwargs=(("num_classes", 3),))  # the checkpoint holds 10 outputs
    _refused(config(wrong), tmp_path, ValueError, "does not fit the model")
    bigger = DataSpec(ImageFiles(str(image_root), (32, 32), channels=1, class_names=DIGITS))
    _refused(config(_nnx_model(path), bigger), tmp_path, ValueError, "does not fit the data")
    featureless = UserModel(kind="nnx", code="tests.user_models:small_cnn", checkpoint=str(path))
    deduce = (MethodSpec("deduce", DeDUCEConfig(max_iter=5)),)
    _refused(config(featureless, methods=deduce), tmp_path, TypeError, "features")
    _refused(config(_nnx_model(path), targets=12), tmp_path, ValueError, "not among")
    with pytest.raises(ValueError, match="targets"):
        config(_nnx_model(path), targets="sideways")
    with pytest.raises(DataError, match="has no columns \\['hourz'\\]"):
        DataSpec(_table(table_root, numeric=("age", "hourz"))).open()
    with pytest.raises(ValueError, match="unknown column 'salary'"):
        DataSpec(_table(table_root, immutable=("salary",))).open()
    with pytest.raises(DataError, match="no data set 'mnistt'"):
        DataSpec(TFDS("mnistt")).open()
    # A method whose model is not given and cannot be trained by default: refused at once.
    with pytest.raises(ValueError, match="'revise' needs a 'vae': add models="):
        config(_nnx_model(path), methods=(MethodSpec("revise", REVISEConfig()),))
    with pytest.raises(ValueError, match="'deduce' needs a 'density': set"):
        config(_nnx_model(path), methods=deduce, density=None)
    with pytest.raises(FileNotFoundError, match="no image folder"):
        ImageFiles(str(image_root / "nowhere"), (28, 28)).open("test")


def test_user_model_specs_validate():
    with pytest.raises(ValueError, match="kind"):
        UserModel(kind="torch", code="a:b")
    with pytest.raises(ValueError, match="package.module:name"):
        UserModel(kind="nnx", code="a.b")
    with pytest.raises(ValueError, match="variables"):
        UserModel(kind="linen", code="a:b")
    assert json.dumps(UserModel(kind="nnx", code="a:b").summary())
    assert jax.tree.leaves(UserModel(kind="nnx", code="a:b").kwargs) == []


def test_npy_folders_and_targets_from_a_file(tmp_path, mnist_test):
    """A directory of .npy files per split, with the targets of every row given as class
    distributions in a file of their own (soft targets)."""
    for split, rows in (("train", slice(0, 40)), ("test", slice(100, 112))):
        folder = tmp_path / "npy" / split
        folder.mkdir(parents=True)
        np.save(folder / "x.npy", np.asarray(mnist_test.images[rows]))
        np.save(folder / "labels.npy", np.asarray(mnist_test.labels[rows]))
    soft = np.full((12, 10), 0.02, np.float32)
    soft[np.arange(12), (mnist_test.labels[100:112] + 1) % 10] = 0.82
    np.save(tmp_path / "targets.npy", soft)
    model = user_models.small_cnn()
    ocp.save(tmp_path / "state", nnx.state(model))
    config = ExperimentConfig(
        classifier=_nnx_model(tmp_path / "state"),
        data=DataSpec(NpyFiles(str(tmp_path / "npy"), domain=(0.0, 1.0)), queries=4),
        targets=TargetsFile(str(tmp_path / "targets.npy")),
        methods=(MethodSpec("fgsm", FGSMConfig(eps=0.1, tolerance=0.5)),),
        runner=SMALL,
        progress=False,
    )
    doc = config.run(tmp_path / "work")
    assert doc["rows"] == 4 and doc["data"]["kind"] == "npy_folder"
    (run,) = (tmp_path / "work" / RUNS_DIR).iterdir()
    record = Results.load(run)
    rows = DataSpec(NpyFiles(str(tmp_path / "npy")), queries=4).rows(config.data.open())
    np.testing.assert_array_equal(record.target, soft[rows])  # each query's own row
    with pytest.raises(ValueError, match="12 targets for 11 rows"):
        TargetsFile(str(tmp_path / "targets.npy")).load(11)


def test_equinox_module_on_an_image_folder(image_root, tmp_path):
    eqx = pytest.importorskip("equinox")
    from tests import user_equinox

    model = user_equinox.mlp(seed=4)
    eqx.tree_serialise_leaves(tmp_path / "mlp.eqx", model)
    user = UserModel(
        kind="equinox",
        code="tests.user_equinox:mlp",
        checkpoint=str(tmp_path / "mlp.eqx"),
        features="features",
        head="head",
    )
    x = np.random.default_rng(3).uniform(size=(2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(user.load().logits(x), jax.vmap(model)(x), atol=1e-6)
    images = ImageFiles(str(image_root), (28, 28), channels=1, class_names=DIGITS)
    config = ExperimentConfig(
        classifier=user,
        data=DataSpec(images, queries=2),
        targets="next",
        methods=(MethodSpec("deduce", DeDUCEConfig(max_iter=10)),),
        runner=SMALL,
        progress=False,
    )
    doc = config.run(tmp_path / "work")
    assert doc["rows"] == 2 and doc["models"]["density"]["samples"] == 40
    # Too few training rows for a class: named before anything is fitted.
    few = dataclasses.replace(config, data=DataSpec(images, queries=2, train_rows=12))
    with pytest.raises(ValueError, match="at least 2 training rows of every class"):
        few.run(tmp_path / "few")
