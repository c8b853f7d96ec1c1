"""Checkpoints of one or several named modules: Orbax (V1 API) for arrays, plus ``metadata.json``.

A checkpoint holds named *entries*, each either an NNX object (an ``nnx.Module``, an
``nnx.Optimizer`` or any other ``nnx.Pytree``) or a plain pytree of arrays, for example a
generator, its discriminator, an EMA copy of the generator and the two optimiser states::

    checkpoint.save(directory, {"generator": g, "discriminator": d, "generator_ema": g_ema,
                                "opt_generator": opt_g, "opt_discriminator": opt_d},
                    metadata={"configs": {"generator": g_config, "discriminator": d_config}})
    checkpoint.load(directory, {"generator": g, "generator_ema": g_ema})  # a subset, in place

The single-model forms ``save(directory, model, ...)`` and ``load(directory, model)`` are the
case of one entry named ``"model"``.

Layout of a checkpoint directory::

    <directory>/
      metadata.json      user metadata + format, versions, timestamp, structural fingerprints
      <name>/            Orbax pytree per entry (``model/`` for the single-model form)
      extra_<name>/      Orbax pytree per entry of ``extras`` (stored as NumPy arrays)
      ...                Orbax's own bookkeeping files

An NNX entry stores everything :func:`flax.nnx.state` returns except RNG state
(``nnx.RngState``): parameters, batch statistics, optimiser moments and step counts, and any other
variables. RNG streams are left as the freshly built object has them, so a model built with
differently named or seeded ``nnx.Rngs`` still loads.

Metadata. ``metadata.json`` holds the caller's JSON metadata plus the keys in
:data:`RESERVED_KEYS`, which :func:`save` adds: ``format``, ``created``, ``versions``,
``entries`` (``{name: {"kind": "module" | "tree", "fingerprint": [[path, shape, dtype], ...]}}``)
and ``extras`` (``{name: fingerprint}``). The architecture config of entry ``name`` belongs in
``metadata["configs"][name]``; for the entry ``"model"`` a config at ``metadata["model"]`` (the
classifier checkpoints' convention) works too. A load that does not match quotes that config.

Loading never unpickles anything: arrays are restored into an abstract state (shapes, dtypes and
shardings) taken from the freshly constructed targets, after the structure stored in
``metadata.json`` has been checked against them, so that a mismatch raises
:class:`CheckpointMismatchError` listing each differing entry, path, shape and dtype. Checkpoints
of format 1 (a single ``model`` entry, written before several entries were supported) still load.

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
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx
from orbax.checkpoint import v1 as ocp

from jaxcf._version import __version__

__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointMismatchError",
    "LoadResult",
    "entry_names",
    "load",
    "load_extras",
    "read_metadata",
    "save",
]

METADATA_FILE = "metadata.json"
CHECKPOINT_DIR = "checkpoint"
"""The folder of a training workdir that holds its final checkpoint."""
FORMAT_VERSION = 2
"""Format written by :func:`save`. Format 1: one ``model`` entry, fingerprint at
``metadata["state_fingerprint"]``."""
SINGLE = "model"
"""Entry name of the single-model forms of :func:`save` and :func:`load`."""
_EXTRA_PREFIX = "extra_"
# Must start with a letter or digit: Orbax keeps bookkeeping files such as _CHECKPOINT_METADATA
# beside the entries' folders.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
# Keys that save() adds to the metadata; user metadata may not use them.
RESERVED_KEYS = ("format", "created", "versions", "entries", "extras", "state_fingerprint")
CONFIGS_KEY = "configs"
"""Metadata key of the per-entry architecture configs, ``{name: JSON config}``."""
_MAX_LISTED = 10
_STATE_FILTER = nnx.Not(nnx.RngState)

Fingerprint = list[tuple[str, tuple[int, ...], str]]


class CheckpointMismatchError(ValueError):
    """The checkpoint's stored structure (entries, paths, shapes, dtypes) does not match the
    targets it is loaded into."""


class LoadResult(NamedTuple):
    """What :func:`load` returns for a mapping of targets.

    Attributes:
      metadata: the checkpoint's metadata (as :func:`read_metadata`).
      values: one value per requested name: the NNX object itself (loaded in place) or, for a
        pytree target, the restored pytree.
    """

    metadata: dict[str, Any]
    values: dict[str, Any]


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
    entries: nnx.Pytree | Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves named modules and pytrees, optional ``extras`` and ``metadata`` to ``directory``.

    Args:
      directory: checkpoint directory to create (its parent is created if needed).
      entries: ``{name: value}`` where a value is an NNX object (module, optimizer, ...; its
        non-RNG state is saved) or a pytree of arrays (saved as given: JAX arrays stay JAX
        arrays). A single NNX object is saved as the entry ``"model"``. Names may use letters,
        digits, ``_`` and ``-``, start with a letter or digit and not with ``extra_``.
      metadata: JSON-serialisable dict, e.g. ``{"configs": {"generator": <config>}, "dataset":
        ...}``. Architecture configs go under ``"configs"`` (keyed by entry name) or, for the
        single-model form, under ``"model"``: they are quoted when a later load does not match.
        The keys in :data:`RESERVED_KEYS` are added automatically.
      extras: named pytrees of arrays saved beside the entries and read back with
        :func:`load_extras` (e.g. a fitted density). Leaves are stored as NumPy arrays, so
        float64 survives whether or not ``jax_enable_x64`` is set.
      overwrite: replace an existing checkpoint at ``directory``; otherwise refuse.

    Returns:
      ``directory`` as a :class:`~pathlib.Path`.

    Raises:
      FileExistsError: ``directory`` exists and ``overwrite`` is False.
      ValueError / TypeError: bad names, reserved or non-JSON metadata, configs of unknown
        entries, entries or extras without arrays or with non-array leaves.
    """
    if jax.process_count() > 1:
        raise NotImplementedError("jaxcf.models.checkpoint.save supports a single JAX process only")
    directory = Path(directory).absolute()  # Orbax refuses relative paths
    if (directory.exists() or directory.is_symlink()) and not overwrite:
        raise FileExistsError(
            f"checkpoint directory {directory} already exists; pass overwrite=True to replace it"
        )

    # Validate and build everything before touching the disk.
    trees, kinds = _entries_to_trees(_as_entries(entries, "save"))
    extras_np = _extras_to_numpy(extras or {})
    meta_text = _metadata_json({} if metadata is None else metadata, trees, kinds, extras_np)
    checkpointables: dict[str, Any] = dict(trees)
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


