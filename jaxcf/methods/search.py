"""Batched iterative search: the loop shared by every gradient-based counterfactual method.

A method describes one iteration for a whole batch as an :class:`IterativeSearch`; the drivers
here turn it into a single XLA program:

* :func:`solve` — one ``lax.while_loop`` over a batch, with a per-query ``done`` mask: finished
  queries stop changing, and the loop ends when every query has finished.
* :func:`solve_pool` — the same per-query computation, but a batch of ``slots`` is refilled with
  waiting queries as soon as some finish (checked every ``segment`` iterations), so the device
  never computes on finished queries while others are still waiting. Each query's result is the
  same as under :func:`solve`.

Semantics (shared by both, and by the published DeDUCE/JSMA code): at each iteration a query's
target probability is read *before* that iteration's update; a query whose probability has
reached ``threshold`` stops, with ``n_iter`` the number of updates it received. A query gets at
most ``max_iter`` updates; its probability is checked once more after the last one, so that the
reported ``target_prob`` always belongs to the returned ``x_cf`` (the published code skips that
final check and counts such queries as failures; it changes nothing else).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.methods import checks

Array = jax.Array
PyTree = Any


class CFResult(NamedTuple):
    """The record every method returns; all fields have the batch as leading axis.

    Attributes:
      x_cf: ``[B, ...]`` counterfactuals (the last iterate for failed queries, never zeros).
      success: ``[B]`` bool, target probability reached the threshold.
      n_iter: ``[B]`` int32, updates applied (the iteration at which the query stopped).
      target_prob: ``[B]`` float32, classifier probability of the target class at ``x_cf``.
      extras: dict of method-specific ``[B, ...]`` arrays.
    """

    x_cf: Array
    success: Array
    n_iter: Array
    target_prob: Array
    extras: dict[str, Array]


class IterativeSearch(Protocol):
    """One iteration of a batched search. Implementations are pytrees (params are leaves).

    ``max_iter`` and ``threshold`` are static attributes.
    """

    max_iter: int
    threshold: float

    def init(self, x: Array, target: Array) -> PyTree:
        """Per-query search state for queries ``x [B, ...]`` and targets ``[B]``."""
        ...

    def step(self, state: PyTree, target: Array) -> tuple[Array, PyTree]:
        """Returns the target probability ``[B]`` at the current iterate and the updated state."""
        ...

    def current(self, state: PyTree) -> Array:
        """The current iterate ``[B, ...]``."""
        ...

    def extras(self, state: PyTree) -> dict[str, Array]:
        """Method-specific per-query outputs."""
        ...


class SearchBase(struct.PyTreeNode):
    """Plumbing shared by the image searches: ``max_iter``/``threshold`` from ``self.config``,
    the query check, and an iterate stored as ``state.x``. Subclasses declare ``classifier``,
    ``config`` (static) and their own fields."""

    @property
    def max_iter(self) -> int:
        return self.config.max_iter

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        """Validates queries and targets against the classifier (traces, never compiles)."""
        x, target = checks.check_queries(x, target)
        checks.check_targets(target, checks.classifier_io(self.classifier, tuple(x.shape[1:])))
        return x, target

    def current(self, state: PyTree) -> Array:
        return state.x

    def extras(self, state: PyTree) -> dict[str, Array]:
        return {}


def tree_where(mask: Array, a: PyTree, b: PyTree) -> PyTree:
    """Per-query select between two pytrees whose leaves have the batch as leading axis."""

    def pick(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(pick, a, b)


class _Slots(NamedTuple):
    state: PyTree
    it: Array  # [B] int32, updates applied so far
    finished: Array  # [B] bool
    success: Array  # [B] bool
    prob: Array  # [B] float32, target probability at the last check


def _fresh(search: IterativeSearch, x: Array, target: Array, valid: Array | None = None) -> _Slots:
    """Initial slots; ``valid=False`` marks padding, which starts (and stays) finished."""
    b = x.shape[0]
    return _Slots(
        state=search.init(x, target),
        it=jnp.zeros(b, jnp.int32),
        finished=jnp.zeros(b, bool) if valid is None else ~valid,
        success=jnp.zeros(b, bool),
        prob=jnp.zeros(b, jnp.float32),
    )


def _advance(search: IterativeSearch, s: _Slots, target: Array, live: Array) -> _Slots:
    """One iteration for every unfinished slot; ``live`` masks slots that hold a query."""
    prob, stepped = search.step(s.state, target)
    active = live & ~s.finished
    reached = active & (prob >= search.threshold)
    update = active & ~reached & (s.it < search.max_iter)
    exhausted = active & ~reached & (s.it >= search.max_iter)
    return _Slots(
        state=tree_where(update, stepped, s.state),
        it=s.it + update.astype(jnp.int32),
        finished=s.finished | reached | exhausted,
        success=s.success | reached,
        prob=jnp.where(active, prob.astype(jnp.float32), s.prob),
    )


def _result(search: IterativeSearch, s: _Slots) -> CFResult:
    return CFResult(
        x_cf=search.current(s.state),
        success=s.success,
        n_iter=s.it,
        target_prob=s.prob,
        extras=search.extras(s.state),
    )


def solve(
    search: IterativeSearch, x: Array, target: Array, *, valid: Array | None = None
) -> CFResult:
    """Runs ``search`` on the batch ``x [B, ...]`` with per-query targets ``[B]``.

    Pure and jittable; sharding follows the inputs' sharding. ``valid [B]`` (optional) marks
    padding queries (``False``), which are never computed on and come back unsuccessful.
    """
    live = jnp.ones(x.shape[0], bool)
    s = jax.lax.while_loop(
        lambda s: jnp.any(~s.finished),
        lambda s: _advance(search, s, target, live),
        _fresh(search, x, target, valid),
    )
    return _result(search, s)


solve_jit = jax.jit(solve)
""":func:`solve` compiled once per search type, config and shapes (shared by the methods)."""


class _Pool(NamedTuple):
    slots: _Slots
    qid: Array  # [S] int32, query held by each slot; n (one past the end) for an empty slot
    next_q: Array  # scalar int32, first query not yet loaded
    out: CFResult  # [N, ...] results, filled as queries finish
    steps: Array  # scalar int32, query-iterations computed so far (live or idle)


def solve_pool(
    search: IterativeSearch,
    x: Array,
    target: Array,
    *,
    slots: int,
    segment: int = 4,
    taper: tuple[int, ...] | None = None,
    valid: Array | None = None,
    with_stats: bool = False,
) -> CFResult | tuple[CFResult, dict[str, Array]]:
    """Runs ``search`` on ``N`` queries through ``slots`` refillable batch slots.

    Every ``segment`` iterations the finished slots hand their results to the output and load
    the next waiting queries (in index order). Once no query is waiting, the slots drain; the
    last stragglers would keep a mostly empty batch busy, so the batch *tapers*: when fewer
    live queries remain than the next size in ``taper``, they are compacted into a batch of
    that size. Per-query results equal those of :func:`solve`.

    Args:
      search: the method.
      x: ``[N, ...]`` queries.
      target: ``[N]`` int32 targets.
      slots: number of queries computed at once (static). Clipped to ``N``.
      segment: iterations between refills (static); 1 wastes the least compute, larger values
        amortise the refill's gather/scatter.
      taper: decreasing smaller batch sizes for the drain (static); default: halvings from
        ``slots // 2`` down to ``slots // 32`` (those of at least 1); ``()`` disables tapering.
      valid: ``[N]`` bool, ``False`` for padding queries (finished as soon as loaded).
      with_stats: also return ``{"slot_iterations": ...}``, the number of query-iterations the
        device computed (batch size x iterations, summed over stages), to measure the compute
        spent on idle slots.
    """
    n = x.shape[0]
    slots = min(slots, n)
    if taper is None:  # halve down to slots / 32
        taper = tuple(slots >> k for k in range(1, 6) if slots >> k >= 1)
    sizes = (slots, *(t for t in taper if t < slots))
    if list(sizes) != sorted(set(sizes), reverse=True):
        raise ValueError(f"taper sizes must decrease below slots={slots}, got {taper}")
    valid = jnp.ones(n, bool) if valid is None else valid

    def load(qid):
        q = jnp.minimum(qid, n - 1)
        return x[q], target[q], valid[q]

    one = jax.eval_shape(lambda: _result(search, _fresh(search, x[:1], target[:1])))
    empty = jax.tree.map(lambda a: jnp.zeros((n, *a.shape[1:]), a.dtype), one)
    pool = _Pool(
        slots=_fresh(search, x[:slots], target[:slots], valid[:slots]),
        qid=jnp.arange(slots, dtype=jnp.int32),
        next_q=jnp.asarray(slots, jnp.int32),
        out=empty,
        steps=jnp.asarray(0, jnp.int32),
    )

    def segment_body(pool: _Pool) -> _Pool:
        live = pool.qid < n
        tgt = target[jnp.minimum(pool.qid, n - 1)]
        s = jax.lax.fori_loop(0, segment, lambda _, s: _advance(search, s, tgt, live), pool.slots)
        done = live & s.finished
        # Hand finished queries' results to the output (rows of other slots are dropped).
        rows = jnp.where(done, pool.qid, n)
        out = jax.tree.map(
            lambda o, r: o.at[rows].set(r, mode="drop"), pool.out, _result(search, s)
        )
        # Load the next queries into the finished slots, in index order.
        rank = jnp.cumsum(done) - 1
        new_qid = jnp.where(done, jnp.minimum(pool.next_q + rank, n), pool.qid).astype(jnp.int32)
        xq, tq, vq = load(new_qid)
        s = tree_where(done, _fresh(search, xq, tq, vq), s)
        next_q = jnp.minimum(pool.next_q + jnp.sum(done, dtype=jnp.int32), n)
        batch = new_qid.shape[0]
        steps = pool.steps + segment * batch
        return _Pool(slots=s, qid=new_qid, next_q=next_q, out=out, steps=steps)

    for k, size in enumerate(sizes):
        if k:  # compact the (fewer than `size`) live slots into a smaller batch
            keep = jnp.argsort(pool.qid >= n, stable=True)[:size]
            pool = pool._replace(
                slots=jax.tree.map(lambda a, keep=keep: a[keep], pool.slots), qid=pool.qid[keep]
            )
        nxt = sizes[k + 1] if k + 1 < len(sizes) else 0

        def cond(p: _Pool, nxt=nxt) -> Array:
            n_live = jnp.sum(p.qid < n)
            return (n_live > 0) & ((p.next_q < n) | (n_live >= nxt))

        pool = jax.lax.while_loop(cond, segment_body, pool)
    if with_stats:
        return pool.out, {"slot_iterations": pool.steps}
    return pool.out
