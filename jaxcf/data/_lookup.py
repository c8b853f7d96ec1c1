"""Where file-based data sets are found: the project's lookup order, shared by every loader.

An explicit ``data_dir`` is the only place looked at when a caller gives one. Otherwise the
*sources* are tried in order: ``"env"`` (the folder named by ``$JAXCF_DATA_DIR``) and
``"shared"`` (``../shared/data`` beside the checkout, :func:`default_data_dir`); a loader may
add its own (MNIST adds TensorFlow Datasets). A source that lacks the data raises
:class:`SourceUnavailable`, and :func:`first_available` moves on to the next; when none has
it, one ``FileNotFoundError`` lists every source tried and why it failed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DATA_DIR_ENV = "JAXCF_DATA_DIR"
"""Environment variable naming a directory that holds the data sets."""


class SourceUnavailable(Exception):
    """A source does not have the requested data; the message says why."""


def default_data_dir() -> Path:
    """Returns ``../shared/data`` beside the checkout: ``<repo>/../shared/data``.

    The repository root is the folder above the ``jaxcf`` package. The path may not exist
    (e.g. for an installed, non-editable package).
    """
    repo_root = Path(__file__).resolve().parents[2]  # jaxcf/data/_lookup.py
    return repo_root.parent / "shared" / "data"


def from_env(finder: Callable[[str], T], what: str) -> T:
    """``finder($JAXCF_DATA_DIR)``. Unset: unavailable. Set, but ``finder`` raises
    ``FileNotFoundError``: a warning (the user pointed somewhere on purpose), then unavailable."""
    value = os.environ.get(DATA_DIR_ENV, "")
    if not value:
        raise SourceUnavailable(f"${DATA_DIR_ENV} is not set")
    try:
        return finder(value)
    except FileNotFoundError as exc:
        warnings.warn(
            f"${DATA_DIR_ENV}={value} does not hold {what}, trying the next source: {exc}",
            UserWarning,
            stacklevel=5,
        )
        raise SourceUnavailable(f"${DATA_DIR_ENV}={value}: {exc}") from exc


def from_shared(finder: Callable[[Path], T]) -> T:
    """``finder(default_data_dir())``; ``FileNotFoundError``: unavailable."""
    try:
        return finder(default_data_dir())
    except FileNotFoundError as exc:
        raise SourceUnavailable(f"the shared data folder beside the checkout: {exc}") from exc


def check_sources(sources: Sequence[str] | None, known: Sequence[str]) -> tuple[str, ...]:
    """``sources`` (``None``: all of ``known``, in order) validated against ``known``.

    Raises:
      ValueError: a string instead of a sequence, an empty sequence or an unknown source.
    """
    if sources is None:
        return tuple(known)
    if isinstance(sources, str) or not sources:
        raise ValueError(f"sources must be a non-empty sequence of {tuple(known)}, got {sources!r}")
    for source in sources:
        if source not in known:
            raise ValueError(f"unknown source {source!r}; expected one of {tuple(known)}")
    return tuple(sources)


def first_available(what: str, attempts: Mapping[str, Callable[[], Any]], hint: str) -> Any:
    """The result of the first attempt that does not raise :class:`SourceUnavailable`.

    Args:
      what: the data, for the message (e.g. ``"ecg5000 test"``).
      attempts: source name -> a callable trying it, in the order to try them.
      hint: the message's last line, telling the user what to do.

    Raises:
      FileNotFoundError: every source was unavailable (each listed with its reason).
    """
    reasons: list[str] = []
    last_exc: Exception | None = None
    for source, attempt in attempts.items():
        try:
            return attempt()
        except SourceUnavailable as exc:
            reasons.append(f"  - {source}: {exc}")
            last_exc = exc
    raise FileNotFoundError(
        f"could not load {what} from any source; tried, in order:\n"
        + "\n".join(reasons)
        + f"\n{hint}"
    ) from last_exc