def load(
    directory: str | os.PathLike[str], targets: nnx.Pytree | Mapping[str, Any]
) -> dict[str, Any] | LoadResult:
    """Loads entries of a checkpoint into freshly built targets.

    Args:
      directory: a directory written by :func:`save`.
      targets: ``{name: target}`` for the entries to load, any subset of those saved. An NNX
        target (e.g. built from ``read_metadata(directory)["configs"][name]``) is overwritten
        in place; its shardings and dtypes define what Orbax restores into. A pytree target
        gives the structure, shapes and dtypes (``jax.ShapeDtypeStruct``, NumPy or JAX arrays):
        a NumPy leaf is restored as a NumPy array, any other as a JAX array (on its sharding
        if it has one, else on the default device). A single NNX object loads the entry
        ``"model"``.

    Returns:
      For a single NNX object, the checkpoint's metadata dict. For a mapping, a
      :class:`LoadResult` ``(metadata, values)``.

    Raises:
      FileNotFoundError: ``directory`` or its ``metadata.json`` is missing.
      CheckpointMismatchError: a requested entry was not saved, or a stored structure differs
        from its target's (the message lists every differing entry and path).
    """
    single = isinstance(targets, nnx.Pytree)
    targets = _as_entries(targets, "load")
    directory = Path(directory).absolute()  # Orbax refuses relative paths
    meta = read_metadata(directory)
    stored = _stored_entries(meta, directory)
    missing = sorted(set(targets) - set(stored))
    if missing:
        raise CheckpointMismatchError(
            f"checkpoint {directory} has no entr{'y' if len(missing) == 1 else 'ies'} "
            f"{', '.join(map(repr, missing))}; it has {sorted(stored)}"
        )

    abstract: dict[str, Any] = {}
    graph_states: dict[str, nnx.State] = {}
    problems: dict[str, list[str]] = {}
    for name, target in targets.items():
        if isinstance(target, nnx.Pytree):
            graph_states[name] = nnx.state(target, _STATE_FILTER)
            abstract[name] = jax.tree.map(
                _abstract_like_model, nnx.to_pure_dict(graph_states[name])
            )
        else:
            abstract[name] = jax.tree.map(_abstract_like_tree, _plain(target))
        found = _diff(stored[name]["fingerprint"], _fingerprint(abstract[name]), name)
        if found:
            problems[name] = found
    if problems:
        _raise_mismatch(directory, problems, meta)

    restored = ocp.load_checkpointables(directory, abstract)
    values: dict[str, Any] = {}
    for name, target in targets.items():
        if name in graph_states:
            nnx.replace_by_pure_dict(graph_states[name], restored[name])
            nnx.update(target, graph_states[name])
            values[name] = target
        else:
            values[name] = restored[name]
    return meta if single else LoadResult(meta, values)


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
    what = f"extra {name!r}"
    found = _diff(stored[name], _fingerprint(abstract), what)
    if found:
        _raise_mismatch(directory, {what: found}, None)
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


