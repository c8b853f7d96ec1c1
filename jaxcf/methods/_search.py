"""Batched iterative search: the loop shared by every gradient-based counterfactual method.

A method describes one iteration for a whole batch as an :class:`IterativeSearch`; the drivers
here turn it into XLA programs:

* :func:`solve` — one ``lax.while_loop`` over a batch, with a per-query ``done`` mask: finished
  queries stop changing, and the loop ends when every query has finished.
* the **slot pool** (:func:`solve_pool`, or step by step with :func:`pool_start`,
  :func:`pool_advance` and :func:`pool_compact`) — the same per-query computation, but a batch of
  ``slots`` is refilled with waiting queries as soon as some finish (checked every ``segment``
  iterations), so the device never computes on finished queries while others are still waiting.
  Each query's result is the same as under :func:`solve`.

:class:`SearchExplainer` wraps a search into an explainer (:mod:`jaxcf.core`).

Semantics (shared by both, and by the published DeDUCE/JSMA code): at each iteration a query's
score is read *before* that iteration's update; a query whose target is reached stops, with
``n_iter`` the number of updates it received. A query gets at most ``max_iter`` updates; its
target is checked once more after the last one, so that the reported ``score`` always belongs to
the returned ``x_cf`` (the published code skips that final check and counts such queries as
failures; it changes nothing else). A search may also end a query early on its own terms
(its ``given_up`` mask, optional): that query stops unsuccessful, like one out of updates.

A search whose classifier computes in bfloat16 (:func:`jaxcf.core.with_precision`) takes its
steps with that classifier but lets the float32 one decide (its ``recheck``, optional): a query
the step reports at its target stops only if the float32 network, run on the candidate, puts it
there too; otherwise it receives its update and keeps searching. The float32 forward runs only
on steps where some query claims its target, and on a gathered block of those queries when they
are few (:func:`on_rows`); with a float32 classifier nothing is rechecked.

A search's ``init`` runs once per query: the pool initialises every query of its list up front,
in batches of ``slots`` (``lax.map``), and refilling a slot only copies a prepared state in. An
expensive ``init`` (an encoder pass, a DDIM inversion) therefore costs one evaluation per query,
at the price of holding ``N`` initial states in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.core import CFResult, checks, decision_classifier, explain_jit, tree_where
from jaxcf.core import targets as targets_lib

Array = jax.Array
PyTree = Any


class IterativeSearch(Protocol):
    """One iteration of a batched search. Implementations are pytrees (params are leaves).

    ``max_iter`` is a static attribute.
    """

    max_iter: int

    def init(self, x: Array, target: Array, key: Array) -> PyTree:
        """Per-query search state for queries ``x [B, ...]``, targets and keys ``[B]``."""
        ...

    def step(self, state: PyTree, target: Array) -> tuple[Array, Array, PyTree]:
        """``(score [B], reached [B] bool)`` at the current iterate, and the updated state."""
        ...

    def current(self, state: PyTree) -> Array:
        """The current iterate ``[B, ...]``."""
        ...

    def extras(self, state: PyTree) -> dict[str, Array]:
        """Method-specific per-query outputs."""
        ...

    # Optional: ``given_up(state) -> [B] bool`` marks queries whose search has ended without
    # reaching the target before ``max_iter`` updates (a schedule that ran out); they stop
    # unsuccessful. Searches without it run until success or ``max_iter``.
    #
    # Optional: ``recheck(state, target, claimed [B] bool, score [B]) -> (reached, score)``
    # confirms the queries whose step reported them at their target (``claimed``) with another
    # judge (SearchBase: the float32 classifier behind a bfloat16 one); the score of a
    # rechecked query is the judge's.


class SearchBase(struct.PyTreeNode):
    """Plumbing shared by the input-space searches. Subclasses declare ``classifier``,
    ``config`` (static; with ``max_iter``, ``threshold`` and ``tolerance``), the target kinds they
    accept as ``target_kinds``, and their own fields; the iterate is stored as ``state.x``."""

    target_kinds = targets_lib.KINDS

    @property
    def max_iter(self) -> int:
        return self.config.max_iter

    @property
    def domain(self) -> checks.Box | None:
        """The box the iterates are clipped to (config, else classifier, else unbounded)."""
        return checks.domain_of(self.classifier, getattr(self.config, "domain", None))

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        """Validates queries and targets against the classifier (traces, never compiles)."""
        return checks.check_inputs(
            self.classifier, x, target, domain=self.domain, kinds=self.target_kinds
        )

    def score(self, outputs: Array, target: Array) -> tuple[Array, Array]:
        """``(score, reached)`` of model outputs for the targets, with the config's criteria."""
        cfg = self.config
        return targets_lib.score_outputs(
            outputs, target, threshold=cfg.threshold, tolerance=getattr(cfg, "tolerance", 0.1)
        )

    def clip(self, x: Array) -> Array:
        box = self.domain
        return x if box is None else jnp.clip(x, box[0], box[1])

    def confirm(
        self,
        candidate: Callable[[PyTree], Array],
        rows: PyTree,
        target: Array,
        claimed: Array,
        score: Array,
    ) -> tuple[Array, Array]:
        """``(claimed & agreed, score)``: whether the deciding classifier
        (:func:`jaxcf.core.decision_classifier`) also puts ``candidate(rows)`` at the target,
        where ``claimed [B]`` holds, with its score there (``score [B]`` elsewhere).

        ``rows`` is a pytree with a leading batch axis ``[B]`` and ``candidate`` maps (a
        gathered subset of) it to the inputs judged. When the search's classifier decides
        itself (any classifier but a bfloat16 wrapper), ``(claimed, score)`` come back as they
        are: the float32 path traces exactly as without this method.
        """
        mine = getattr(self, "classifier", None)
        judge = decision_classifier(mine)
        if judge is mine:
            return claimed, score

        def verdict(r: PyTree, t: Array) -> tuple[Array, Array]:
            s32, ok = self.score(judge.logits(candidate(r)), t)
            return ok, s32.astype(score.dtype)

        ok, score = on_rows(verdict, claimed, (rows, target), (jnp.zeros_like(claimed), score))
        return claimed & ok, score

    def recheck(
        self, state: PyTree, target: Array, claimed: Array, score: Array
    ) -> tuple[Array, Array]:
        """The claimed queries whose current iterate the deciding classifier confirms, and the
        scores (see :meth:`confirm`)."""
        return self.confirm(self.current, state, target, claimed, score)

    def current(self, state: PyTree) -> Array:
        return state.x

    def extras(self, state: PyTree) -> dict[str, Array]:
        return {}


