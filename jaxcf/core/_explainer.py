"""The explainer protocol every method keeps, the record it returns, and the retry combinator.

An **explainer** is a pytree (its arrays are leaves, its configuration static) offering

* ``check(x, target) -> (x, target)``: validates a batch at the public boundary and returns it
  as JAX arrays; raises a clear ``ValueError``/``TypeError`` on bad input and never compiles;
* ``__call__(x, target, key) -> CFResult``: pure and jittable; ``x`` is ``[B, ...]``, ``target``
  a class index ``[B]``, a class distribution ``[B, C]`` or a regression value ``[B]`` (see
  :mod:`jaxcf.core.targets`), ``key`` a ``[B]`` array of PRNG keys, one per query. A query's result
  depends only on its own input, target and key, never on its batch-mates: that is what lets the
  runner chunk, pad and shard a data set without changing any counterfactual.

Iterative searches become explainers through :class:`jaxcf.methods.SearchExplainer`; one-pass
methods (FGSM, generators) implement ``__call__`` directly. :class:`Retry` turns any explainer
into one that re-runs the queries it did not solve with the next value of a schedule.

A user's own explainer needs nothing from this module but the :class:`CFResult` it returns::

    class Shift(flax.struct.PyTreeNode):
        classifier: Any
        def check(self, x, target): ...
        def __call__(self, x, target, key):
            x_cf = x + 0.1 * jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(key)
            score, ok = jaxcf.core.targets.score_outputs(self.classifier.logits(x_cf), target,
                                                    threshold=0.5, tolerance=0.1)
            return CFResult(x_cf, ok, jnp.ones(len(x), jnp.int32), score, {})
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
PyTree = Any


class CFResult(NamedTuple):
    """The record every explainer returns; all fields have the batch as leading axis.

    Attributes:
      x_cf: ``[B, ...]`` counterfactuals (the last iterate for failed queries, never zeros).
      success: ``[B]`` bool, the query's target was reached (see :mod:`jaxcf.core.targets`).
      n_iter: ``[B]`` int32, steps used (updates for searches, 1 for a one-pass method).
      score: ``[B]`` float32 at ``x_cf``: target probability (class targets), total variation
        distance (soft) or absolute error (regression).
      extras: dict of method-specific ``[B, ...]`` arrays.
    """

    x_cf: Array
    success: Array
    n_iter: Array
    score: Array
    extras: dict[str, Array]


@runtime_checkable
class Explainer(Protocol):
    """What the runner, metrics and benchmarks need of a method (see the module docstring)."""

    def check(self, x: Any, target: Any) -> tuple[Array, Array]: ...

    def __call__(self, x: Array, target: Array, key: Array) -> CFResult: ...


def check_explainer(explainer: Any) -> None:
    """Raises TypeError unless ``explainer`` offers ``check`` and ``__call__``."""
    missing = [m for m in ("check", "__call__") if not callable(getattr(explainer, m, None))]
    if missing or isinstance(explainer, type):
        raise TypeError(
            f"{explainer!r} is not an explainer: it must offer check(x, target) and "
            "__call__(x, target, key) -> CFResult (see jaxcf.core)"
        )


@jax.jit
def _call_jit(explainer: Any, x: Array, target: Array, key: Array) -> CFResult:
    return explainer(x, target, key)


def explain_batch(explainer: Any, x: Any, target: Any) -> CFResult:
    """One batch through ``explainer`` outside the runner: inputs checked before compiling,
    then ``explainer(x, target, keys)`` compiled once per explainer structure and shapes, with
    :func:`per_query_keys` of key 0. The batch functions (``fgsm``, ``aip``) end here."""
    x, target = explainer.check(x, target)
    return _call_jit(explainer, x, target, per_query_keys(jax.random.key(0), x.shape[0]))


def per_query_keys(key: Array, n: int) -> Array:
    """``[n]`` keys for a one-off batch: ``key`` folded with each query's index."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(n, dtype=jnp.uint32))


def tree_where(mask: Array, a: PyTree, b: PyTree, *, xp: Any = jnp) -> PyTree:
    """Per-query select between two pytrees whose leaves have the batch as leading axis
    (``xp=np`` selects host arrays on the host, without a trip to the device)."""

    def pick(x, y):
        return xp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(pick, a, b)


