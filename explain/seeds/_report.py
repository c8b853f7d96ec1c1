"""A seed study's summary: the spread over seeds, recorded rows beside it, a markdown page."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    from explain.seeds._study import SeedStudy


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
    how = ""
    if doc["explain"]:
        # Records from before protocols could be evaluated name nothing: generators.
        what = doc["records"][0].get("evaluated", "the generator alone")
        how = f", each evaluated by `{doc['explain']}` ({what})"
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
