"""What identifies a run and its rows: :func:`fingerprint`, the hash of everything that determines
a run's results (checked against the manifest of an ``out_dir`` and across processes), and the
row keys: row ``k`` of query ``q`` gets the key ``fold_in(fold_in(key, q), k)``, so with
per-query explainers (the protocol of :mod:`jaxcf.core`) a counterfactual depends neither on the
chunk size, its position, the padding nor the number of devices (:func:`query_keys` reproduces
them outside the runner).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.core import plain_leaf


def fingerprint(explainer: Any, arrays: Mapping[str, Any], extra: Any) -> str:
    """Hash of everything that determines a run's results: the explainer's structure, static
    configuration and arrays (PRNG keys by their bits), the inputs and the run's settings."""
    h = hashlib.sha256()
    leaves, treedef = jax.tree.flatten(explainer)
    # Static parts may hold functions, whose repr carries a per-process address.
    h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", str(treedef)).encode())
    for leaf in leaves:
        h.update(np.ascontiguousarray(np.asarray(plain_leaf(leaf))).tobytes())
    for name in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def query_keys(seed: int, n: int, cf: int = 0) -> jax.Array:
    """``[n]`` the keys a run with ``seed`` gives counterfactual ``cf`` of queries ``0 .. n-1``
    (to reproduce a row outside the runner, e.g. a baseline from the same noise)."""
    query = jnp.arange(n, dtype=jnp.uint32)
    return row_keys(jax.random.key(seed), query, jnp.full(n, cf, jnp.uint32))


def row_keys(
    run_key: jax.Array, query: jax.Array, cf: jax.Array, attempt: int | None = None
) -> jax.Array:
    """Row key ``fold_in(fold_in(run_key, query), cf)``, per row; folded once more with
    ``attempt`` for an attempt of a :class:`~jaxcf.core.Retry` (as ``Retry`` folds)."""
    fold = jax.vmap(jax.random.fold_in)
    keys = fold(fold(jnp.broadcast_to(run_key, query.shape), query), cf)
    if attempt is None:
        return keys
    return jax.vmap(jax.random.fold_in, (0, None))(keys, attempt)
