"""Training conditional counterfactual generators against a frozen classifier.

The generator ``G(x, y_m, y_t, z)`` learns to produce, in one forward pass, a counterfactual
``x_cf`` that the classifier ``M`` puts at the target ``y_t``. Per batch of training inputs:

* ``y_m``: the classifier's view of ``x`` (class probabilities; for a regressor its ``[B, 1]``
  output).
* ``y_t``: a *target transformation* of ``y_m`` drawn from the step's key: ``"flip"`` — a
  one-hot of a uniformly chosen class other than the predicted one; ``"soft"`` — a
  distribution drawn from a flat Dirichlet; ``"regression"`` — a value uniform in
  ``regression_range``.
* generator loss::

      w_model * loss(M(x_cf), y_t)            cross-entropy (one-hot or soft), or for regression
                                              the root mean squared error over the batch
    + w_l1 * mean |x - x_cf|                  per element, averaged over the batch
    + w_gan * L_G(D(x_cf, y_t))               hinge (-D) or vanilla (softplus(-D))
    + w_cycle * mean |x - G(x_cf, y_cf, y_m)| cycle consistency, y_cf = M's view of x_cf
    + w_mmd * class MMD^2(x_cf, x)            autoencoder variant: counterfactuals with target
                                              class c against real inputs predicted as c

* discriminator loss (when there is one): ``D(x, y_m)`` is real, ``D(x_cf, y_t)`` fake; hinge
  ``relu(1 - real) + relu(1 + fake)`` or vanilla ``softplus(-real) + softplus(fake)``, means over
  the batch (and over steps for per-step series logits).
* the generator's EMA copy is updated after every step with decay ``min(ema_decay,
  (1 + t) / (10 + t))`` at step ``t`` (a warm-up); it is what gets saved and explains.

Data-parallel: with a ``mesh``, each step's batch is split over the mesh's ``data`` axis and the
modules are replicated, so XLA all-reduces the gradients (plain ``jit`` with ``NamedSharding``).

:func:`train_generator` runs this through the core's resumable loop
(:func:`jaxcf.training.fit`) and saves ``workdir/checkpoint`` with the EMA generator, its
config, the target transformation and the digest of the classifier it was trained against;
:func:`load_generator` refuses a classifier with another digest.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcf.core import as_pure, checks, classifier_digest, validation
from jaxcf.models import checkpoint
from jaxcf.models import generators as gen_lib
from jaxcf.tabular import TabularTransform
from jaxcf.training._ema import update_ema
from jaxcf.training._loop import (
    PROGRESS_DIR,
    LoopConfig,
    Plan,
    commit,
    final_checkpoint,
    fit,
    loop_config_of,
    save_result,
)

Array = jax.Array

TargetMode = Literal["flip", "soft", "regression"]

SNAPSHOTS_DIR = "snapshots"
"""Subfolder of a generator's workdir holding the copies ``keep_steps`` asks for."""