def entry_names(directory: str | os.PathLike[str]) -> tuple[str, ...]:
    """The names of the entries (not extras) stored in a checkpoint, sorted."""
    directory = Path(directory).absolute()
    return tuple(sorted(_stored_entries(read_metadata(directory), directory)))


# ----------------------------------------------------------------------------- helpers


def _as_entries(entries: Any, verb: str) -> dict[str, Any]:
    """``{name: value}`` from a single NNX object (named ``"model"``) or a mapping."""
    if isinstance(entries, nnx.Pytree):
        return {SINGLE: entries}
    if not isinstance(entries, Mapping) or isinstance(entries, nnx.State):
        raise TypeError(
            f"{verb} takes an NNX module or a dict {{name: module or pytree}}, "
            f"got {type(entries).__name__}"
        )
    if not entries:
        raise ValueError(f"{verb} needs at least one entry")
    for name in entries:
        _check_name(name, "entry")
        if name.startswith(_EXTRA_PREFIX):
            raise ValueError(f"entry names may not start with {_EXTRA_PREFIX!r}, got {name!r}")
    return dict(entries)


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{what} names may use letters, digits, '_' and '-' and must start with a letter or "
            f"digit, got {name!r}"
        )


def _plain(tree: Any) -> Any:
    """A pytree target or value, with an ``nnx.State`` turned into a nested dict."""
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


def _entries_to_trees(entries: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The pytree each entry saves and its kind (``"module"`` or ``"tree"``)."""
    trees, kinds = {}, {}
    for name, value in entries.items():
        if isinstance(value, nnx.Pytree):
            tree, kinds[name] = nnx.to_pure_dict(nnx.state(value, _STATE_FILTER)), "module"
        else:
            tree, kinds[name] = _plain(value), "tree"
        _check_leaves(tree, f"entry {name!r}")
        trees[name] = tree
    return trees, kinds


def _check_leaves(tree: Any, what: str) -> None:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{what} has no arrays")
    for leaf in leaves:
        if not isinstance(leaf, np.ndarray | jax.Array | np.generic | int | float | bool):
            raise TypeError(f"{what} has a leaf of type {type(leaf).__name__}")
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise TypeError(f"{what} has a PRNG key leaf; store jax.random.key_data(key)")


def _extras_to_numpy(extras: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, tree in extras.items():
        _check_name(name, "extra")
        _check_leaves(tree, f"extra {name!r}")
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


def _stored_entries(meta: dict[str, Any], directory: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"kind", "fingerprint"}}`` of a checkpoint, whatever its format."""
    version = meta.get("format")
    if version == 1:
        if "state_fingerprint" not in meta:
            raise CheckpointMismatchError(
                f"{directory}/{METADATA_FILE} has no structural fingerprint; "
                "was it written by jaxcf.models.checkpoint.save?"
            )
        return {SINGLE: {"kind": "module", "fingerprint": meta["state_fingerprint"]}}
    if version == FORMAT_VERSION and isinstance(meta.get("entries"), dict):
        return meta["entries"]
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{directory} has checkpoint format {version}; this jaxcf reads formats up to "
            f"{FORMAT_VERSION} (upgrade jaxcf)"
        )
    raise CheckpointMismatchError(
        f"{directory}/{METADATA_FILE} has no structural fingerprint; "
        "was it written by jaxcf.models.checkpoint.save?"
    )


