"""Value checks for frozen config dataclasses, called from their ``__post_init__``, so that an
impossible configuration fails where it is written rather than deep inside a compiled loop."""

from __future__ import annotations

import math
from typing import Any


def _name(config: Any, field: str) -> str:
    return f"{type(config).__name__}.{field}"


def positive(config: Any, *fields: str) -> None:
    """Each field is a finite number > 0."""
    for f in fields:
        v = getattr(config, f)
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{_name(config, f)} must be a positive number, got {v!r}")


def non_negative(config: Any, *fields: str) -> None:
    """Each field is a finite number >= 0."""
    for f in fields:
        v = getattr(config, f)
        if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{_name(config, f)} must be a number >= 0, got {v!r}")


def at_least(config: Any, minimum: int, *fields: str) -> None:
    """Each field is an int >= ``minimum``."""
    for f in fields:
        v = getattr(config, f)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{_name(config, f)} must be an integer >= {minimum}, got {v!r}")


def probability(config: Any, *fields: str) -> None:
    """Each field lies in (0, 1]."""
    for f in fields:
        v = getattr(config, f)
        if not (isinstance(v, int | float) and 0.0 < v <= 1.0):
            raise ValueError(f"{_name(config, f)} must lie in (0, 1], got {v!r}")


def unit_interval(config: Any, *fields: str) -> None:
    """Each field lies in [0, 1)."""
    for f in fields:
        v = getattr(config, f)
        if not (isinstance(v, int | float) and 0.0 <= v < 1.0):
            raise ValueError(f"{_name(config, f)} must lie in [0, 1), got {v!r}")


def one_of(config: Any, field: str, choices: tuple) -> None:
    v = getattr(config, field)
    if v not in choices:
        raise ValueError(f"{_name(config, field)} must be one of {choices}, got {v!r}")


def box(config: Any, field: str) -> None:
    """The field is None or a pair ``(lo, hi)`` of finite numbers with ``lo < hi``."""
    v = getattr(config, field)
    if v is None:
        return
    ok = isinstance(v, tuple) and len(v) == 2 and all(isinstance(b, int | float) for b in v)
    if not ok or not (math.isfinite(v[0]) and math.isfinite(v[1]) and v[0] < v[1]):
        raise ValueError(f"{_name(config, field)} must be None or (lo, hi) with lo < hi, got {v!r}")