@dataclasses.dataclass(frozen=True)
class GeneratorTrainConfig:
    """Attributes:
    generator: a generator config of :mod:`jaxcf.models.generators`.
    discriminator: a discriminator config, or ``None`` for the autoencoder variant (then
      ``w_mmd`` must be positive).
    target: the target transformation: ``"flip"``, ``"soft"`` or ``"regression"``.
    regression_range: ``(lo, hi)`` regression targets are drawn from (``"regression"`` only).
    w_model, w_l1, w_gan, w_cycle, w_mmd: loss weights (see the module docstring).
    gan_loss: ``"hinge"`` (images, series) or ``"vanilla"`` (tabular).
    fixed_prob: tabular only: each column is fixed (copied from the query) with this
      probability in training, so the generator learns to honour explain-time fixed features.
    lr_generator, lr_discriminator: Adam learning rates; ``b1``, ``b2``: Adam's betas.
    ema_decay: decay of the generator's EMA copy.
    batch_size, steps, eval_every, save_every, seed: the loop's schedule.
    val_examples: how many held-out inputs the periodic validation explains.
    keep_steps: steps after which a copy of the EMA generator is kept in
      ``workdir/snapshots/step_<step>`` (a checkpoint :func:`load_generator` reads, with the
      step in its metadata), the points of a learning curve. It does not change training, so
      it is not part of the config's identity (:meth:`to_dict`): a run resumes under other
      ``keep_steps``.
    """

    generator: Any
    discriminator: Any = None
    target: TargetMode = "flip"
    regression_range: tuple[float, float] | None = None
    w_model: float = 1.0
    w_l1: float = 2.0
    w_gan: float = 1.0
    w_cycle: float = 2.0
    w_mmd: float = 0.0
    gan_loss: Literal["hinge", "vanilla"] = "hinge"
    fixed_prob: float = 0.0
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    ema_decay: float = 0.999
    batch_size: int = 64
    steps: int = 2000
    eval_every: int = 250
    save_every: int = 250
    seed: int = 0
    val_examples: int = 500
    keep_steps: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "keep_steps", tuple(int(k) for k in self.keep_steps))
        if any(not 1 <= k <= self.steps for k in self.keep_steps):
            raise ValueError(
                f"keep_steps must lie in [1, steps={self.steps}], got {self.keep_steps}"
            )
        validation.one_of(self, "target", ("flip", "soft", "regression"))
        validation.one_of(self, "gan_loss", ("hinge", "vanilla"))
        validation.non_negative(self, "w_model", "w_l1", "w_gan", "w_cycle", "w_mmd")
        validation.positive(self, "lr_generator", "lr_discriminator")
        validation.unit_interval(self, "b1", "b2", "ema_decay", "fixed_prob")
        validation.at_least(self, 1, "batch_size", "steps", "eval_every", "save_every")
        validation.at_least(self, 0, "seed")
        validation.at_least(self, 1, "val_examples")
        if self.discriminator is None and self.w_mmd <= 0:
            raise ValueError("without a discriminator (autoencoder variant) w_mmd must be > 0")
        if self.w_mmd > 0 and self.target == "regression":
            raise ValueError("the class MMD term needs class targets, not regression")
        if self.target == "regression":
            if self.regression_range is None:
                raise ValueError("target='regression' needs regression_range=(lo, hi)")
            validation.box(self, "regression_range")
        if self.fixed_prob > 0 and getattr(self.generator, "kind", "") != "tabular_generator":
            raise ValueError("fixed_prob applies to the tabular generator only")

    def loop_config(self) -> LoopConfig:
        return loop_config_of(self)

    def to_dict(self) -> dict[str, Any]:
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("generator", "discriminator", "keep_steps")
        }
        d["generator"] = gen_lib.config_to_dict(self.generator)
        d["discriminator"] = (
            None if self.discriminator is None else gen_lib.config_to_dict(self.discriminator)
        )
        return d


# ----------------------------------------------------------------------------- pieces


def draw_targets(
    key: Array, y_m: Array, mode: TargetMode, regression_range: tuple[float, float] | None
) -> Array:
    """The training target transformation (see the module docstring): ``[B, K]`` vectors."""
    b, k = y_m.shape
    if mode == "flip":
        shift = jax.random.randint(key, (b,), 1, k)
        return jax.nn.one_hot((jnp.argmax(y_m, axis=-1) + shift) % k, k, dtype=jnp.float32)
    if mode == "soft":
        return jax.random.dirichlet(key, jnp.ones((k,), jnp.float32), (b,))
    lo, hi = regression_range
    return jax.random.uniform(key, (b, 1), jnp.float32, lo, hi)


def model_loss(outputs: Array, y_t: Array, mode: TargetMode) -> Array:
    """Scalar: mean cross-entropy to ``y_t`` (one-hot or soft), or RMSE for regression."""
    outputs = outputs.astype(jnp.float32)
    if mode == "regression":
        return jnp.sqrt(jnp.mean(jnp.square(outputs - y_t)) + 1e-12)
    return -jnp.mean(jnp.sum(y_t * jax.nn.log_softmax(outputs, axis=-1), axis=-1))


