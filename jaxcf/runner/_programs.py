"""The runner's jitted programs, each ``shard_map``-ped over the 1-D mesh (every device explains
its own rows with no communication): a one-pass explainer's chunk, a search's chunk solved as
one batch, and the slot pools' ``start`` / ``advance`` / ``compact`` steps. They are built once
per mesh and schedule and cached, so a second run with the same shapes compiles nothing
(:func:`program_cache_size` counts what was compiled).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxcf.methods import pool_advance, pool_compact, pool_running, pool_start, solve
from jaxcf.runner._keys import row_keys


# Pool programs give every leaf of the pool a leading device axis (one pool per device),
# sharded over "data".
def _lead(tree):
    return jax.tree.map(lambda a: a[None], tree)


def _unlead(tree):
    return jax.tree.map(lambda a: a[0], tree)


_PROGRAMS: dict[tuple, Any] = {}


def _cached(fn):
    """Memoises a program builder on its (hashable) arguments, in :data:`_PROGRAMS`."""

    @functools.wraps(fn)
    def wrapper(*args):
        key = (fn.__name__, *args)
        if key not in _PROGRAMS:
            _PROGRAMS[key] = fn(*args)
        return _PROGRAMS[key]

    return wrapper


# Inputs of every program: (explainer or search, run key) replicated, then the chunk's rows
# (x, target, query, cf, valid) split over "data".
_IN_SPECS = (P(), P(), P("data"), P("data"), P("data"), P("data"), P("data"))


@_cached
def one_pass_program(mesh: Mesh, options: tuple = ()):
    def local(explainer, run_key, x, target, query, cf, valid):
        return explainer(x, target, row_keys(run_key, query, cf))

    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=_IN_SPECS, out_specs=P("data"), check_vma=False),
        compiler_options=dict(options),
    )


@_cached
def solve_program(mesh: Mesh, attempt: int | None, options: tuple = ()):
    def local(search, run_key, x, target, query, cf, valid):
        return solve(search, x, target, row_keys(run_key, query, cf, attempt), valid=valid)

    return jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=_IN_SPECS, out_specs=P("data"), check_vma=False),
        compiler_options=dict(options),
    )


@_cached
def pool_programs(
    mesh: Mesh, sizes: tuple[int, ...], segment: int, attempt: int | None, options: tuple = ()
):
    """``start``, and per stage ``advance`` / ``compact`` jitted over the mesh (``attempt``: the
    :class:`~jaxcf.core.Retry` attempt the keys are folded with, or None; ``options``: the
    compiler options as sorted items, :func:`jaxcf.core.compiler_options_for` the search).
    ``advance`` and ``compact`` also return the pools' status summed over all devices
    (replicated, so that every process reads the same numbers and takes the same next step)."""
    spec = P("data")

    def sharded(fn, in_specs, out_specs=spec, donate=()):
        return jax.jit(
            jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False),
            donate_argnums=donate,
            compiler_options=dict(options),
        )

    def start(search, run_key, x, target, query, cf, valid):
        keys = row_keys(run_key, query, cf, attempt)
        return _lead(pool_start(search, x, target, keys, slots=sizes[0], valid=valid))

    def status(pool, nxt):
        counts = jnp.stack(
            [pool.done, pool.solved, pool_running(pool, nxt).astype(jnp.int32)]
        ).astype(jnp.int32)
        return jax.lax.psum(counts, "data")

    advances, compacts = [], []
    for k in range(len(sizes)):
        nxt = sizes[k + 1] if k + 1 < len(sizes) else 0

        def advance(search, pool, max_segments, nxt=nxt):
            pool = pool_advance(
                search, _unlead(pool), segment=segment, next_size=nxt, max_segments=max_segments
            )
            return _lead(pool), status(pool, nxt)

        def compact(pool, size=sizes[k], nxt=nxt):
            pool = pool_compact(_unlead(pool), size)
            return _lead(pool), status(pool, nxt)

        out = (spec, P())
        advances.append(_quiet(sharded(advance, (P(), spec, P()), out, donate=(1,))))
        compacts.append(_quiet(sharded(compact, (spec,), out, donate=(0,))))
    return (sharded(start, _IN_SPECS), *advances, *compacts)


def _quiet(fn):
    """``fn`` without XLA's note that some donated slot buffers could not be reused: the large
    per-query arrays (prepared states, results) are; the slots' are small."""

    @functools.wraps(fn)
    def wrapper(*args):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
            return fn(*args)

    wrapper._cache_size = fn._cache_size
    return wrapper


def program_cache_size() -> int:
    """Number of compiled runner programs (for tests: a second run must compile none)."""
    total = 0
    for value in _PROGRAMS.values():
        for fn in value if isinstance(value, tuple) else (value,):
            total += fn._cache_size()
    return total