def on_rows(fn: Callable[..., PyTree], mask: Array, args: PyTree, fill: PyTree) -> PyTree:
    """``fn(*args)`` computed only on the rows where ``mask [B]`` holds, merged into ``fill``.

    ``args`` are pytrees whose leaves have a leading batch axis ``[B]``; ``fn`` maps rows of
    them to a pytree of ``[n]`` arrays shaped like ``fill`` (``[B]`` leaves), which keeps its
    values on the other rows. Jittable; which of three branches runs is decided on device:
    nothing when no row is masked, ``fn`` on a gathered block of ``ceil(B / 8)`` rows when the
    masked rows fit in it, else ``fn`` on the whole batch. So a check that few queries need per
    step costs a fraction of a batch's forward pass, and none on steps that need none.
    """
    b = mask.shape[0]
    block = -(-b // 8)
    n = jnp.sum(mask, dtype=jnp.int32)

    def skip(args: PyTree) -> PyTree:
        return fill

    def every(args: PyTree) -> PyTree:
        out = fn(*args)
        return jax.tree.map(lambda f, o: jnp.where(mask, o, f), fill, out)

    def some(args: PyTree) -> PyTree:
        idx = jnp.nonzero(mask, size=block, fill_value=0)[0]
        out = fn(*jax.tree.map(lambda a: a[idx], args))
        dest = jnp.where(jnp.arange(block) < n, idx, b)  # b: the padding rows write nowhere
        return jax.tree.map(lambda f, o: f.at[dest].set(o, mode="drop"), fill, out)

    if block >= b:
        return jax.lax.cond(n > 0, every, skip, args)
    branch = jnp.where(n == 0, 0, jnp.where(n <= block, 1, 2))
    return jax.lax.switch(branch, (skip, some, every), args)


def default_keys(n: int) -> Array:
    """Keys for deterministic searches called without any (their results ignore them)."""
    return jax.random.split(jax.random.key(0), n)


class _Slots(NamedTuple):
    state: PyTree
    it: Array  # [B] int32, updates applied so far
    finished: Array  # [B] bool
    success: Array  # [B] bool
    score: Array  # [B] float32, score at the last check


def _fresh(state: PyTree, valid: Array) -> _Slots:
    """Slots around prepared states; ``valid=False`` marks padding, which stays finished."""
    b = valid.shape[0]
    return _Slots(
        state=state,
        it=jnp.zeros(b, jnp.int32),
        finished=~valid,
        success=jnp.zeros(b, bool),
        score=jnp.zeros(b, jnp.float32),
    )


def _advance(search: IterativeSearch, s: _Slots, target: Array, live: Array) -> _Slots:
    """One iteration for every unfinished slot; ``live`` masks slots that hold a query."""
    score, reached_now, stepped = search.step(s.state, target)
    active = live & ~s.finished
    reached = active & reached_now
    recheck = getattr(search, "recheck", None)
    if recheck is not None:  # a bfloat16 search's verdicts, confirmed in float32
        reached, score = recheck(s.state, target, reached, score)
    out = s.it >= search.max_iter
    given_up = getattr(search, "given_up", None)
    if given_up is not None:
        out = out | given_up(s.state)
    exhausted = active & ~reached & out
    update = active & ~reached & ~out
    return _Slots(
        state=tree_where(update, stepped, s.state),
        it=s.it + update.astype(jnp.int32),
        finished=s.finished | reached | exhausted,
        success=s.success | reached,
        score=jnp.where(active, score.astype(jnp.float32), s.score),
    )


def _result(search: IterativeSearch, s: _Slots) -> CFResult:
    return CFResult(
        x_cf=search.current(s.state),
        success=s.success,
        n_iter=s.it,
        score=s.score,
        extras=search.extras(s.state),
    )


def solve(
    search: IterativeSearch,
    x: Array,
    target: Array,
    key: Array | None = None,
    *,
    valid: Array | None = None,
) -> CFResult:
    """Runs ``search`` on the batch ``x [B, ...]`` with per-query targets and keys ``[B]``.

    Pure and jittable; sharding follows the inputs' sharding. ``valid [B]`` (optional) marks
    padding queries (``False``), which are never computed on and come back unsuccessful.
    """
    n = x.shape[0]
    key = default_keys(n) if key is None else key
    valid = jnp.ones(n, bool) if valid is None else valid
    live = jnp.ones(n, bool)
    s = jax.lax.while_loop(
        lambda s: jnp.any(~s.finished),
        lambda s: _advance(search, s, target, live),
        _fresh(search.init(x, target, key), valid),
    )
    return _result(search, s)


solve_jit = jax.jit(solve)
""":func:`solve` compiled once per search type, config and shapes (shared by the methods)."""

solve_jit_eigen = explain_jit(solve)
""":func:`solve_jit` for the pixel searches: XLA's own convolutions on a CPU
(:func:`jaxcf.core.compiler_options_for`)."""


# ----------------------------------------------------------------------------- slot pool


class Pool(NamedTuple):
    """State of a slot pool over ``N`` queries with ``S`` slots (a pytree; lives on device).

    ``prepared`` holds every query's initial search state, ``out`` every query's result as it
    finishes; ``done``/``solved`` count finished and successful queries (for progress bars).
    """

    slots: _Slots
    qid: Array  # [S] int32, query held by each slot; N (one past the end) for an empty slot
    next_q: Array  # scalar int32, first query not yet loaded
    prepared: PyTree  # [N, ...] initial states
    target: Array  # [N, ...]
    valid: Array  # [N] bool
    out: CFResult  # [N, ...] results, filled as queries finish
    steps: Array  # scalar int32, query-iterations computed so far (live or idle)
    done: Array  # scalar int32, queries finished (padding not counted)
    solved: Array  # scalar int32, queries finished successfully


def stage_sizes(slots: int, n: int, taper: tuple[int, ...] | None) -> tuple[int, ...]:
    """Batch sizes of the pool's stages: ``min(slots, n)`` then the smaller ``taper`` sizes
    (default: halvings down to ``slots / 32``)."""
    slots = min(slots, n)
    if taper is None:
        taper = tuple(slots >> k for k in range(1, 6) if slots >> k >= 1)
    sizes = (slots, *(t for t in taper if t < slots))
    if list(sizes) != sorted(set(sizes), reverse=True) or min(sizes) < 1:
        raise ValueError(f"taper sizes must decrease below slots={slots}, got {taper}")
    return sizes


def _prepare(search: IterativeSearch, x: Array, target: Array, key: Array, block: int) -> PyTree:
    """Every query's initial state, computed in batches of ``block`` (each query once)."""
    n = x.shape[0]
    nb = -(-n // block)
    idx = jnp.minimum(jnp.arange(nb * block), n - 1).reshape(nb, block)
    states = jax.lax.map(lambda i: search.init(x[i], target[i], key[i]), idx)
    return jax.tree.map(lambda a: a.reshape(nb * block, *a.shape[2:])[:n], states)


def pool_start(
    search: IterativeSearch,
    x: Array,
    target: Array,
    key: Array | None = None,
    *,
    slots: int,
    valid: Array | None = None,
) -> Pool:
    """A pool over the queries ``x [N, ...]`` with ``min(slots, N)`` slots holding the first
    queries (static ``slots``). Jittable."""
    n = x.shape[0]
    slots = min(slots, n)
    key = default_keys(n) if key is None else key
    valid = jnp.ones(n, bool) if valid is None else valid
    prepared = _prepare(search, x, target, key, slots)
    first = jax.tree.map(lambda a: a[:slots], prepared)
    one = jax.eval_shape(lambda: _result(search, _fresh(first, valid[:slots])))
    return Pool(
        slots=_fresh(first, valid[:slots]),
        qid=jnp.arange(slots, dtype=jnp.int32),
        next_q=jnp.asarray(slots, jnp.int32),
        prepared=prepared,
        target=target,
        valid=valid,
        out=jax.tree.map(lambda a: jnp.zeros((n, *a.shape[1:]), a.dtype), one),
        steps=jnp.asarray(0, jnp.int32),
        done=jnp.asarray(0, jnp.int32),
        solved=jnp.asarray(0, jnp.int32),
    )


def pool_running(pool: Pool, next_size: int) -> Array:
    """Whether the pool's current stage has work left: some query is live, and either some are
    still waiting or at least ``next_size`` are live (else it is time to shrink the batch)."""
    n = pool.valid.shape[0]
    n_live = jnp.sum(pool.qid < n)
    return (n_live > 0) & ((pool.next_q < n) | (n_live >= next_size))


def _segment(search: IterativeSearch, pool: Pool, segment: int) -> Pool:
    """``segment`` iterations on the slots, then finished slots hand over and reload."""
    n = pool.valid.shape[0]
    live = pool.qid < n
    q = jnp.minimum(pool.qid, n - 1)
    s = jax.lax.fori_loop(
        0, segment, lambda _, s: _advance(search, s, pool.target[q], live), pool.slots
    )
    done = live & s.finished
    solved = jnp.sum(done & s.success, dtype=jnp.int32)
    # Hand finished queries' results to the output (rows of other slots are dropped).
    rows = jnp.where(done, pool.qid, n)
    out = jax.tree.map(lambda o, r: o.at[rows].set(r, mode="drop"), pool.out, _result(search, s))
    # Load the next queries into the finished slots, in index order.
    rank = jnp.cumsum(done) - 1
    new_qid = jnp.where(done, jnp.minimum(pool.next_q + rank, n), pool.qid).astype(jnp.int32)
    nq = jnp.minimum(new_qid, n - 1)
    loaded = jax.tree.map(lambda a: a[nq], pool.prepared)
    s = tree_where(done, _fresh(loaded, pool.valid[nq] & (new_qid < n)), s)
    return pool._replace(
        slots=s,
        qid=new_qid,
        next_q=jnp.minimum(pool.next_q + jnp.sum(done, dtype=jnp.int32), n),
        out=out,
        steps=pool.steps + segment * new_qid.shape[0],
        done=pool.done + jnp.sum(done & pool.valid[q], dtype=jnp.int32),
        solved=pool.solved + solved,
    )


def pool_advance(
    search: IterativeSearch,
    pool: Pool,
    *,
    segment: int,
    next_size: int,
    max_segments: Array | int | None = None,
) -> Pool:
    """Runs segments of the current stage until it has no work left (see :func:`pool_running`)
    or ``max_segments`` (a traced int: changing it does not recompile) have run. Jittable; the
    host can call it repeatedly to see progress between calls."""
    if max_segments is None:
        cond = lambda c: pool_running(c[1], next_size)  # noqa: E731
    else:
        cond = lambda c: (c[0] < max_segments) & pool_running(c[1], next_size)  # noqa: E731
    _, pool = jax.lax.while_loop(
        cond,
        lambda c: (c[0] + 1, _segment(search, c[1], segment)),
        (jnp.asarray(0, jnp.int32), pool),
    )
    return pool


def pool_compact(pool: Pool, size: int) -> Pool:
    """Moves the live slots (fewer than ``size``) into a batch of ``size`` slots (static)."""
    n = pool.valid.shape[0]
    keep = jnp.argsort(pool.qid >= n, stable=True)[:size]
    return pool._replace(slots=jax.tree.map(lambda a: a[keep], pool.slots), qid=pool.qid[keep])


def solve_pool(
    search: IterativeSearch,
    x: Array,
    target: Array,
    key: Array | None = None,
    *,
    slots: int,
    segment: int = 4,
    taper: tuple[int, ...] | None = None,
    valid: Array | None = None,
    with_stats: bool = False,
) -> CFResult | tuple[CFResult, dict[str, Array]]:
    """Runs ``search`` on ``N`` queries through ``slots`` refillable batch slots, in one program.

    Every ``segment`` iterations the finished slots hand their results to the output and load
    the next waiting queries (in index order). Once no query is waiting, the slots drain; the
    last stragglers would keep a mostly empty batch busy, so the batch *tapers*: when fewer
    live queries remain than the next size in ``taper``, they are compacted into a batch of
    that size. Per-query results equal those of :func:`solve`.

    Args:
      search: the method.
      x: ``[N, ...]`` queries.
      target: ``[N, ...]`` targets (any kind).
      key: ``[N]`` per-query PRNG keys (default: fixed keys, for deterministic searches).
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
    sizes = stage_sizes(slots, x.shape[0], taper)
    pool = pool_start(search, x, target, key, slots=sizes[0], valid=valid)
    for k, size in enumerate(sizes):
        if k:
            pool = pool_compact(pool, size)
        nxt = sizes[k + 1] if k + 1 < len(sizes) else 0
        pool = pool_advance(search, pool, segment=segment, next_size=nxt)
    if with_stats:
        return pool.out, {"slot_iterations": pool.steps}
    return pool.out


class SearchExplainer(struct.PyTreeNode):
    """An :class:`IterativeSearch` as an explainer (:mod:`jaxcf.core`).

    Called on a batch, it runs :func:`solve` (``slots=None``) or :func:`solve_pool`. The runner
    drives searches through its own slot pool and uses only ``search``.

    Attributes:
      search: the search (a pytree).
      slots, segment, taper: the schedule when called directly (static).
    """

    search: Any
    slots: int | None = struct.field(pytree_node=False, default=None)
    segment: int = struct.field(pytree_node=False, default=4)
    taper: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)

    @property
    def config(self) -> Any:
        return self.search.config

    def with_config(self, config: Any) -> SearchExplainer:
        """The same explainer around the search with another config (so that
        :class:`~jaxcf.core.Retry` can schedule a search's parameter; flax's ``replace``
        cannot be overridden for this)."""
        return self.replace(search=self.search.replace(config=config))

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        return self.search.check(x, target)

    def __call__(self, x: Array, target: Array, key: Array) -> CFResult:
        if self.slots is None:
            return solve(self.search, x, target, key)
        return solve_pool(
            self.search, x, target, key, slots=self.slots, segment=self.segment, taper=self.taper
        )