def l1_distance(x: Array, x_cf: Array) -> Array:
    """Scalar: mean absolute difference per element."""
    return jnp.mean(jnp.abs(x - x_cf))


def gan_losses(real: Array, fake: Array, kind: str) -> tuple[Array, Array]:
    """``(discriminator loss, generator loss)`` from logits on real and generated samples."""
    if kind == "hinge":
        d = jnp.mean(nnx.relu(1.0 - real)) + jnp.mean(nnx.relu(1.0 + fake))
        return d, -jnp.mean(fake)
    d = jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
    return d, jnp.mean(jax.nn.softplus(-fake))


def class_mmd2_loss(
    fake: Array, fake_class: Array, real: Array, real_class: Array, k: int
) -> Array:
    """Mean over classes of a (biased, V-statistic) squared MMD between the generated samples
    of target class ``c`` and the real samples predicted as ``c``; Gaussian kernels at
    bandwidths 0.5, 1, 2 and 4 times the median pairwise distance (held constant). Classes
    absent on either side of the batch are skipped. Inputs are flattened per sample."""
    a = fake.reshape(fake.shape[0], -1)
    b = real.reshape(real.shape[0], -1)
    both = jnp.concatenate([a, b])
    sq = jnp.sum(jnp.square(both[:, None, :] - both[None, :, :]), axis=-1)
    scale = jax.lax.stop_gradient(jnp.median(sq) + 1e-6)
    gram = sum(jnp.exp(-sq / (2.0 * (m * m) * scale)) for m in (0.5, 1.0, 2.0, 4.0))
    total, present = jnp.float32(0.0), jnp.float32(0.0)
    for c in range(k):
        wa = (fake_class == c).astype(jnp.float32)
        wb = (real_class == c).astype(jnp.float32)
        ok = (jnp.sum(wa) > 0) & (jnp.sum(wb) > 0)
        wa = wa / jnp.maximum(jnp.sum(wa), 1.0)
        wb = wb / jnp.maximum(jnp.sum(wb), 1.0)
        w = jnp.concatenate([wa, -wb])
        mmd = w @ gram @ w
        total = total + jnp.where(ok, mmd, 0.0)
        present = present + ok.astype(jnp.float32)
    return total / jnp.maximum(present, 1.0)


def _keys(key: Array, b: int, salt: int) -> Array:
    return jax.random.split(jax.random.fold_in(key, salt), b)


@dataclasses.dataclass(frozen=True)
class _StepSettings:
    """The hashable part of the config a train step is compiled for."""

    target: str
    regression_range: tuple[float, float] | None
    w_model: float
    w_l1: float
    w_gan: float
    w_cycle: float
    w_mmd: float
    gan_loss: str
    fixed_prob: float
    ema_decay: float
    num_columns: int

    @classmethod
    def of(cls, config: GeneratorTrainConfig) -> _StepSettings:
        table = getattr(config.generator, "transform", None)  # tabular: the transform's dict
        return cls(
            target=config.target,
            regression_range=config.regression_range,
            w_model=config.w_model,
            w_l1=config.w_l1,
            w_gan=config.w_gan if config.discriminator is not None else 0.0,
            w_cycle=config.w_cycle,
            w_mmd=config.w_mmd,
            gan_loss=config.gan_loss,
            fixed_prob=config.fixed_prob,
            ema_decay=config.ema_decay,
            num_columns=0 if table is None else len(TabularTransform.from_dict(table).names),
        )


