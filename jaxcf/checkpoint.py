"""Model checkpoints: Orbax (V1 API) for arrays, plus a small ``metadata.json``.

Layout of a checkpoint directory::

    <directory>/
      metadata.json      user metadata + versions, timestamp, structural fingerprints
      model/             Orbax pytree: the model's NNX state as a pure dict
      extra_<name>/      Orbax pytree: one per entry of ``extras`` (stored as NumPy arrays)
      ...                Orbax's own bookkeeping files

The model state is everything :func:`flax.nnx.state` returns except RNG state (``nnx.RngState``):
parameters, batch statistics and any other variables. RNG streams are left as the freshly
built model has them, so a model built with differently named or seeded ``nnx.Rngs`` still loads.

Loading never unpickles anything: arrays are restored into an abstract state (shapes, dtypes and
shardings) taken from a freshly constructed model, after the structure stored in
``metadata.json`` has been checked against it so that a mismatch gets a readable error.

Saving is atomic for a single process: everything is written into a hidden temporary sibling
directory that is renamed into place at the end, so an interrupted save never leaves a partial
checkpoint at ``directory``. With ``overwrite=True`` the old checkpoint is moved aside and the new
one renamed in (two renames; on an error in between the old one is put back).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from orbax.checkpoint import v1 as ocp

__all__ = [
    "CheckpointMismatchError",
    "load",
    "load_extras",
    "read_metadata",
    "save",
]

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
_MODEL = "model"
_EXTRA_PREFIX = "extra_"
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
# Keys that save() adds to the metadata; user metadata may not use them.
RESERVED_KEYS = ("format", "created", "versions", "state_fingerprint", "extras")
_MAX_LISTED = 10
_STATE_FILTER = nnx.Not(nnx.RngState)

Fingerprint = list[tuple[str, tuple[int, ...], str]]


class CheckpointMismatchError(ValueError):
    """The checkpoint's stored structure (paths, shapes, dtypes) does not match the target."""


@dataclasses.dataclass(frozen=True)
class _NumpySpec:
    """Abstract leaf without a sharding: tells Orbax to restore a NumPy array."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def like(cls, x: Any) -> _NumpySpec:
        return cls(tuple(int(d) for d in x.shape), np.dtype(x.dtype))


# ----------------------------------------------------------------------------- public API


def save(
    directory: str | os.PathLike[str],
    model: nnx.Module,
    *,
    metadata: Mapping[str, Any],
    extras: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves ``model``'s NNX state, optional ``extras`` and ``metadata`` to ``directory``.

    Args:
      directory: checkpoint directory to create (its parent is created if needed).
      model: the module to save. Parameters, batch statistics and other variables are saved;
        RNG state is not.
      metadata: JSON-serialisable dict, e.g. ``{"model": <architecture config>, "dataset": ...,
        "accuracy": ...}``. Store the architecture config under ``"model"``: it is quoted when a
        later load does not match. The keys in ``RESERVED_KEYS`` are added automatically.
      extras: named pytrees of arrays saved beside the model (e.g. a fitted density as a dict of
        NumPy arrays). Names may use letters, digits, ``_`` and ``-``. Leaves are stored as NumPy
        arrays, so float64 survives whether or not ``jax_enable_x64`` is set.
      overwrite: replace an existing checkpoint at ``directory``; otherwise refuse.

    Returns:
      ``directory`` as a :class:`~pathlib.Path`.

    Raises:
      FileExistsError: ``directory`` exists and ``overwrite`` is False.
      ValueError / TypeError: bad names, reserved or non-JSON metadata, non-array extras.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module, got {type(model).__name__}")
    if jax.process_count() > 1:
        raise NotImplementedError("jaxcf.checkpoint.save supports a single JAX process only")
    directory = Path(directory).absolute()  # Orbax refuses relative paths
    if (directory.exists() or directory.is_symlink()) and not overwrite:
        raise FileExistsError(
            f"checkpoint directory {directory} already exists; pass overwrite=True to replace it"
        )

    # Validate and build everything before touching the disk.
    state = _model_state(model)
    extras_np = _extras_to_numpy(extras or {})
    meta_text = _metadata_json(metadata, state, extras_np)
    checkpointables: dict[str, Any] = {_MODEL: state}
    checkpointables.update({_EXTRA_PREFIX + name: tree for name, tree in extras_np.items()})

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        new = staging / "new"
        ocp.save_checkpointables(new, checkpointables)
        _write_text(new / METADATA_FILE, meta_text)
        _swap_into_place(new, directory, staging / "old", overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def load(directory: str | os.PathLike[str], model: nnx.Module) -> dict[str, Any]:
    """Loads a checkpoint into ``model`` in place and returns its metadata.

    Args:
      directory: a directory written by :func:`save`.
      model: a freshly constructed module of the checkpoint's architecture (e.g. built from
        ``read_metadata(directory)["model"]``). Its values are overwritten; its shardings and
        dtypes define the abstract state Orbax restores into.

    Raises:
      FileNotFoundError: ``directory`` or its ``metadata.json`` is missing.
      CheckpointMismatchError: the stored state structure differs from ``model``'s.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module, got {type(model).__name__}")
    directory = Path(directory).absolute()  # Orbax refuses relative paths
    meta = read_metadata(directory)
    graph_state = nnx.state(model, _STATE_FILTER)
    pure = nnx.to_pure_dict(graph_state)
    _check_fingerprint(
        meta.get("state_fingerprint"), _fingerprint(pure), directory, what="model", meta=meta
    )
    abstract = jax.tree.map(_abstract_like_model, pure)
    restored = ocp.load_checkpointables(directory, {_MODEL: abstract})[_MODEL]
    nnx.replace_by_pure_dict(graph_state, restored)
    nnx.update(model, graph_state)
    return meta


