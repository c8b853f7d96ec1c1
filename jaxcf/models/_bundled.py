"""Content digests of shipped models: a hash of the arrays themselves (not of the files, whose
metadata carry timestamps), written beside a compact copy and checked whenever a
``bundled:<name>`` model is loaded, so a damaged or changed copy is refused and a rebuild from
the same config can be compared bit for bit."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

DIGEST_FILE = "content.sha256"


def content_digest(model: nnx.Module | Mapping[str, nnx.Module], density: Any = None) -> str:
    """SHA-256 of a model's non-RNG state (or of several named models', in name order) and the
    density's arrays, in a fixed order."""
    h = hashlib.sha256()
    named = model.items() if isinstance(model, Mapping) else [("", model)]
    for name, module in sorted(named, key=lambda kv: kv[0]):
        state = nnx.to_pure_dict(nnx.state(module, nnx.Not(nnx.RngState)))
        flat, _ = jax.tree_util.tree_flatten_with_path(state)
        for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"{name}{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}".encode())
            h.update(a.tobytes())
    if density is not None:
        for name, a in sorted(density.to_arrays().items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def verify(
    directory: str | Path, model: nnx.Module | Mapping[str, nnx.Module], density: Any
) -> None:
    """Raises ValueError unless the loaded arrays match the digest stored beside them."""
    path = Path(directory) / DIGEST_FILE
    if not path.is_file():
        return
    want = path.read_text().strip()
    got = content_digest(model, density)
    if got != want:
        raise ValueError(
            f"the model at {directory} does not match its content digest "
            f"({got[:12]} != {want[:12]}): the files are damaged or were changed"
        )
