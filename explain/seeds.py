"""Training-seed spread of a trained-model result: train one config at several seeds, evaluate
each the way its single-seed result was, and report every metric as mean ± standard deviation
beside each seed's own value.

    python -m explain.seeds train/configs/generator_adult.py \\
        --explain explain/amortised/configs/generator_adult.py \\
        --seed-field generator.seed --seeds 0 1 2 \\
        --workdir workdir/seeds/generator_adult --out docs/results/generator_adult_seeds \\
        --reference recorded=docs/results/generator_adult.json

Seed ``s`` is the train config with ``--config.<seed-field>=s`` (the same override ``jaxcf
train`` takes), trained by the ordinary entry points into ``<workdir>/seed_<s>``. Two ways to
evaluate it:

* with ``--explain`` (an amortised :class:`~explain.amortised.ExplainConfig`): the generator
  protocol on the same queries, targets and noise as the recorded run, the generator alone
  (peers, extra generators and soft targets are off: they do not depend on the generator's
  seed, or are reported elsewhere); the metrics of its ``generator`` row, in our units and the
  paper's. A job whose classifier config does not change with the seed trains its classifier
  once, in the first seed's folder, and the others copy it (its weights would be bitwise the
  same);
* without: the trained checkpoint's own numbers (its last evaluation and test accuracy).

Each seed's numbers are kept in ``<workdir>/seed_<s>/seed.json`` and reused, so seeds can run
one call at a time and a last call with all of them only aggregates. ``--reference
LABEL=REPORT.json[:METHOD]`` shows a recorded row of the protocol (``report.json``; the row
``generator`` unless named) beside the spread: its distance from the mean in standard
deviations and which seed, if any, reproduces it bitwise. The outputs are ``<out>.json`` and
``<out>.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from explain.amortised import (
    CLASSIFIER_DIR,
    GENERATOR_DIR,
    ExplainConfig,
    GeneratorJob,
    run_protocol,
)
from jaxcf.core import load_config, to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.experiment import KINDS, MODELS_DIR, ModelSpec, checkpoint_path, load_model, train
from jaxcf.models.checkpoint import read_metadata

SEED_FILE = "seed.json"
# Metrics of the protocol's generator row reported by the study (what the docs' tables show).
GENERATOR_METRICS: tuple[str, ...] = (
    "validity",
    "validity_raw",
    "mmd2",
    "class_mmd2",
    "l1",
    "l0",
    "diversity",
    "l0_categorical",
    "l1_scaled",
    "mmd2_paper",
    "class_mmd2_paper",
)


@dataclasses.dataclass(frozen=True)
class SeedStudy:
    """Attributes:
    train: the train config file (a ``get_config()`` file, as ``jaxcf train`` takes).
    seeds: the training seeds, distinct, each >= 0.
    seed_fields: the dotted config fields the seed sets (``("seed",)``; ``("generator.seed",)``
      for a generator job, whose classifier then stays the same; add ``"classifier.seed"`` to
      retrain the classifier at each seed too).
    explain: an amortised explain config file evaluating a generator job, or ``None`` to
      report the checkpoint's own numbers.
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
        meta = read_metadata(where / "checkpoint")
        # A classifier's metadata names its model, not a kind; other families name theirs.
        kind = meta.get("kind", "classifier")
        record = {
            "metrics": _checkpoint_metrics(meta),
            "train_seconds": meta.get("train_seconds"),
            "weights": _weights_digest(load_model(kind, where / "checkpoint")[0])
            if kind in KINDS
            else None,
        }
    else:
        record = _explain_seed(study, config, where, Path(workdir) / f"seed_{study.seeds[0]}")
    record = to_jsonable({"seed": seed, **record})
    where.mkdir(parents=True, exist_ok=True)
    write_json_atomic(done, record)
    return record


