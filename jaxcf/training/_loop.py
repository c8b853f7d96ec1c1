"""One resumable training loop for every model family, in the style of the Flax examples.

A model family is a *task*: an object with four methods (see :class:`Task`) that builds its
modules from a seed, runs one (jitted) train step on a batch, evaluates, and describes its
config. :func:`fit` owns everything else:

* the schedule: ``steps_per_epoch = N // batch_size`` (the ragged last batch is dropped so every
  step has one compiled shape), ``epochs`` (may be fractional) or ``steps`` in all;
* seeded shuffling: epoch ``e`` visits the examples in the ``(e+1)``-th permutation drawn from
  ``np.random.default_rng(seed)``;
* randomness for the step: step ``t`` gets ``jax.random.fold_in(loop_key(seed), t)``, a key
  independent of the one ``nnx.Rngs(seed)`` starts from;
* a tqdm progress bar with the step's metrics in its postfix;
* periodic evaluation (each epoch, or every ``eval_every`` steps, and at the end): one history
  record per evaluation with the train metrics averaged since the previous one;
* a progress checkpoint (every module, optimiser and EMA copy the task built, their RNG
  streams, the loop position, history and pending metrics) written each epoch, or every
  ``save_every`` steps, and at the end. A run killed part-way and restarted with the same task
  config and loop config continues after the last saved step and ends with bitwise the same
  modules and history as an unbroken run; a progress checkpoint of another configuration is a
  ``ValueError``. The caller deletes it (:func:`clear_progress`) once its own result is saved.

Every trainer of :mod:`jaxcf.training` keeps one layout: a workdir whose ``progress/`` folder
holds the progress checkpoint while training and whose ``checkpoint/`` folder holds the result.
:func:`final_checkpoint` refuses a finished workdir before anything is loaded or trained;
:func:`save_result` saves the result with the run's history and training seconds and then
deletes the progress checkpoint.

Bitwise resumption needs the task to be deterministic given its modules, the batch and the
key: take randomness from the key (or from the modules' own ``nnx.Rngs`` streams, which the
progress checkpoint restores), not from host-side generators.

Example, a GAN (two optimisers, alternating steps, an EMA copy of the generator)::

    class GANTask:
        def config_dict(self):
            return {"lr": 2e-4, "ema_decay": 0.999}

        def init(self, seed, plan):
            rngs = nnx.Rngs(seed)
            g, d = Generator(rngs), Discriminator(rngs)
            return {"generator": g, "discriminator": d, "generator_ema": nnx.clone(g),
                    "opt_generator": nnx.Optimizer(g, optax.adam(2e-4), wrt=nnx.Param),
                    "opt_discriminator": nnx.Optimizer(d, optax.adam(2e-4), wrt=nnx.Param)}

        def train_step(self, modules, batch, key):
            return gan_step(**modules, real=batch, key=key)  # an nnx.jit function that ends
                                                             # with update_ema(...)
        def evaluate(self, modules):
            return {}

    result = fit(GANTask(), images, LoopConfig(batch_size=64, steps=10_000, save_every=500),
                 progress_dir=workdir / "progress")
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from jaxcf.core import validation
from jaxcf.models import checkpoint
from jaxcf.models.checkpoint import CHECKPOINT_DIR

_RNG_ENTRY = "loop_rngs"
"""Progress-checkpoint entry holding the modules' RNG streams; task modules may not use
names starting with ``loop_``."""
_PROGRESS_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How long and how to train; everything that is not the model family's business.

    Attributes:
      batch_size: examples per step.
      epochs: passes over the data, may be fractional (the last one is cut short). Give either
        ``epochs`` or ``steps``.
      steps: optimisation steps in all.
      seed: shuffling seed, step-key seed and the seed :meth:`Task.init` builds modules from.
      eval_every: evaluate every this many steps; ``None``: at the end of each epoch. There is
        always an evaluation after the last step.
      save_every: write the progress checkpoint every this many steps; ``None``: at the end of
        each epoch. It is always written after the last step.
      log_every: refresh the progress bar's metrics every this many steps (each refresh waits
        for the step to finish).
    """

    batch_size: int
    epochs: float | None = None
    steps: int | None = None
    seed: int = 0
    eval_every: int | None = None
    save_every: int | None = None
    log_every: int = 20

    def __post_init__(self) -> None:
        validation.at_least(self, 1, "batch_size", "log_every")
        validation.at_least(self, 0, "seed")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(
                f"give exactly one of epochs and steps (got epochs={self.epochs}, "
                f"steps={self.steps})"
            )
        if self.epochs is not None:
            validation.positive(self, "epochs")
        for name in ("steps", "eval_every", "save_every"):
            if getattr(self, name) is not None:
                validation.at_least(self, 1, name)


