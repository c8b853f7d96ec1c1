"""DiCE (Mothilal et al. 2020; the ``dice-ml`` library) as a peer for tabular counterfactuals.

DiCE's model-agnostic methods (``"random"``, ``"genetic"``, ``"kdtree"``) search over *raw*
rows (a pandas DataFrame of categories and numbers) and call the model's ``predict_proba`` on
such frames. :class:`EncodedModel` gives a jaxcf classifier that interface: it encodes each
frame with the :class:`~jaxcf.tabular.TabularTransform` and runs the classifier's jitted
``logits`` on the ``[N, D]`` encoding (padded to power-of-two batch sizes, so DiCE's varying
batch sizes compile a handful of programs, not one per call).

:func:`dice_counterfactuals` (or :class:`DicePeer`, to reuse one DiCE setup) explains one query
per DiCE call and times each call: the benchmark compares seconds per counterfactual. The
constraints jaxcf's generator obeys are passed the way DiCE takes them: immutable and fixed
columns are left out of ``features_to_vary``; an increasing column's ``permitted_range`` starts
at the query's value. The counterfactual rows come back re-encoded, ``[N * total_CFs, D]``.

Needs the optional ``dice`` extra (``pip install -e '.[dice]'``: dice-ml, pandas,
scikit-learn). Nothing here is imported by ``import jaxcf`` or ``import jaxcf.peers``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dice_ml
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from raiutils.exceptions import UserConfigValidationException

from jaxcf.core import as_pure
from jaxcf.tabular import Constraints, Table, TabularTransform, fixed_mask

Method = Literal["random", "genetic", "kdtree"]
METHODS: tuple[str, ...] = ("random", "genetic", "kdtree")
OUTCOME = "_outcome"
"""Name of the label column in the frame DiCE's ``Data`` is built from."""
_MIN_BUCKET = 64


class EncodedModel:
    """A jaxcf classifier on encoded rows, seen by DiCE as a scikit-learn classifier on raw rows.

    Args:
      classifier: any object with ``logits(x [B, D]) -> [B, C]`` on the transform's encoding
        (an NNX module, a pure pytree, ...); ``C = 1`` is read as a sigmoid's logit.
      transform: encodes DiCE's frames.
    """

    def __init__(self, classifier: Any, transform: TabularTransform):
        self.transform = transform
        self._classifier = as_pure(classifier)
        self._logits = jax.jit(lambda clf, x: clf.logits(x))
        self.rows_scored = 0

    def logits(self, rows: Any) -> np.ndarray:
        """``float32 [N, C]`` logits of raw rows (a DataFrame or a table)."""
        x = self.transform.encode(_as_table(rows))
        n = x.shape[0]
        self.rows_scored += n
        bucket = max(_MIN_BUCKET, 1 << max(n - 1, 0).bit_length())
        padded = np.zeros((bucket, x.shape[1]), np.float32)
        padded[:n] = x
        return np.asarray(self._logits(self._classifier, jnp.asarray(padded)))[:n]

    def predict_proba(self, rows: Any) -> np.ndarray:
        logits = self.logits(rows).astype(np.float64)
        if logits.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1.0 - p, p], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, rows: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(rows), axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class DiceResult:
    """DiCE's counterfactuals, re-encoded, with timings.

    Attributes:
      x_cf: ``float32 [N * K, D]`` encoded counterfactuals, query-major (``K = total_CFs``);
        where DiCE found fewer than ``K``, the missing rows hold the query's encoding.
      query_index: ``int32 [N * K]`` the query (``0..N-1``) of each row.
      found: ``bool [N * K]`` whether DiCE returned that counterfactual.
      seconds: ``float64 [N]`` wall time of each query's DiCE call (all ``K`` counterfactuals).
      setup_seconds: building DiCE's data, model and explainer (once, not per query).
      method: DiCE's method; ``total_cfs``: ``K``.
    """

    x_cf: np.ndarray
    query_index: np.ndarray
    found: np.ndarray
    seconds: np.ndarray
    setup_seconds: float
    method: str
    total_cfs: int

    @property
    def seconds_per_cf(self) -> float:
        """Mean wall time per requested counterfactual."""
        return float(self.seconds.sum() / max(1, self.seconds.size * self.total_cfs))