def _explain_seed(study: SeedStudy, job: Any, where: Path, first: Path) -> dict[str, Any]:
    if not isinstance(job, GeneratorJob):
        raise TypeError(f"--explain evaluates generator jobs; {study.train} gives {type(job)}")
    explain = load_config(study.explain)
    if not isinstance(explain, ExplainConfig):
        raise TypeError(f"{study.explain} is not an amortised ExplainConfig")
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
        "metrics": _flatten({k: row.get(k) for k in GENERATOR_METRICS}, doc["class_names"]),
        "train_seconds": doc["generator"]["train_seconds"],
        "weights": _weights_digest(load_model("generator", gen_dir, classifier=classifier)[0]),
        "classifier_weights": _weights_digest(classifier),
    }


def _checkpoint_metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    """A checkpoint's held-out numbers: its test accuracy and last evaluation's numbers."""
    last = dict((meta.get("history") or [{}])[-1])
    last.pop("step", None)
    last.pop("epoch", None)
    if meta.get("test_accuracy") is not None:
        last["test_accuracy"] = meta["test_accuracy"]
    return {k: float(v) for k, v in last.items() if isinstance(v, int | float)}


def _flatten(row: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, float]:
    """Lists per class become ``name[class]``; missing values are left out."""
    out = {}
    for name, value in row.items():
        if isinstance(value, list | tuple):
            for cls, v in zip(class_names, value, strict=True):
                if v is not None:
                    out[f"{name}[{cls}]"] = float(v)
        elif value is not None:
            out[name] = float(value)
    return out


def _weights_digest(model: Any) -> str:
    """SHA-256 over the model's arrays in tree order (their bytes, shapes and dtypes)."""
    state = nnx.state(model) if isinstance(model, nnx.Module) else model
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        a = np.asarray(leaf)
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:16]


def spread(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric over the seeds: ``mean``, ``std`` (sample standard deviation, ``ddof=1``;
    ``None`` with one seed), ``min``, ``max`` and each seed's ``values`` (in seed order). Only
    metrics every seed has."""
    names = [n for n in records[0]["metrics"] if all(n in r["metrics"] for r in records)]
    out = {}
    for name in names:
        v = np.asarray([r["metrics"][name] for r in records], np.float64)
        out[name] = {
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()),
            "max": float(v.max()),
            "values": [float(x) for x in v],
        }
    return out


def _max_relative_gap(metrics: Mapping[str, float], row: Mapping[str, float]) -> float:
    """The largest ``|metric - row| / |row|`` over the row's metrics (``inf`` if one is
    missing)."""
    gaps = [
        abs(metrics[k] - v) / abs(v) if v else abs(metrics[k])
        for k, v in row.items()
        if k in metrics
    ]
    return max(gaps) if len(gaps) == len(row) else math.inf


def reference_row(path: str | Path, method: str = "generator") -> dict[str, float]:
    """The ``method`` row of a recorded protocol report, flattened like a seed's metrics."""
    doc = json.loads(Path(path).read_text())
    row = doc["methods"][method]
    return _flatten({k: row.get(k) for k in GENERATOR_METRICS}, doc["class_names"])


