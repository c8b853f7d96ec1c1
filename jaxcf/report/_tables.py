"""Tables of per-method summaries (plain text and markdown), optionally beside a paper's
published numbers, matched by method name ignoring case and punctuation."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_DASH = "\u2014"  # shown where a number is not known
_PM = "\u00b1"


def published_for(method: str, published: Mapping[str, Any] | None) -> Any:
    """The entry of ``published`` for ``method``, names matched ignoring case and punctuation
    (``"DeDUCE"``, ``"deduce"`` and ``"De-DUCE"`` are one method), or None."""
    if not published:
        return None
    key = _normalise(method)
    for name, value in published.items():
        if _normalise(name) == key:
            return value
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


# --------------------------------------------------------------------------------------------
# Counterfactual grid


# --------------------------------------------------------------------------------------------
# L0 plot


# --------------------------------------------------------------------------------------------
# Tables

_COLUMNS = (  # (header, summary key, format, scale)
    ("L0", "l0", ".2f", 1.0),
    ("L1", "l1", ".2f", 1.0),
    ("failure %", "failure_rate", ".2f", 100.0),
    ("iterations", "n_iter", ".1f", 1.0),
    ("realism NLL", "nll", ".1f", 1.0),
)
_PUBLISHED_COLUMNS = (("L0", "l0", "g", 1.0), ("L1", "l1", "g", 1.0))
_PUBLISHED_COLUMNS += (("failure %", "failure_rate", ".2f", 100.0),)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _cell(summary: Mapping[str, Any], key: str, fmt: str, scale: float = 1.0) -> str:
    mean = _num(summary.get(key))
    if mean is None:
        return _DASH
    text = format(mean * scale, fmt)
    std = _num(summary.get(f"{key}_std_over_sets"))
    if std is not None and (summary.get("n_sets") or 0) > 1:  # one set has no spread
        text += f" {_PM} {format(std * scale, fmt)}"
    return text


def _pub_cell(pub: Mapping[str, Any] | None, key: str, fmt: str, scale: float = 1.0) -> str:
    value = _num(pub.get(key)) if isinstance(pub, Mapping) else None
    return _DASH if value is None else format(value * scale, fmt)


def _table(
    summaries: Mapping[str, Mapping[str, Any]],
    published: Mapping[str, Any] | None,
    published_label: str,
) -> list[tuple[str, ...]]:
    """Header and one row per method; summary columns without any value are left out."""
    present = [
        c for c in _COLUMNS if any(_num(s.get(c[1])) is not None for s in summaries.values())
    ]
    header = ["method", "n", *(c[0] for c in present)]
    if published:
        header += [f"{published_label} {c[0]}" for c in _PUBLISHED_COLUMNS]
    rows = [tuple(header)]
    for method, s in summaries.items():
        n = s.get("n")
        row = [str(method), _DASH if n is None else str(int(n))]
        row += [_cell(s, key, fmt, scale) for _, key, fmt, scale in present]
        if published:
            pub = published_for(method, published)
            row += [_pub_cell(pub, key, fmt, scale) for _, key, fmt, scale in _PUBLISHED_COLUMNS]
        rows.append(tuple(row))
    return rows


def format_table(
    summaries: Mapping[str, Mapping[str, Any]],
    published: Mapping[str, Any] | None = None,
    *,
    published_label: str = "paper",
) -> str:
    """A fixed-width text table of per-method summaries, optionally beside published numbers.

    Args:
      summaries: method name -> output of :func:`jaxcf.evaluation.metrics.summarize`.
      published: optional method name -> dict with ``l0``, ``l1``, ``failure_rate`` (a
        protocol's published results, e.g. :data:`explain.deduce.PUBLISHED`); adds
        columns headed ``"<published_label> L0"``, ...
      published_label: the prefix of the published columns.

    Distances, iterations and NLL are means over successful rows; ``a ± s`` shows the standard
    deviation over sets when the summary has one; a dash marks an unknown value. Metrics no
    method has (NLL without a density, say) get no column.
    """
    rows = _table(summaries, published, published_label)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])]) + "\n"


def markdown_table(
    summaries: Mapping[str, Mapping[str, Any]],
    published: Mapping[str, Any] | None = None,
    *,
    published_label: str = "paper",
) -> str:
    """The table of :func:`format_table` in GitHub-flavoured markdown."""
    header, *rows = _table(summaries, published, published_label)
    out = ["| " + " | ".join(header) + " |", "| :--- |" + " ---: |" * (len(header) - 1)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"