@functools.partial(nnx.jit, static_argnames=("s",))
def train_step(
    s: _StepSettings,
    classifier: Any,
    generator: nnx.Module,
    generator_ema: nnx.Module,
    opt_generator: nnx.Optimizer,
    discriminator: nnx.Module | None,
    opt_discriminator: nnx.Optimizer | None,
    x: Array,
    key: Array,
) -> dict[str, Array]:
    """One discriminator step then one generator step on a batch ``x [B, ...]``; returns the
    batch's loss terms and its validity (share of generated samples at the target)."""
    b = x.shape[0]
    y_m = gen_lib.model_condition(classifier.logits(x), regression=s.target == "regression")
    y_t = draw_targets(jax.random.fold_in(key, 0), y_m, s.target, s.regression_range)
    gen_keys = _keys(key, b, 1)
    kwargs = {}
    if s.fixed_prob > 0:
        fixed = jax.random.bernoulli(jax.random.fold_in(key, 2), s.fixed_prob, (b, s.num_columns))
        kwargs["fixed"] = fixed.astype(jnp.float32)
    metrics = {}

    if discriminator is not None:
        x_fake = jax.lax.stop_gradient(generator(x, y_m, y_t, gen_keys, train=True, **kwargs))

        def d_loss(d):
            return gan_losses(d(x, y_m), d(x_fake, y_t), s.gan_loss)[0]

        loss_d, grads = nnx.value_and_grad(d_loss)(discriminator)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32
            opt_discriminator.update(discriminator, grads)
        metrics["loss_d"] = loss_d

    def g_loss(g, d):
        x_cf = g(x, y_m, y_t, gen_keys, train=True, **kwargs)
        out_cf = classifier.logits(x_cf)
        terms = {
            "model": model_loss(out_cf, y_t, s.target),
            "l1": l1_distance(x, x_cf),
        }
        total = s.w_model * terms["model"] + s.w_l1 * terms["l1"]
        if discriminator is not None and s.w_gan > 0:
            fake = d(x_cf, y_t)
            terms["gan"] = gan_losses(fake, fake, s.gan_loss)[1]  # L_G reads only the fake logits
            total = total + s.w_gan * terms["gan"]
        if s.w_cycle > 0:
            y_cf = jax.lax.stop_gradient(
                gen_lib.model_condition(out_cf, regression=s.target == "regression")
            )
            x_back = g(x_cf, y_cf, y_m, _keys(key, b, 3), train=True, **kwargs)
            terms["cycle"] = l1_distance(x, x_back)
            total = total + s.w_cycle * terms["cycle"]
        if s.w_mmd > 0:
            k = y_m.shape[1]
            terms["mmd"] = class_mmd2_loss(x_cf, jnp.argmax(y_t, -1), x, jnp.argmax(y_m, -1), k)
            total = total + s.w_mmd * terms["mmd"]
        return total, (terms, out_cf)

    # The discriminator is an argument (not captured) so that the state its forward pass
    # updates (spectral-norm vectors) stays within this trace; only the generator is
    # differentiated.
    (loss_g, (terms, out_cf)), grads = nnx.value_and_grad(g_loss, has_aux=True)(
        generator, discriminator
    )
    with jax.numpy_dtype_promotion("standard"):
        opt_generator.update(generator, grads)
    # EMA warm-up: the average follows the generator closely early on, so that periodic
    # validation of the EMA copy means something before ~1/(1 - decay) steps have passed.
    t = opt_generator.step[...].astype(jnp.float32)
    update_ema(generator_ema, generator, jnp.minimum(s.ema_decay, (1.0 + t) / (10.0 + t)))
    metrics.update({"loss_g": loss_g, **terms})
    metrics["validity"] = jnp.mean(_at_target(out_cf, y_t, s.target))
    return metrics