def loop_config_of(config: Any) -> LoopConfig:
    """The :class:`LoopConfig` of a family's train config that carries ``batch_size``,
    ``steps``, ``seed``, ``eval_every`` and ``save_every`` fields."""
    return LoopConfig(
        batch_size=config.batch_size,
        steps=config.steps,
        seed=config.seed,
        eval_every=config.eval_every,
        save_every=config.save_every,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """The schedule :func:`fit` runs, given to :meth:`Task.init` (e.g. for learning-rate
    schedules in steps).

    Attributes:
      num_examples: N, the training examples.
      batch_size: examples per step.
      steps_per_epoch: ``N // batch_size``.
      total_steps: steps in all.
    """

    num_examples: int
    batch_size: int
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def make(cls, config: LoopConfig, num_examples: int) -> Plan:
        """The plan of ``config`` on ``num_examples`` examples.

        Raises:
          ValueError: fewer examples than one batch, or a run of zero steps.
        """
        steps_per_epoch = num_examples // config.batch_size
        if steps_per_epoch < 1:
            raise ValueError(
                f"{num_examples} training examples do not fill one batch of {config.batch_size}"
            )
        if config.steps is not None:
            total = config.steps
        else:
            total = int(round(config.epochs * steps_per_epoch))
        if total < 1:
            raise ValueError(
                f"epochs={config.epochs} of {steps_per_epoch} steps rounds to no step at all"
            )
        return cls(num_examples, config.batch_size, steps_per_epoch, total)


class Task(Protocol):
    """A model family's part of training. All four methods are required.

    ``modules`` below is the dict :meth:`init` returned: every stateful object of the run
    (models, ``nnx.Optimizer``\\ s, EMA copies), each saved in the progress checkpoint under
    its name (letters, digits, ``_``, ``-``; not starting with ``loop_``).
    """

    def config_dict(self) -> Mapping[str, Any]:
        """JSON-serialisable description of everything besides the :class:`LoopConfig` that
        determines the result; a progress checkpoint is resumed only under an equal one."""
        ...

    def init(self, seed: int, plan: Plan) -> Mapping[str, nnx.Pytree]:
        """Builds the modules and optimisers from ``seed``, in training mode."""
        ...

    def train_step(
        self, modules: Mapping[str, nnx.Pytree], batch: Any, key: jax.Array
    ) -> Mapping[str, jax.Array]:
        """One step on ``batch`` (the training pytree's leaves indexed by the batch, as JAX
        arrays ``[batch_size, ...]``), updating ``modules`` in place; returns scalar metrics.
        ``key`` is this step's PRNG key. Call a jitted function here: the loop does not jit.
        (optax's schedules and Adam mix Python floats with int32 step counts: under
        ``jax_numpy_dtype_promotion="strict"`` run ``optimizer.update`` inside
        ``jax.numpy_dtype_promotion("standard")``.)"""
        ...

    def evaluate(self, modules: Mapping[str, nnx.Pytree]) -> Mapping[str, float]:
        """Evaluation metrics (names distinct from the train metrics'), leaving the modules in
        training mode and their training state unchanged; ``{}`` if there is nothing to
        evaluate."""
        ...


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      modules: the task's modules after the last step (training mode).
      history: one dict per evaluation: ``step``, ``epoch`` (steps / steps_per_epoch), the mean
        of each train metric since the previous evaluation, and the evaluation metrics; a
        non-finite value (a diverged run) is ``None``, as JSON has no NaN.
      seconds: training wall time, summed over resumed runs (evaluation included).
      resumed_from: the step the run resumed after, or ``None`` for a fresh run.
    """

    modules: dict[str, nnx.Pytree]
    history: list[dict[str, Any]]
    seconds: float
    resumed_from: int | None


def commit(modules: Mapping[str, Any], sharding: Any = None) -> None:
    """Places every module's state (parameters, optimiser counters, EMA copies, ...) on
    ``sharding`` in place; by default the default device. A task's ``init`` calls it last: a
    freshly built optimiser's step counter is an *uncommitted* array, a train step's outputs are
    committed, and jit keys its cache on that, so without this the second step compiles the
    whole train step again."""
    if sharding is None:
        sharding = jax.config.jax_default_device or jax.devices()[0]
    for m in modules.values():
        if m is not None:
            nnx.update(m, jax.device_put(nnx.state(m), sharding))


def loop_key(seed: int) -> jax.Array:
    """The key step ``t`` folds ``t`` into. Derived through NumPy's ``SeedSequence`` so that it
    differs from ``jax.random.key(seed)``, whose streams ``nnx.Rngs(seed)`` draws from."""
    word = np.random.SeedSequence([seed, 0x6A6178]).generate_state(1, dtype=np.uint32)[0]
    return jax.random.key(int(word))


def fit(
    task: Task,
    data: Any,
    config: LoopConfig,
    *,
    progress_dir: str | Path | None = None,
    desc: str = "train",
    after_step: Callable[[int, Mapping[str, nnx.Pytree]], None] | None = None,
) -> FitResult:
    """Trains ``task`` on ``data`` as ``config`` says, resuming from ``progress_dir`` if present.

    Args:
      task: the model family (see :class:`Task`).
      data: a pytree of arrays (NumPy, on the host) sharing the leading dimension N, e.g.
        ``(images, labels)`` or ``{"x": ..., "y": ...}``; each step's batch is the same pytree
        indexed by ``batch_size`` shuffled example indices.
      config: the loop's schedule and seed.
      progress_dir: where the progress checkpoint lives; ``None`` trains without one.
      desc: progress-bar label.
      after_step: called as ``after_step(step, modules)`` after every step (after its
        evaluation and progress checkpoint; ``step`` counts the steps done), e.g. to keep copies
        of a model for a learning curve. It must leave the modules unchanged. A resumed run
        calls it again for the steps it repeats (those after the last progress checkpoint).

    Raises:
      ValueError: ``progress_dir`` holds a run of another configuration, too little data for a
        batch, ragged leading dimensions, or bad module or metric names.
    """
    n = _num_examples(data)
    plan = Plan.make(config, n)
    modules = dict(task.init(config.seed, plan))
    _check_module_names(modules)
    identity = _identity(task, config, n)
    progress = None if progress_dir is None else Path(progress_dir)

    step, history, pending, seconds_before, resumed_from = 0, [], [], 0.0, None
    if progress is not None and progress.exists():
        step, history, pending, seconds_before = _load_progress(progress, identity, modules)
        resumed_from = step
        tqdm.write(f"resuming {desc} after step {step}/{plan.total_steps} from {progress}")

    shuffle = _Shuffler(config.seed, n)
    base_key = loop_key(config.seed)
    start = time.perf_counter()
    bar = tqdm(total=plan.total_steps, initial=step, desc=desc, unit="step", leave=False)
    try:
        while step < plan.total_steps:
            epoch, i = divmod(step, plan.steps_per_epoch)
            idx = shuffle.order(epoch)[i * plan.batch_size : (i + 1) * plan.batch_size]
            batch = jax.tree.map(lambda a, idx=idx: jnp.asarray(a[idx]), data)
            metrics = dict(task.train_step(modules, batch, jax.random.fold_in(base_key, step)))
            pending.append(metrics)
            step += 1
            bar.update(1)
            if (step - 1) % config.log_every == 0:
                bar.set_postfix({k: f"{float(v):.4f}" for k, v in metrics.items()})

            last = step == plan.total_steps
            epoch_end = step % plan.steps_per_epoch == 0
            if last or _due(step, config.eval_every, epoch_end):
                record = _evaluate(task, modules, step, plan, _means(pending))
                history.append(record)
                pending = []
                tqdm.write(f"{desc} " + ", ".join(f"{k} {_fmt(v)}" for k, v in record.items()))
            if progress is not None and (last or _due(step, config.save_every, epoch_end)):
                seconds = seconds_before + time.perf_counter() - start
                _save_progress(progress, identity, modules, step, history, pending, seconds)
            if after_step is not None:
                after_step(step, modules)
    finally:
        bar.close()
    seconds = seconds_before + time.perf_counter() - start
    return FitResult(modules, history, seconds, resumed_from)


def write_progress(
    progress_dir: str | Path,
    task: Task,
    config: LoopConfig,
    num_examples: int,
    modules: Mapping[str, nnx.Pytree],
    *,
    step: int,
    history: list[dict[str, Any]],
    seconds: float = 0.0,
) -> None:
    """Writes a progress checkpoint that :func:`fit` resumes after ``step`` (e.g. converted
    from another trainer's state). ``modules`` are the task's modules as they are after
    ``step`` steps; ``history`` the records up to then, the last one at ``step``."""
    modules = dict(modules)
    _check_module_names(modules)
    identity = _identity(task, config, num_examples)
    _save_progress(Path(progress_dir), identity, modules, step, history, [], seconds)


def clear_progress(progress_dir: str | Path) -> None:
    """Deletes a progress checkpoint (once the run's own result is safely saved)."""
    shutil.rmtree(progress_dir, ignore_errors=True)


"""Subfolder of a trainer's workdir holding its result."""
PROGRESS_DIR = "progress"
"""Subfolder of a trainer's workdir holding the progress checkpoint of an unfinished run."""


def final_checkpoint(workdir: str | Path, *, overwrite: bool) -> Path:
    """``workdir/checkpoint``, where a trainer saves its result.

    Raises:
      FileExistsError: it exists and ``overwrite`` is False (a trainer calls this first, before
        loading data or training).
    """
    final = Path(workdir) / CHECKPOINT_DIR
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; pass overwrite=True to replace it")
    return final


def save_result(
    final: Path,
    entries: Any,
    metadata: Mapping[str, Any],
    result: FitResult,
    *,
    overwrite: bool,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Saves a trainer's result to ``final`` (from :func:`final_checkpoint`): ``entries`` (a
    module or ``{name: module}``) with ``metadata`` plus the run's ``history`` and
    ``train_seconds``; then deletes the progress checkpoint beside it. Returns the metadata as
    saved."""
    metadata = {**metadata, "history": result.history, "train_seconds": result.seconds}
    checkpoint.save(final, entries, metadata=metadata, extras=extras, overwrite=overwrite)
    clear_progress(final.parent / PROGRESS_DIR)
    return checkpoint.read_metadata(final)


# ----------------------------------------------------------------------------- helpers


def _identity(task: Task, config: LoopConfig, num_examples: int) -> dict[str, Any]:
    """What a progress checkpoint must have been written under to be resumed."""
    try:
        task_config = _json(dict(task.config_dict()))
    except (TypeError, ValueError) as e:
        raise TypeError(f"Task.config_dict() must return JSON-serialisable values: {e}") from e
    return _json(
        {
            "task": task_config,
            "loop": dataclasses.asdict(config),
            "num_examples": num_examples,
            "format": _PROGRESS_FORMAT,
        }
    )


def _json(tree: Any) -> Any:
    """``tree`` as JSON would give it back (tuples become lists), to compare with stored JSON."""
    return json.loads(json.dumps(tree))


def _num_examples(data: Any) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data has no arrays")
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"data leaves must share a leading dimension N, got sizes {sizes}")
    return sizes.pop()


def _check_module_names(modules: dict[str, Any]) -> None:
    if not modules:
        raise ValueError("Task.init returned no modules")
    for name, module in modules.items():
        if not isinstance(module, nnx.Pytree):
            raise TypeError(f"module {name!r} is a {type(module).__name__}, not an NNX object")
        if name.startswith("loop_"):
            raise ValueError(f"module names may not start with 'loop_', got {name!r}")


def _due(step: int, every: int | None, epoch_end: bool) -> bool:
    return epoch_end if every is None else step % every == 0


class _Shuffler:
    """Epoch ``e``'s order is the ``(e+1)``-th permutation of one ``default_rng(seed)`` stream;
    replayed from the start when a resumed run asks for a later epoch first."""

    def __init__(self, seed: int, n: int):
        self._seed, self._n = seed, n
        self._epoch, self._order, self._rng = -1, None, None

    def order(self, epoch: int) -> np.ndarray:
        if epoch < self._epoch or self._rng is None:
            self._rng, self._epoch = np.random.default_rng(self._seed), -1
        while self._epoch < epoch:
            self._order = self._rng.permutation(self._n)
            self._epoch += 1
        return self._order


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: a diverged metric is recorded as ``None`` (null)."""
    return value if math.isfinite(value) else None


def _host(value: Any) -> np.float64:
    return np.float64(np.nan if value is None else value)


def _means(pending: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each metric over the pending steps, in float64 on the host."""
    if not pending:
        return {}
    values = jax.device_get(pending)  # one transfer for all steps
    return {k: _finite(float(np.mean([_host(v[k]) for v in values]))) for k in values[0]}


def _evaluate(
    task: Task, modules: dict, step: int, plan: Plan, train: dict[str, float]
) -> dict[str, Any]:
    evaluated = {k: _finite(float(v)) for k, v in task.evaluate(modules).items()}
    clash = sorted(set(evaluated) & (set(train) | {"step", "epoch"}))
    if clash:
        raise ValueError(f"evaluation metrics {clash} clash with train metrics or step/epoch")
    return {"step": step, "epoch": round(step / plan.steps_per_epoch, 6), **train, **evaluated}


def _fmt(value: Any) -> str:
    if value is None:
        return "non-finite"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _rng_states(modules: dict[str, Any]) -> dict[str, Any]:
    """Each module's RNG streams as a nested dict, keys as raw ``uint32`` key data."""
    out = {}
    for name, module in modules.items():
        state = nnx.to_pure_dict(nnx.state(module, nnx.RngState))
        if jax.tree.leaves(state):
            out[name] = jax.tree.map(_key_data, state)
    return out


def _key_data(x: jax.Array) -> jax.Array:
    return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def _save_progress(
    path: Path,
    identity: Any,
    modules: dict[str, Any],
    step: int,
    history: list,
    pending: list,
    seconds: float,
) -> None:
    entries: dict[str, Any] = dict(modules)
    rngs = _rng_states(modules)
    if rngs:
        entries[_RNG_ENTRY] = rngs
    # Pending metrics as host floats: float32 values are exact in float64 and in JSON, so the
    # resumed run's means are bitwise those of an unbroken one.
    pending_host = [{k: _finite(float(v)) for k, v in m.items()} for m in jax.device_get(pending)]
    metadata = {
        "progress": identity,
        "step": step,
        "history": history,
        "pending_metrics": pending_host,
        "train_seconds": seconds,
    }
    checkpoint.save(path, entries, metadata=metadata, overwrite=True)


def _load_progress(
    path: Path, identity: Any, modules: dict[str, Any]
) -> tuple[int, list, list, float]:
    """Restores ``modules`` in place; returns ``(step, history, pending metrics, seconds)``."""
    meta = checkpoint.read_metadata(path)
    stored = meta.get("progress")
    if stored is None:
        raise ValueError(
            f"{path} holds an interrupted training run written by an older jaxcf, which cannot "
            "be resumed; delete it or train into another workdir"
        )
    if stored != identity:
        where = ", ".join(_differences(stored, identity)) or "?"
        raise ValueError(
            f"{path} holds an interrupted training run of another configuration (differs in "
            f"{where}); delete it or train into another workdir"
        )
    targets: dict[str, Any] = dict(modules)
    rngs = _rng_states(modules)
    if rngs:
        targets[_RNG_ENTRY] = rngs
    _, values = checkpoint.load(path, targets)
    for name, data in values.get(_RNG_ENTRY, {}).items():
        state = nnx.state(modules[name], nnx.RngState)
        like = nnx.to_pure_dict(state)
        keys = jax.tree.map(_restore_key, like, data)
        nnx.replace_by_pure_dict(state, keys)
        nnx.update(modules[name], state)
    pending = [{k: _host(v) for k, v in m.items()} for m in meta["pending_metrics"]]
    return meta["step"], meta["history"], pending, meta["train_seconds"]


def _restore_key(like: jax.Array, data: jax.Array) -> jax.Array:
    if jax.dtypes.issubdtype(like.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))
    return data


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(a.keys() | b.keys()):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
