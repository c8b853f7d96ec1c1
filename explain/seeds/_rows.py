"""How a protocol report's row becomes a seed's flat ``name -> float`` metrics."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
# Metrics of each method's row of a DeDUCE protocol report (its ``summaries``).
PROTOCOL_METRICS: tuple[str, ...] = ("failure_rate", "l0", "l1", "l2", "n_iter", "nll")


def protocol_rows(doc: Mapping[str, Any], method: str | None = None) -> dict[str, float]:
    """``<method>.<metric>`` of a DeDUCE protocol report's rows (every method, or one)."""
    rows = doc["summaries"]
    if method is not None:
        if method not in rows:
            raise KeyError(f"no method {method!r} in the report; it has {sorted(rows)}")
        rows = {method: rows[method]}
    return {
        f"{label}.{k}": float(row[k])
        for label, row in rows.items()
        for k in PROTOCOL_METRICS
        if row.get(k) is not None
    }


def flatten(row: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, float]:
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


def reference_row(path: str | Path, method: str = "generator") -> dict[str, float]:
    """The ``method`` row of a recorded protocol report, flattened like a seed's metrics: an
    amortised protocol's ``report.json`` or a DeDUCE protocol's ``metrics.json``."""
    doc = json.loads(Path(path).read_text())
    if "summaries" in doc and "methods" not in doc:
        return protocol_rows(doc, method)
    row = doc["methods"][method]
    return flatten({k: row.get(k) for k in GENERATOR_METRICS}, doc["class_names"])