def _at_target(outputs: Array, y_t: Array, mode: str, tolerance: float = 0.1) -> Array:
    """``[B]`` 1.0 where the outputs reach the target: argmax equals the target class (flip),
    total variation within ``tolerance`` (soft), absolute error within ``tolerance``
    (regression)."""
    if mode == "flip":
        return (jnp.argmax(outputs, -1) == jnp.argmax(y_t, -1)).astype(jnp.float32)
    if mode == "soft":
        tv = 0.5 * jnp.sum(jnp.abs(jax.nn.softmax(outputs, -1) - y_t), -1)
        return (tv <= tolerance).astype(jnp.float32)
    return (jnp.abs(outputs[:, 0] - y_t[:, 0]) <= tolerance).astype(jnp.float32)


@functools.partial(nnx.jit, static_argnames=("s",))
def _validate(s: _StepSettings, classifier, generator, x, key):
    y_m = gen_lib.model_condition(classifier.logits(x), regression=s.target == "regression")
    y_t = draw_targets(jax.random.fold_in(key, 0), y_m, s.target, s.regression_range)
    x_cf = generator(x, y_m, y_t, _keys(key, x.shape[0], 1))
    ok = _at_target(classifier.logits(x_cf), y_t, s.target)
    return jnp.mean(ok), jnp.mean(jnp.abs(x_cf - x))


# ----------------------------------------------------------------------------- the task


def _replicate(modules: Mapping[str, Any], mesh: jax.sharding.Mesh) -> None:
    commit(modules, NamedSharding(mesh, P()))


@dataclasses.dataclass(frozen=True, eq=False)
class GeneratorTask:
    """The generator family as a :class:`jaxcf.training.Task`.

    Modules: ``generator``, ``generator_ema``, ``opt_generator`` and, with a discriminator,
    ``discriminator`` and ``opt_discriminator``. Batches are ``{"x": [B, ...]}``. Evaluation:
    validity and L1 of the EMA generator on ``val_x`` with targets from a fixed key.
    """

    config: GeneratorTrainConfig
    classifier: Any
    val_x: np.ndarray
    mesh: jax.sharding.Mesh | None = None

    def __post_init__(self):
        # Pure once: each step then passes the same pytree (rebuilding it per step would
        # merge the module on the host every time).
        classifier = as_pure(self.classifier)
        if self.mesh is not None:  # beside the replicated modules (it may be committed elsewhere)
            classifier = jax.device_put(classifier, NamedSharding(self.mesh, P()))
        object.__setattr__(self, "classifier", classifier)

    def config_dict(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "classifier": classifier_digest(self.classifier)}

    def init(self, seed: int, plan: Plan) -> dict[str, Any]:
        del plan
        cfg = self.config
        g = gen_lib.build(cfg.generator, seed=seed)
        adam_g = optax.adam(cfg.lr_generator, b1=cfg.b1, b2=cfg.b2)
        modules = {
            "generator": g,
            "generator_ema": nnx.clone(g),
            "opt_generator": nnx.Optimizer(g, adam_g, wrt=nnx.Param),
        }
        if cfg.discriminator is not None:
            d = gen_lib.build(cfg.discriminator, seed=seed + 1)
            adam_d = optax.adam(cfg.lr_discriminator, b1=cfg.b1, b2=cfg.b2)
            modules["discriminator"] = d
            modules["opt_discriminator"] = nnx.Optimizer(d, adam_d, wrt=nnx.Param)
        if self.mesh is not None:
            _replicate(modules, self.mesh)
        else:
            commit(modules)
        return modules

    @functools.cached_property
    def _settings(self) -> _StepSettings:  # once per task, not per step
        return _StepSettings.of(self.config)

    def train_step(self, modules, batch, key) -> dict[str, Array]:
        x = batch["x"]
        if self.mesh is not None:
            x = jax.device_put(x, NamedSharding(self.mesh, P("data")))
        return train_step(
            self._settings,
            self.classifier,
            modules["generator"],
            modules["generator_ema"],
            modules["opt_generator"],
            modules.get("discriminator"),
            modules.get("opt_discriminator"),
            x,
            key,
        )

    def evaluate(self, modules) -> dict[str, float]:
        x = jnp.asarray(self.val_x[: self.config.val_examples])
        validity, l1 = _validate(
            self._settings,
            self.classifier,
            modules["generator_ema"],
            x,
            jax.random.key(self.config.seed + 12345),
        )
        return {"val_validity": float(validity), "val_l1": float(l1)}