def load_extras(directory: str | os.PathLike[str], name: str, abstract_or_like: Any) -> Any:
    """Loads the extra ``name`` saved with :func:`save`, as a pytree of NumPy arrays.

    Args:
      directory: a directory written by :func:`save`.
      name: the key the extra had in ``save(..., extras=...)``.
      abstract_or_like: a pytree with the stored structure whose leaves have ``shape`` and
        ``dtype`` (``jax.ShapeDtypeStruct``, NumPy or JAX arrays). Only shapes and dtypes are used.

    Raises:
      FileNotFoundError: ``directory`` or its ``metadata.json`` is missing.
      ValueError: no extra called ``name`` was saved.
      CheckpointMismatchError: the stored structure differs from ``abstract_or_like``.
    """
    directory = Path(directory).absolute()  # Orbax refuses relative paths
    meta = read_metadata(directory)
    stored = meta.get("extras", {})
    if name not in stored:
        raise ValueError(
            f"checkpoint {directory} has no extra {name!r}; it has {sorted(stored) or 'none'}"
        )
    abstract = jax.tree.map(_NumpySpec.like, abstract_or_like)
    _check_fingerprint(
        stored[name], _fingerprint(abstract), directory, what=f"extra {name!r}", meta=None
    )
    return ocp.load_checkpointables(directory, {_EXTRA_PREFIX + name: abstract})[
        _EXTRA_PREFIX + name
    ]


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Returns the metadata dict stored in ``directory/metadata.json``.

    Raises:
      FileNotFoundError: ``directory`` or its ``metadata.json`` is missing.
    """
    directory = Path(directory).absolute()  # Orbax refuses relative paths
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory}")
    path = directory / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint metadata not found: {path}")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


# ----------------------------------------------------------------------------- helpers


def _model_state(model: nnx.Module) -> dict[str, Any]:
    """The module's non-RNG NNX state as a nested dict of arrays."""
    return nnx.to_pure_dict(nnx.state(model, _STATE_FILTER))


def _extras_to_numpy(extras: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, tree in extras.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"extra names may use letters, digits, '_' and '-', got {name!r}")
        leaves = jax.tree.leaves(tree)
        if not leaves:
            raise ValueError(f"extra {name!r} has no arrays")
        for leaf in leaves:
            if not isinstance(leaf, np.ndarray | jax.Array | np.generic | int | float | bool):
                raise TypeError(f"extra {name!r} has a leaf of type {type(leaf).__name__}")
        out[name] = jax.tree.map(np.asarray, tree)
    return out