class Retry(struct.PyTreeNode):
    """Re-runs the queries an explainer did not solve, with the next value of a schedule.

    Attempt ``i`` runs ``explainer`` with ``explainer.config.<field> = schedule[i]`` and each
    query's key folded with ``i``; it is computed only for the queries that every earlier attempt
    failed, and a query's result is that of its first successful attempt (or of the last attempt
    if none succeeded). ``extras`` gains ``"attempt"`` (int32 index into ``schedule``) and
    ``field`` (the value used, float32). The diffusion family retries guidance scales this way;
    FGSM retries step sizes.

    Attributes:
      explainer: any explainer with a frozen-dataclass ``config`` holding ``field``, and a
        ``with_config(config)`` method or a ``replace`` one (a ``flax.struct`` dataclass).
      field: name of the config field the schedule sets.
      schedule: values tried in order (static).
      block: retried queries are gathered into batches of this many (static) so that an attempt
        costs about as much as the queries it re-runs; ``None`` re-runs the whole batch
        whenever any query is left (and skips the attempt when none is).
    """

    explainer: Any
    field: str = struct.field(pytree_node=False)
    schedule: tuple[float, ...] = struct.field(pytree_node=False)
    block: int | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        config = getattr(self.explainer, "config", None)
        if not dataclasses.is_dataclass(config) or not hasattr(config, self.field):
            raise ValueError(
                f"Retry needs an explainer whose config has a field {self.field!r}; "
                f"{type(self.explainer).__name__} has config {config!r}"
            )
        if len(self.schedule) == 0:
            raise ValueError("Retry needs a non-empty schedule")
        for value in self.schedule:  # each value must make a valid config
            dataclasses.replace(config, **{self.field: value})
        if self.block is not None and self.block < 1:
            raise ValueError(f"block must be a positive batch size or None, got {self.block}")

    def attempt(self, i: int) -> Any:
        """The wrapped explainer with the ``i``-th schedule value (through its ``with_config``
        if it has one, else ``replace(config=...)``)."""
        config = dataclasses.replace(self.explainer.config, **{self.field: self.schedule[i]})
        with_config = getattr(self.explainer, "with_config", None)
        if with_config is not None:
            return with_config(config)
        return self.explainer.replace(config=config)

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        return self.explainer.check(x, target)

    def __call__(self, x: Array, target: Array, key: Array) -> CFResult:
        def keys(i):
            return jax.vmap(jax.random.fold_in, (0, None))(key, i)

        result = self.attempt(0)(x, target, keys(0))
        attempt = jnp.zeros(x.shape[0], jnp.int32)
        for i in range(1, len(self.schedule)):
            todo = ~result.success
            new = self._rerun(self.attempt(i), x, target, keys(i), todo, result)
            result = tree_where(todo, new, result)
            attempt = jnp.where(todo, i, attempt)
        values = jnp.asarray(self.schedule, jnp.float32)[attempt]
        extras = {**result.extras, "attempt": attempt, self.field: values}
        return result._replace(extras=extras)

    def _rerun(self, explainer, x, target, keys, todo, previous: CFResult) -> CFResult:
        """``explainer`` on the rows where ``todo``; ``previous`` elsewhere."""
        n = x.shape[0]
        if self.block is None or self.block >= n:
            return jax.lax.cond(jnp.any(todo), lambda: explainer(x, target, keys), lambda: previous)
        size = self.block
        order = jnp.argsort(~todo, stable=True)  # rows to redo first, in index order
        order = jnp.concatenate([order, jnp.zeros(size, order.dtype)])  # room for the last block
        count = jnp.sum(todo)

        def body(carry):
            b, out = carry
            rows = jax.lax.dynamic_slice(order, (b * size,), (size,))
            r = explainer(x[rows], target[rows], keys[rows])
            live = b * size + jnp.arange(size) < count
            dest = jnp.where(live, rows, n)  # padding rows are dropped
            out = jax.tree.map(lambda o, v: o.at[dest].set(v, mode="drop"), out, r)
            return b + 1, out

        _, out = jax.lax.while_loop(
            lambda c: c[0] * size < count, body, (jnp.asarray(0, jnp.int32), previous)
        )
        return out