def _versions() -> dict[str, str]:
    versions = {"jaxcf": __version__, "python": platform.python_version()}
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _metadata_json(
    metadata: Mapping[str, Any],
    trees: dict[str, Any],
    kinds: dict[str, str],
    extras: dict[str, Any],
) -> str:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    clash = sorted(set(metadata) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved (added automatically by save)")
    configs = metadata.get(CONFIGS_KEY, {})
    if not isinstance(configs, Mapping):
        raise TypeError(f"metadata[{CONFIGS_KEY!r}] must be a dict {{entry name: config}}")
    unknown = sorted(set(configs) - set(trees))
    if unknown:
        raise ValueError(
            f"metadata[{CONFIGS_KEY!r}] names {unknown}, which are not entries ({sorted(trees)})"
        )
    meta = dict(metadata)
    meta["format"] = FORMAT_VERSION
    meta["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    meta["versions"] = _versions()
    meta["entries"] = {
        name: {"kind": kinds[name], "fingerprint": _fingerprint(tree)}
        for name, tree in trees.items()
    }
    meta["extras"] = {name: _fingerprint(tree) for name, tree in extras.items()}
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

    meta = dict(meta)
    meta["entries"] = {
        name: dict(entry, fingerprint=one_line(entry["fingerprint"]))
        for name, entry in meta["entries"].items()
    }
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


def _default_sharding() -> jax.sharding.Sharding:
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _abstract_like_model(x: Any) -> Any:
    """A module leaf's abstract value: its own sharding, else the default device."""
    if not hasattr(x, "shape"):  # a Python scalar is its own abstract value for Orbax
        return x
    sharding = getattr(x, "sharding", None)
    if sharding is None:
        sharding = _default_sharding()
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _abstract_like_tree(x: Any) -> Any:
    """A pytree target's leaf: NumPy stays NumPy, anything else becomes a JAX array."""
    if isinstance(x, np.ndarray | np.generic):
        return _NumpySpec.like(x)
    return _abstract_like_model(x)


def _fmt(entry: tuple[tuple[int, ...], str]) -> str:
    return f"{entry[0]} {entry[1]}"


def _diff(stored: Fingerprint, actual: Fingerprint, what: str) -> list[str]:
    """One line per path whose shape or dtype differs, or that only one side has."""
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
    return problems


def _stored_config(meta: dict[str, Any], name: str) -> tuple[Any, str] | None:
    """The architecture config saved for entry ``name`` and where it is in the metadata."""
    configs = meta.get(CONFIGS_KEY)
    if isinstance(configs, dict) and name in configs:
        return configs[name], f"read_metadata(directory)[{CONFIGS_KEY!r}][{name!r}]"
    if name == SINGLE and SINGLE in meta:
        return meta[SINGLE], f"read_metadata(directory)[{SINGLE!r}]"
    return None


def _raise_mismatch(
    directory: Path, problems: dict[str, list[str]], meta: dict[str, Any] | None
) -> None:
    """Raises CheckpointMismatchError listing the first differing paths of every entry."""
    total = sum(map(len, problems.values()))
    lines = [f"checkpoint {directory} does not match what it is loaded into ({total} differences):"]
    for name, found in problems.items():
        if len(problems) > 1 or name != SINGLE:
            lines.append(f"entry {name!r}:")
        lines += ["  " + p for p in found[:_MAX_LISTED]]
        if len(found) > _MAX_LISTED:
            lines.append(f"  ... and {len(found) - _MAX_LISTED} more")
        if meta is None:
            continue
        stored = _stored_config(meta, name)
        if stored is None:
            lines.append(f"The checkpoint's metadata stores no architecture config for {name!r}.")
        else:
            config, where = stored
            lines.append(
                f"The checkpoint's {name!r} was saved from the architecture config "
                f"{json.dumps(config, sort_keys=True)}; build it from {where}."
            )
    raise CheckpointMismatchError("\n".join(lines))