def _key_str(key: Any) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _fingerprint(tree: Any) -> Fingerprint:
    """Sorted ``(path, shape, dtype)`` of every leaf; paths are dotted, e.g. ``"bn.mean"``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    entries = []
    for path, leaf in flat:
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        shape = tuple(int(d) for d in np.shape(leaf))
        entries.append((".".join(_key_str(k) for k in path), shape, str(dtype)))
    return sorted(entries)


def _versions() -> dict[str, str]:
    import jaxcf  # late import: jaxcf/__init__ may import this module

    versions = {"jaxcf": jaxcf.__version__, "python": platform.python_version()}
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _metadata_json(
    metadata: Mapping[str, Any], state: dict[str, Any], extras: dict[str, Any]
) -> str:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    clash = sorted(set(metadata) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved (added automatically by save)")
    meta = dict(metadata)
    meta["format"] = FORMAT_VERSION
    meta["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    meta["versions"] = _versions()
    meta["extras"] = {name: _fingerprint(tree) for name, tree in extras.items()}
    meta["state_fingerprint"] = _fingerprint(state)
    try:
        return _dumps(meta)
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON-serialisable (no NaN/inf): {e}") from e


def _dumps(meta: dict[str, Any]) -> str:
    """``json.dumps(meta, indent=2)``, but with each fingerprint entry on one line."""
    compact: dict[str, str] = {}

    def one_line(fingerprint: Fingerprint) -> list[str]:
        tokens = [f"\0fingerprint-entry-{len(compact) + i}" for i in range(len(fingerprint))]
        compact.update(zip(tokens, map(json.dumps, fingerprint), strict=True))
        return tokens

    meta = dict(meta, state_fingerprint=one_line(meta["state_fingerprint"]))
    meta["extras"] = {name: one_line(fp) for name, fp in meta["extras"].items()}
    text = json.dumps(meta, indent=2, allow_nan=False)
    for token, entry in compact.items():
        text = text.replace(json.dumps(token), entry)
    return text


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _swap_into_place(new: Path, directory: Path, old: Path, *, overwrite: bool) -> None:
    """Renames ``new`` to ``directory``, first moving an existing one to ``old`` if allowed."""
    if directory.exists() or directory.is_symlink():
        if not overwrite:  # appeared while we were writing
            raise FileExistsError(f"checkpoint directory {directory} already exists")
        os.replace(directory, old)
        try:
            os.replace(new, directory)
        except BaseException:
            os.replace(old, directory)
            raise
    else:
        os.replace(new, directory)


def _abstract_like_model(x: Any) -> Any:
    if not hasattr(x, "shape"):  # a Python scalar is its own abstract value for Orbax
        return x
    sharding = getattr(x, "sharding", None)
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _fmt(entry: tuple[tuple[int, ...], str]) -> str:
    return f"{entry[0]} {entry[1]}"


def _check_fingerprint(
    stored: Any, actual: Fingerprint, directory: Path, *, what: str, meta: dict[str, Any] | None
) -> None:
    """Raises CheckpointMismatchError listing the first differing entries."""
    if stored is None:
        raise CheckpointMismatchError(
            f"{directory}/{METADATA_FILE} has no structural fingerprint; "
            "was it written by jaxcf.checkpoint.save?"
        )
    ckpt = {p: (tuple(s), d) for p, s, d in stored}
    mine = {p: (tuple(s), d) for p, s, d in actual}
    problems = []
    for path in sorted(ckpt.keys() | mine.keys()):
        if path not in mine:
            problems.append(f"{path}: in checkpoint {_fmt(ckpt[path])}, missing from {what}")
        elif path not in ckpt:
            problems.append(f"{path}: missing from checkpoint, {what} {_fmt(mine[path])}")
        elif ckpt[path] != mine[path]:
            problems.append(f"{path}: checkpoint {_fmt(ckpt[path])}, {what} {_fmt(mine[path])}")
    if not problems:
        return
    lines = [f"checkpoint {directory} does not match the {what} ({len(problems)} differences):"]
    lines += ["  " + p for p in problems[:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
        lines.append(f"  ... and {len(problems) - _MAX_LISTED} more")
    if meta is not None:
        if "model" in meta:
            config = json.dumps(meta["model"], sort_keys=True)
            lines.append(
                f"The checkpoint was saved from the architecture config {config}; "
                "build the model from read_metadata(directory)['model']."
            )
        else:
            lines.append("The checkpoint's metadata stores no architecture config under 'model'.")
    raise CheckpointMismatchError("\n".join(lines))
