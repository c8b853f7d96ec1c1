"""A seed study: train one config at several seeds and evaluate each seed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from explain import deduce
from explain.amortised import (
    CLASSIFIER_DIR,
    GENERATOR_DIR,
    ExplainConfig,
    GeneratorJob,
    run_protocol,
)
from explain.seeds._rows import GENERATOR_METRICS, flatten, protocol_rows
from jaxcf.core import load_config, to_jsonable, write_json_atomic
from jaxcf.experiment import KINDS, MODELS_DIR, ModelSpec, checkpoint_path, load_model, train
from jaxcf.models.checkpoint import read_metadata

SEED_FILE = "seed.json"
# The models a DeDUCE protocol declares, any of which a study may reseed.
PROTOCOL_MODELS: tuple[str, ...] = ("classifier", "baseline", "vae", "autoencoder")


@dataclasses.dataclass(frozen=True)
class SeedStudy:
    """Attributes:
    train: the train config file (a ``get_config()`` file, as ``jaxcf train`` takes).
    seeds: the training seeds, distinct, each >= 0.
    seed_fields: the dotted config fields the seed sets (``("seed",)``; ``("generator.seed",)``
      for a generator job, whose classifier then stays the same; add ``"classifier.seed"`` to
      retrain the classifier at each seed too).
    explain: an amortised explain config file evaluating a generator job, a DeDUCE protocol
      config file with the trained model as one of its models, or ``None`` to report the
      checkpoint's own numbers.
    overrides: further ``(field, value text)`` overrides of the train config, for every seed.
    """

    train: str
    seeds: tuple[int, ...]
    seed_fields: tuple[str, ...] = ("seed",)
    explain: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        seeds = tuple(self.seeds)
        if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"SeedStudy.seeds must be integers >= 0, got {self.seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"SeedStudy.seeds must be distinct, got {seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        fields = (self.seed_fields,) if isinstance(self.seed_fields, str) else self.seed_fields
        fields = tuple(fields)
        if not fields or any(
            not isinstance(f, str) or not f or any(not p for p in f.split(".")) for f in fields
        ):
            raise ValueError(f"SeedStudy.seed_fields must be dotted fields, got {fields!r}")
        object.__setattr__(self, "seed_fields", fields)

    def config(self, seed: int) -> Any:
        """The train config at ``seed``."""
        seeded = [(f, str(seed)) for f in self.seed_fields]
        return load_config(self.train, [*self.overrides, *seeded])


def run_seed(study: SeedStudy, seed: int, workdir: str | Path) -> dict[str, Any]:
    """Trains and evaluates ``study`` at ``seed`` into ``<workdir>/seed_<seed>`` (reusing a
    finished ``seed.json``); returns ``{"seed", "metrics", "train_seconds", "weights"}``, the
    metrics a flat name -> float mapping and ``weights`` a digest of the trained weights."""
    where = Path(workdir) / f"seed_{seed}"
    done = where / SEED_FILE
    if done.is_file():
        return json.loads(done.read_text())
    config = study.config(seed)
    if study.explain is None:
        train(config, where)
        record = _checkpoint_record(where / "checkpoint")
    else:
        record = _explain_seed(study, config, where, Path(workdir) / f"seed_{study.seeds[0]}")
    record = to_jsonable({"seed": seed, **record})
    where.mkdir(parents=True, exist_ok=True)
    write_json_atomic(done, record)
    return record


def _explain_seed(study: SeedStudy, job: Any, where: Path, first: Path) -> dict[str, Any]:
    explain = load_config(study.explain)
    if isinstance(explain, deduce.ProtocolConfig):
        return _protocol_seed(study, explain, job, where)
    if not isinstance(explain, ExplainConfig):
        raise TypeError(
            f"{study.explain} is neither an amortised ExplainConfig nor a DeDUCE ProtocolConfig"
        )
    if not isinstance(job, GeneratorJob):
        raise TypeError(f"--explain evaluates generator jobs; {study.train} gives {type(job)}")
    # The classifier does not depend on the generator's seed: train it once and copy it.
    shared = checkpoint_path(ModelSpec(train=job.classifier), first, CLASSIFIER_DIR)
    mine = checkpoint_path(ModelSpec(train=job.classifier), where, CLASSIFIER_DIR)
    if first != where and study.config(study.seeds[0]).classifier == job.classifier:
        if shared.is_dir() and not mine.exists():
            shutil.copytree(shared.parent, mine.parent)
    explain = dataclasses.replace(
        explain,
        job=job,
        peers=(),
        extra_generators=(),
        soft_queries=0,
        train_missing=True,
        progress=False,
    )
    doc = run_protocol(explain, where)
    row = doc["methods"]["generator"]
    gen_dir = where / MODELS_DIR / GENERATOR_DIR / "checkpoint"
    clf_dir = where / MODELS_DIR / CLASSIFIER_DIR / "checkpoint"
    classifier = load_model("classifier", clf_dir)[0]
    return {
        "metrics": flatten({k: row.get(k) for k in GENERATOR_METRICS}, doc["class_names"]),
        "train_seconds": doc["generator"]["train_seconds"],
        "weights": _weights_digest(load_model("generator", gen_dir, classifier=classifier)[0]),
        "classifier_weights": _weights_digest(classifier),
    }


def seeded_model(study: SeedStudy, protocol: deduce.ProtocolConfig) -> str:
    """The protocol's model the study reseeds: the one whose training config is the study's
    config unseeded (its file with the study's overrides).

    Raises:
      ValueError: no model of the protocol, or more than one, is trained from that config.
    """
    base = load_config(study.train, list(study.overrides))
    names = [
        name
        for name in PROTOCOL_MODELS
        if (spec := getattr(protocol, name)) is not None and spec.train == base
    ]
    if len(names) != 1:
        found = "none" if not names else " and ".join(names)
        raise ValueError(
            f"{study.explain}: exactly one of the protocol's models "
            f"({', '.join(PROTOCOL_MODELS)}) must be trained from {study.train} to reseed it; "
            f"found {found}"
        )
    return names[0]


def _protocol_seed(
    study: SeedStudy, protocol: deduce.ProtocolConfig, config: Any, where: Path
) -> dict[str, Any]:
    """One seed through the DeDUCE protocol: the seeded model trained into the protocol's
    workdir (``<where>/models/<name>``) when missing, every method run (or its finished run
    reused), each method's row and the model's own held-out numbers."""
    name = seeded_model(study, protocol)
    spec = ModelSpec(train=config)
    doc = deduce.run_protocol(dataclasses.replace(protocol, **{name: spec}), where)
    record = _checkpoint_record(checkpoint_path(spec, where, name))
    record["metrics"] = {
        **{f"{name}.{k}": v for k, v in record["metrics"].items()},
        **protocol_rows(doc),
    }
    return {**record, "evaluated": f"the DeDUCE protocol with the seeded {name}"}


def _checkpoint_record(path: Path) -> dict[str, Any]:
    """A trained checkpoint's own numbers, training time and weights' digest."""
    meta = read_metadata(path)
    # A classifier's metadata names its model, not a kind; other families name theirs.
    kind = meta.get("kind", "classifier")
    return {
        "metrics": _checkpoint_metrics(meta),
        "train_seconds": meta.get("train_seconds"),
        "weights": _weights_digest(load_model(kind, path)[0]) if kind in KINDS else None,
    }


def _checkpoint_metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    """A checkpoint's held-out numbers: its test accuracy and last evaluation's numbers."""
    last = dict((meta.get("history") or [{}])[-1])
    last.pop("step", None)
    last.pop("epoch", None)
    if meta.get("test_accuracy") is not None:
        last["test_accuracy"] = meta["test_accuracy"]
    return {k: float(v) for k, v in last.items() if isinstance(v, int | float)}


def _weights_digest(model: Any) -> str:
    """SHA-256 over the model's arrays in tree order (their bytes, shapes and dtypes)."""
    state = nnx.state(model) if isinstance(model, nnx.Module) else model
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        a = np.asarray(leaf)
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:16]
