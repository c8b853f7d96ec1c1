"""How a chunk's arrays sit on the mesh when several processes run one job: :class:`Share`, the
positions of a chunk that this process's devices hold (each process reads and writes only
those rows, and builds the chunk's global arrays from them alone), and :func:`replicate` /
:func:`replicated_value`, values copied to every device of the mesh and read back.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def replicated_value(array: jax.Array) -> np.ndarray:
    """A replicated array's value, read from this process's own copy."""
    return np.asarray(array.addressable_shards[0].data)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies a pytree of host or single-device values to every device of ``mesh`` (in every
    process: each process supplies its own, identical, copy)."""
    sharding = NamedSharding(mesh, P())

    def put(leaf):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            return leaf
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


class Share:
    """The positions ``[a, b)`` of a chunk that this process's devices hold, and how to build
    the chunk's global arrays from this process's rows alone."""

    def __init__(self, mesh: Mesh, chunk: int):
        self.sharding = NamedSharding(mesh, P("data"))
        index = self.sharding.addressable_devices_indices_map((chunk,))
        spans = sorted((i[0].start or 0, i[0].stop or chunk) for i in index.values())
        if any(x[1] != y[0] for x, y in zip(spans, spans[1:], strict=False)):
            raise ValueError(
                "each process's devices must be neighbours in the mesh (data_mesh() orders them "
                "so); this mesh interleaves processes"
            )
        self.a, self.b, self.chunk = spans[0][0], spans[-1][1], chunk

    def put(self, local: np.ndarray) -> jax.Array:
        """The global ``[chunk, ...]`` array whose positions ``[a, b)`` are ``local``."""
        shape = (self.chunk, *local.shape[1:])

        def block(index):
            rows = index[0]
            return local[(rows.start or 0) - self.a : (rows.stop or self.chunk) - self.a]

        return jax.make_array_from_callback(shape, self.sharding, block)

    def fetch(self, tree: Any, lead: bool) -> Any:
        """This process's rows ``[a, b)`` of a chunk's results (``lead``: leaves shaped
        ``[devices, rows per device, ...]``, as pools give them)."""

        def leaf(array):
            parts = []
            for shard in array.addressable_shards:
                data = np.asarray(shard.data)
                start = shard.index[0].start or 0
                if lead:
                    start, data = start * data.shape[1], data.reshape(-1, *data.shape[2:])
                parts.append((start, data))
            parts.sort(key=lambda p: p[0])
            return np.concatenate([d for _, d in parts])

        return jax.tree.map(leaf, tree)
