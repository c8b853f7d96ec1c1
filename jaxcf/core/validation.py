"""Value checks for frozen config dataclasses, called from their ``__post_init__``, so that an
impossible configuration fails where it is written rather than deep inside a compiled loop."""

from __future__ import annotations

import math
from typing import Any


def _name(config: Any, field: str) -> str:
    return f"{type(config).__name__}.{field}"


def _real(v: Any) -> bool:
    """A finite int or float (a bool is not a number here)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def positive(config: Any, *fields: str) -> None:
    """Each field is a finite number > 0."""
    for f in fields:
        v = getattr(config, f)
        if not (_real(v) and v > 0):
            raise ValueError(f"{_name(config, f)} must be a positive number, got {v!r}")


def non_negative(config: Any, *fields: str) -> None:
    """Each field is a finite number >= 0."""
    for f in fields:
        v = getattr(config, f)
        if not (_real(v) and v >= 0):
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
        if not (_real(v) and 0.0 < v <= 1.0):
            raise ValueError(f"{_name(config, f)} must lie in (0, 1], got {v!r}")


def unit_interval(config: Any, *fields: str) -> None:
    """Each field lies in [0, 1)."""
    for f in fields:
        v = getattr(config, f)
        if not (_real(v) and 0.0 <= v < 1.0):
            raise ValueError(f"{_name(config, f)} must lie in [0, 1), got {v!r}")


def non_negative_entries(config: Any, field: str) -> None:
    """The field is a sequence of finite numbers >= 0."""
    v = getattr(config, field)
    if not all(_real(e) and e >= 0 for e in v):
        raise ValueError(f"{_name(config, field)} must hold numbers >= 0, got {v!r}")


def schedule(config: Any, field: str = "schedule") -> None:
    """The field is a sequence of finite numbers > 0 (a retry schedule); a list is stored as a
    tuple, so that the config stays hashable."""
    v = getattr(config, field)
    if isinstance(v, str) or not isinstance(v, tuple | list):
        raise ValueError(f"{_name(config, field)} must be a tuple of numbers > 0, got {v!r}")
    object.__setattr__(config, field, tuple(v))
    if not all(_real(e) and e > 0 for e in v):
        raise ValueError(f"{_name(config, field)} must hold numbers > 0, got {v!r}")


def one_of(config: Any, field: str, choices: tuple) -> None:
    v = getattr(config, field)
    if v not in choices:
        raise ValueError(f"{_name(config, field)} must be one of {choices}, got {v!r}")


def box(config: Any, field: str) -> None:
    """The field is None or a pair ``(lo, hi)`` of finite numbers with ``lo < hi``."""
    v = getattr(config, field)
    if v is None:
        return
    ok = isinstance(v, tuple) and len(v) == 2 and all(_real(b) for b in v)
    if not ok or not v[0] < v[1]:
        raise ValueError(f"{_name(config, field)} must be None or (lo, hi) with lo < hi, got {v!r}")