def summarize(
    study: SeedStudy,
    records: Sequence[Mapping[str, Any]],
    references: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The study's JSON document: the config, each seed's record, the spread, and for each
    recorded row (by label) the row, the seeds that reproduce it bitwise (every metric equal)
    and each metric's distance from the seeds' mean in standard deviations."""
    stats = spread(records)
    doc: dict[str, Any] = {
        "train": study.train,
        "explain": study.explain,
        "seed_fields": list(study.seed_fields),
        "overrides": [list(o) for o in study.overrides],
        "seeds": [r["seed"] for r in records],
        "records": list(records),
        "spread": stats,
        "references": {},
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
    }
    for label, row in (references or {}).items():
        gaps = {r["seed"]: _max_relative_gap(r["metrics"], row) for r in records}
        closest = min(gaps, key=gaps.get)
        doc["references"][label] = {
            "row": dict(row),
            "closest_seed": closest,
            "max_relative_gap": gaps[closest],
            "bitwise_seeds": [
                r["seed"] for r in records if all(r["metrics"].get(k) == v for k, v in row.items())
            ],
            "z": {
                k: (row[k] - s["mean"]) / s["std"] if s["std"] else None
                for k, s in stats.items()
                if k in row
            },
        }
    return doc


def markdown(doc: Mapping[str, Any], title: str) -> str:
    """The study as a markdown page: one row per metric, mean ± std, each seed's value, then
    each recorded row's value and its distance from the mean in standard deviations."""
    seeds, refs = doc["seeds"], doc.get("references", {})
    flags = ", ".join(f"`--config.{f}=SEED`" for f in doc["seed_fields"])
    how = f", each evaluated by `{doc['explain']}` (the generator alone)" if doc["explain"] else ""
    head = ["metric", "mean ± std", *(f"seed {s}" for s in seeds)]
    for label in refs:
        head += [label, "(row - mean) / std"]
    lines = [
        f"# {title}",
        "",
        f"`{doc['train']}` trained at {len(seeds)} seeds ({flags}){how}; "
        f"{', '.join(doc['devices'])}, jax {doc['jax']}. The spread is the sample standard "
        "deviation over the seeds.",
        "",
        "| " + " | ".join(head) + " |",
        "| :--- | " + " | ".join("---:" for _ in head[1:]) + " |",
    ]
    for name, s in doc["spread"].items():
        std = "—" if s["std"] is None else _fmt(s["std"])
        cells = [name, f"{_fmt(s['mean'])} ± {std}", *(_fmt(v) for v in s["values"])]
        for ref in refs.values():
            r, z = ref["row"].get(name), ref["z"].get(name)
            cells += ["—" if r is None else _fmt(r), "—" if z is None else f"{z:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| seed | weights (SHA-256 of the arrays) | training seconds |",
        "| ---: | :--- | ---: |",
    ]
    for r in doc["records"]:
        weights = "—" if r.get("weights") is None else f"`{r['weights']}`"
        secs = "—" if r.get("train_seconds") is None else f"{r['train_seconds']:.1f}"
        lines.append(f"| {r['seed']} | {weights} | {secs} |")
    if refs:
        lines.append("")
    for label, ref in refs.items():
        same = ref["bitwise_seeds"]
        verdict = (
            f"seed {', '.join(map(str, same))} reproduces it bitwise (every metric equal)"
            if same
            else f"no seed reproduces it bitwise; the closest, seed {ref['closest_seed']}, is "
            f"within {ref['max_relative_gap']:.1e} of it (relative) on every metric"
        )
        lines.append(f"* {label}: {verdict}.")
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    digits = max(0, 3 - int(math.floor(math.log10(abs(v)))))
    return f"{v:.{min(digits, 6)}f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m explain.seeds", description=__doc__.split("\n")[0]
    )
    parser.add_argument("train", help="the train config file")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument(
        "--seed-field",
        action="append",
        default=None,
        help="a dotted field the seed sets (repeatable; default: seed)",
    )
    parser.add_argument("--explain", default=None, help="an amortised explain config file")
    parser.add_argument("--workdir", type=Path, required=True, help="seed_<s>/ folders go here")
    parser.add_argument("--out", type=Path, default=None, help="writes OUT.json and OUT.md")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="LABEL=REPORT.json[:METHOD]",
        help="a recorded protocol report's row shown beside the spread (METHOD: generator)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="a config override"
    )
    args = parser.parse_args(argv)
    bad = [s for s in args.set if "=" not in s]
    if bad:
        parser.error(f"--set takes FIELD=VALUE, got {bad}")
    study = SeedStudy(
        train=args.train,
        seeds=tuple(args.seeds),
        seed_fields=tuple(args.seed_field or ("seed",)),
        explain=args.explain,
        overrides=tuple(tuple(s.split("=", 1)) for s in args.set),
    )
    records = [run_seed(study, s, args.workdir) for s in study.seeds]
    references = {}
    for item in args.reference:
        label, _, where = item.partition("=")
        path, _, method = where.partition(":")
        if not label or not path:
            parser.error(f"--reference takes LABEL=REPORT.json[:METHOD], got {item!r}")
        references[label] = reference_row(path, method or "generator")
    doc = summarize(study, records, references)
    text = markdown(doc, args.title or f"Seed spread: {Path(args.train).stem}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out.with_suffix(".json"), doc)
        write_text_atomic(args.out.with_suffix(".md"), text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