def train_generator(
    config: GeneratorTrainConfig,
    classifier: Any,
    train_x: np.ndarray,
    val_x: np.ndarray,
    workdir: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    overwrite: bool = False,
    desc: str = "generator",
) -> tuple[nnx.Module, dict[str, Any]]:
    """Trains a generator against ``classifier`` and saves ``workdir/checkpoint``.

    Args:
      config: what to train and how.
      classifier: the frozen classifier (an NNX module or any classifier of
        :mod:`jaxcf.core`).
      train_x: ``[N, *input_shape]`` training inputs (labels are not used: the targets come
        from the classifier).
      val_x: held-out inputs for the periodic validation.
      workdir: where ``progress/`` (resumable) and ``checkpoint/`` go.
      metadata: extra JSON metadata to store (data set name, classifier checkpoint, ...).
      mesh: a 1-D ``data`` mesh to split each batch over (``None``: the default device).
      overwrite: replace an existing checkpoint.

    Returns:
      The EMA generator (what explains) and the saved metadata.
    """
    workdir = Path(workdir)
    final = final_checkpoint(workdir, overwrite=overwrite)
    _check_compatible(config, classifier, train_x)
    if mesh is not None and config.batch_size % mesh.devices.size:
        raise ValueError(
            f"batch_size {config.batch_size} must be a multiple of the mesh's "
            f"{mesh.devices.size} devices"
        )
    task = GeneratorTask(config, classifier, np.asarray(val_x), mesh)
    meta = {
        **dict(metadata or {}),
        "configs": {"generator": gen_lib.config_to_dict(config.generator)},
        "train_config": config.to_dict(),
        "classifier_digest": classifier_digest(classifier),
        "target": config.target,
    }
    keep = frozenset(config.keep_steps)

    def snapshot(step: int, modules: Mapping[str, Any]) -> None:
        if step in keep:
            where = workdir / SNAPSHOTS_DIR / f"step_{step:06d}"
            entries = {"generator": modules["generator_ema"]}
            checkpoint.save(where, entries, metadata={**meta, "step": step}, overwrite=True)

    result = fit(
        task,
        {"x": np.asarray(train_x, np.float32)},
        config.loop_config(),
        progress_dir=workdir / PROGRESS_DIR,
        desc=desc,
        after_step=snapshot if keep else None,
    )
    generator = result.modules["generator_ema"]
    stored = save_result(final, {"generator": generator}, meta, result, overwrite=overwrite)
    return generator, stored


def _check_compatible(config: GeneratorTrainConfig, classifier: Any, x: np.ndarray) -> None:
    """Clear errors before anything compiles: data shape vs generator, classifier outputs vs
    the generator's condition width."""
    gcfg = config.generator
    want = getattr(gcfg, "input_shape", None)
    if want is None and getattr(gcfg, "kind", "") == "tabular_generator":
        want = (TabularTransform.from_dict(gcfg.transform).dim,)
    if want is not None and tuple(x.shape[1:]) != tuple(want):
        raise ValueError(
            f"training inputs have per-example shape {tuple(x.shape[1:])} but the generator "
            f"expects {tuple(want)}"
        )
    outputs = checks.classifier_io(as_pure(classifier), tuple(x.shape[1:]))
    k = 1 if config.target == "regression" else outputs
    if gcfg.cond_dim != k:
        raise ValueError(
            f"generator cond_dim {gcfg.cond_dim} does not match the classifier's "
            f"{'1 regression output' if k == 1 else f'{k} classes'}"
        )
    dcfg = config.discriminator
    if dcfg is not None and dcfg.cond_dim != k:
        raise ValueError(f"discriminator cond_dim {dcfg.cond_dim} != {k}")
