"""What an experiment prepares beside its classifier: the classifier checked against the data
(input shape, output width, value domain), and DeDUCE's class-conditional feature density when
the classifier brings none, fitted on its features of the data's training split and kept in the
workdir for the next run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcf.core import FunctionClassifier, as_pure, checks, classifier_digest, write_atomic
from jaxcf.data import RowReader
from jaxcf.evaluation import metrics
from jaxcf.experiment._data import DataSpec
from jaxcf.methods import method_needs
from jaxcf.models import DensityConfig, GaussianDensity, fit_gaussians

DENSITY_FILE = "density.npz"


def needs(methods: Any) -> set[str]:
    """Every resource the method specs need, by name."""
    return {need for spec in methods for need in method_needs(spec.name)}


def fit_to_data(classifier: Any, reader: RowReader) -> Any:
    """``classifier``, checked to take the data's inputs (shape) and give ``[B, C]`` logits, and
    told the data's value domain when it declares none (a plain function classifier).

    Raises:
      ValueError: the classifier declares another input shape, cannot take the data's, or
        returns no ``[B, C]`` logits (the message names both shapes).
    """
    try:
        checks.classifier_io(as_pure(classifier), tuple(reader.input_shape))
    except ValueError as exc:
        raise ValueError(f"the classifier does not fit the data: {exc}") from exc
    declared = getattr(classifier, "domain", None)
    if (
        declared is None
        and reader.domain is not None
        and isinstance(classifier, FunctionClassifier)
    ):
        classifier = classifier.replace(domain=tuple(reader.domain))
    return classifier


@jax.jit
def _features(classifier: Any, x: jax.Array) -> jax.Array:
    return classifier.features(x)


def fitted_density(
    classifier: Any,
    data: DataSpec,
    folder: Path,
    config: DensityConfig,
    *,
    progress: bool = True,
) -> tuple[GaussianDensity, dict[str, Any]]:
    """One Gaussian per class on ``classifier``'s features of ``data``'s training split (read a
    block at a time; fitted as ``config`` says), fitted once and kept in ``folder``: a later run
    with the same classifier, training data and config reads it back.

    Raises:
      TypeError: the classifier offers no ``features`` (a method that needs a density needs
        them).
      ValueError: a training split without labels, or with fewer than two rows of a class.
    """
    pure = as_pure(classifier, need_features=True)
    reader = data.open(data.train_split)
    rows = data.training_rows(reader)
    key = {
        "classifier": classifier_digest(classifier),
        "data": reader.identity(),
        "rows": hashlib.sha256(rows.tobytes()).hexdigest(),
        "config": dataclasses.asdict(config),
    }
    path = Path(folder) / DENSITY_FILE
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["key"])) == key:
                arrays = {k: f[k] for k in f.files if k != "key"}
                density = GaussianDensity.from_arrays(arrays)
                return density, {"source": str(path), "fitted": "earlier"}
    if progress:
        print(
            f"fitting the class-conditional feature density on {data.name} "
            f"({data.train_split}, {len(rows)} rows)",
            flush=True,
        )
    feats, labels = [], []
    for start in range(0, len(rows), 512):
        x, y = reader.read(rows[start : start + 512])
        if y is None:
            raise ValueError(f"the {data.train_split} split has no labels to fit a density on")
        feats.append(np.asarray(metrics.chunked(lambda b: _features(pure, b), 512, x), np.float64))
        labels.append(y)
    features, labels = np.concatenate(feats), np.concatenate(labels)
    num_classes = int(np.asarray(pure.logits(reader.read(rows[:1])[0])).shape[-1])
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    if counts.min() < 2:
        few = {c: int(n) for c, n in enumerate(counts) if n < 2}
        raise ValueError(
            f"the density needs at least 2 training rows of every class; {data.train_split} "
            f"({len(rows)} rows) has {few} (class: rows): use more rows (DataSpec.train_rows) "
            "or a training split with every class"
        )
    density = fit_gaussians(features, labels, num_classes, config)
    arrays = {**density.to_arrays(), "key": np.asarray(json.dumps(key, sort_keys=True))}
    write_atomic(path, lambda f: np.savez(f, **arrays))
    info = {
        "source": str(path),
        "fitted": "now",
        "samples": int(len(labels)),
        "feature_dim": int(features.shape[1]),
        "config": dataclasses.asdict(config),
    }
    return density, info