class DicePeer:
    """One DiCE explainer over a jaxcf classifier, reusable across queries.

    Args:
      classifier: see :class:`EncodedModel`.
      transform: the encoding the classifier reads.
      data: ``(table, labels)``: the training rows DiCE takes feature ranges (and, for
        ``kdtree``/``genetic``, candidate points) from; e.g. ``load_adult_table("train")``.
      method: ``"random"``, ``"genetic"`` or ``"kdtree"``.
      constraints: immutable columns are never varied; increasing columns are searched from
        the query's value up.
    """

    def __init__(
        self,
        classifier: Any,
        transform: TabularTransform,
        data: tuple[Table, Any],
        *,
        method: Method = "random",
        constraints: Constraints | None = None,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown DiCE method {method!r}; expected one of {METHODS}")
        self.transform = transform
        self.method = method
        self.constraints = constraints or Constraints()
        self.constraints.check(transform.schema)
        start = time.perf_counter()
        table, labels = data
        frame = _frame(transform, table)
        frame[OUTCOME] = np.asarray(labels)
        numeric = [c.name for c in transform.schema.columns if c.kind == "numeric"]
        self.model = EncodedModel(classifier, transform)
        self._data = dice_ml.Data(
            dataframe=frame, continuous_features=numeric, outcome_name=OUTCOME
        )
        self._high = {name: float(np.max(np.asarray(table[name]))) for name in numeric}
        dice_model = dice_ml.Model(model=self.model, backend="sklearn", model_type="classifier")
        self._dice = dice_ml.Dice(self._data, dice_model, method=method)
        self.setup_seconds = time.perf_counter() - start

    def explain(
        self,
        queries: Table,
        desired_class: int | Sequence[int] | str = "opposite",
        *,
        total_CFs: int = 1,  # noqa: N803 - DiCE's name
        features_to_vary: Sequence[str] | None = None,
        permitted_range: Mapping[str, Sequence[float]] | None = None,
        fixed: Any = None,
        seed: int = 0,
        quiet: bool = True,
        **dice_kwargs: Any,
    ) -> DiceResult:
        """Counterfactuals for each query row, one DiCE call per query.

        Args:
          queries: ``[N]`` raw rows (a table or DataFrame with the schema's columns).
          desired_class: the target class, one per query, or ``"opposite"``.
          total_CFs: counterfactuals per query (``K``).
          features_to_vary: columns DiCE may change (default: all); immutable and fixed
            columns are always removed, and naming an immutable one raises.
          permitted_range: ``{column: [low, high]}`` ranges; an increasing column's low end is
            raised to the query's value.
          fixed: columns fixed at explain time, as for :func:`jaxcf.tabular.fixed_mask`.
          seed: ``random_seed`` of the random method (query ``i`` uses ``seed + i``); the
            genetic method draws from NumPy's global generator, seeded the same way and
            restored afterwards; kdtree is deterministic.
          quiet: silence DiCE's prints and progress bars.
          dice_kwargs: passed to ``generate_counterfactuals``.

        Returns:
          A :class:`DiceResult`.
        """
        schema = self.transform.schema
        frame = _frame(self.transform, _as_table(queries))
        n = len(frame)
        if isinstance(total_CFs, bool) or not isinstance(total_CFs, int) or total_CFs < 1:
            raise ValueError(f"total_CFs must be an integer >= 1, got {total_CFs!r}")
        if isinstance(desired_class, str):
            if desired_class != "opposite":
                raise ValueError(
                    f"desired_class must be class indices or 'opposite', got {desired_class!r}"
                )
            targets: list[Any] = [desired_class] * n
        else:
            targets = [int(t) for t in np.broadcast_to(np.asarray(desired_class), (n,))]
        vary = list(schema.names) if features_to_vary is None else list(features_to_vary)
        for name in vary:
            schema.index(name)
        locked = [name for name in vary if name in self.constraints.immutable]
        if features_to_vary is not None and locked:
            raise ValueError(f"features_to_vary names immutable column {locked[0]!r}")
        vary = [name for name in vary if name not in self.constraints.immutable]
        fixed_rows = fixed_mask(schema, fixed, n)
        ranges: dict[str, list[Any]] = {}
        for name, allowed in (permitted_range or {}).items():
            numeric = schema.column(name).kind == "numeric"  # unknown names raise here
            # Numeric: [low, high]; categorical: the categories DiCE may choose from.
            ranges[name] = [float(v) for v in allowed] if numeric else list(allowed)

        k = total_CFs
        x_cf = np.repeat(self.transform.encode(_as_table(frame)), k, axis=0)
        found = np.zeros(n * k, bool)
        seconds = np.zeros(n)
        for i in range(n):
            row_vary = [name for name in vary if not fixed_rows[i, schema.index(name)]]
            if not row_vary:  # nothing may change: no counterfactual, and nothing to time
                continue
            row_ranges = dict(ranges)
            for name in self.constraints.increasing:
                low, high = row_ranges.get(name, [-np.inf, self._high[name]])
                row_ranges[name] = [max(low, float(frame[name].iloc[i])), high]
            kwargs = dict(dice_kwargs)
            if self.method == "random":
                kwargs.setdefault("random_seed", seed + i)
            query = frame.iloc[[i]]
            with _seeded_global_numpy(seed + i), _silenced(quiet):
                start = time.perf_counter()
                try:
                    result = self._dice.generate_counterfactuals(
                        query,
                        total_CFs=k,
                        desired_class=targets[i],
                        features_to_vary=row_vary,
                        permitted_range=row_ranges or None,
                        verbose=False,
                        **kwargs,
                    )
                except UserConfigValidationException as exc:
                    # DiCE raises, rather than returning nothing, when a query has no
                    # counterfactual; that is a failure to record, not an error.
                    if "No counterfactuals found" not in str(exc):
                        raise
                    result = None
                seconds[i] = time.perf_counter() - start
            cfs = None if result is None else result.cf_examples_list[0].final_cfs_df
            if cfs is None or len(cfs) == 0:
                continue
            cfs = cfs.drop(columns=[OUTCOME], errors="ignore").iloc[:k]
            encoded = self.transform.encode(_as_table(_round_integers(self.transform, cfs)))
            x_cf[i * k : i * k + len(encoded)] = encoded
            found[i * k : i * k + len(encoded)] = True
        return DiceResult(
            x_cf=x_cf,
            query_index=np.repeat(np.arange(n, dtype=np.int32), k),
            found=found,
            seconds=seconds,
            setup_seconds=self.setup_seconds,
            method=self.method,
            total_cfs=k,
        )


def dice_counterfactuals(
    classifier: Any,
    transform: TabularTransform,
    x_table_rows: Table,
    desired_class: int | Sequence[int] | str,
    *,
    data: tuple[Table, Any],
    method: Method = "random",
    total_CFs: int = 1,  # noqa: N803 - DiCE's name
    constraints: Constraints | None = None,
    features_to_vary: Sequence[str] | None = None,
    permitted_range: Mapping[str, Sequence[float]] | None = None,
    fixed: Any = None,
    seed: int = 0,
    quiet: bool = True,
    **dice_kwargs: Any,
) -> DiceResult:
    """Builds a :class:`DicePeer` and explains ``x_table_rows`` (see :meth:`DicePeer.explain`).

    Example (Adult, 3 test rows, the paper's constraints)::

        from jaxcf.data.adult import ADULT_CONSTRAINTS, adult_transform, load_adult_table

        rows, _ = load_adult_table("test")
        queries = {name: values[:3] for name, values in rows.items()}
        result = dice_counterfactuals(clf, adult_transform(), queries, 1,
                                      data=load_adult_table("train"),
                                      constraints=ADULT_CONSTRAINTS)
        result.x_cf, result.found, result.seconds   # [3, 85], [3], [3]
    """
    peer = DicePeer(classifier, transform, data, method=method, constraints=constraints)
    return peer.explain(
        x_table_rows,
        desired_class,
        total_CFs=total_CFs,
        features_to_vary=features_to_vary,
        permitted_range=permitted_range,
        fixed=fixed,
        seed=seed,
        quiet=quiet,
        **dice_kwargs,
    )


def _as_table(rows: Any) -> dict[str, np.ndarray]:
    """A DataFrame or mapping as ``{column: [N] array}`` (strings as object arrays)."""
    if isinstance(rows, pd.DataFrame):
        return {str(c): rows[c].to_numpy() for c in rows.columns}
    return {str(k): np.asarray(v) for k, v in rows.items()}


def _frame(transform: TabularTransform, table: Table) -> pd.DataFrame:
    """The table as a DataFrame in schema order (validated by encoding it)."""
    table = _as_table(table)
    transform.encode(table)  # raises a clear error naming the column on bad rows
    return pd.DataFrame({name: table[name] for name in transform.schema.names})


def _round_integers(transform: TabularTransform, frame: pd.DataFrame) -> pd.DataFrame:
    """DiCE keeps integer features at precision 0 but may hand them back as floats."""
    frame = frame.copy()
    for column in transform.schema.columns:
        if column.kind == "numeric" and column.integer:
            frame[column.name] = np.rint(frame[column.name].astype(np.float64)).astype(np.int64)
    return frame


@contextlib.contextmanager
def _seeded_global_numpy(seed: int):
    """Seeds NumPy's global generator (DiCE's genetic method draws from it), then restores it."""
    # The legacy global generator on purpose: it is the one DiCE's genetic method draws from.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed % 2**32)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


@contextlib.contextmanager
def _silenced(quiet: bool):
    """DiCE prints progress and a tqdm bar per call, and newer pandas warns about DiCE's calls;
    swallow them when ``quiet``."""
    if not quiet:
        yield
        return
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.filterwarnings("ignore", module=r"dice_ml\.")
        yield
