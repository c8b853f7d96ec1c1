"""Training the attribute-informed encoder-decoder (:mod:`jaxcf.models`, AttGAN-like)
through the core's loop, and loading it as a pure model for the AIP counterfactual method.

Each step, on a batch of images ``x`` with their true attributes ``a`` (``{0, 1}``):

* target attributes ``b`` are drawn from the step's key (``targets``): ``"permute"`` (another
  image's attributes, a random permutation of the batch, as AttGAN), ``"flip"`` (one uniformly
  chosen attribute flipped per image) or ``"mixed"`` (each image one or the other with
  probability 1/2). A flip that switches an attribute on switches off those it excludes (one hair
  colour at a time; mustache or no beard; bald or receding hairline, or bangs; straight or wavy
  hair), as AttGAN's attribute-conflict rule, for the names a data set has
  (:func:`attribute_conflicts`).
* generator step (encoder and decoder, against the current discriminator ``D`` and attribute
  classifier ``C``, both parts of :class:`~jaxcf.models.AttributeDiscriminator`)::

      w_rec   * mean |dec(enc(x), a) - x|            L1 per pixel, in [0, 1] units (AttGAN: 100)
    + w_cls_g * BCE(C(x_b), b),  x_b = dec(enc(x), b)  mean over images and attributes (AttGAN: 10)
    + w_adv   * L_G(D(x_b))                           hinge (-D) or non-saturating (softplus(-D))

* discriminator step, on the same step's ``x_b`` (computed once, gradients stopped; AttGAN
  draws fresh fakes for a discriminator step before the generator's, this saves a generator
  pass)::

      L_D(D(x), D(x_b)) + w_cls_d * BCE(C(x), a)     hinge or non-saturating; C on real images
                                                     with their true attributes (AttGAN: 1)

* the generator's EMA copy moves with decay ``min(ema_decay, (1 + t) / (10 + t))``; it is what
  is evaluated and saved.

The adversarial loss: AttGAN uses WGAN-GP (5 critic steps a generator step, a gradient penalty
through the critic). Here the default is the hinge loss with a spectrally normalised
discriminator, one step each: no gradient penalty, so no second-order backward pass through
the discriminator and no extra critic steps (both expensive on CPU), and the same loss the
project's other GANs train stably with. ``gan_loss="vanilla"`` gives the non-saturating loss
instead. Adam with AttGAN's betas (0.5, 0.999) for both, at ``lr_generator`` and
``lr_discriminator``.

Each evaluation reports, on a fixed held-out batch (the first ``val_examples`` test images):

* ``val_l1``, ``val_mse``: reconstruction errors of ``dec(enc(x), a)`` with the true
  attributes, beside the mean training image's (``mean_image_l1``, ``mean_image_mse``), and
  ``val_l1_a0`` with ``C``'s probabilities ``a0 = sigmoid(C(x))`` instead (what AIP starts from);
* ``val_attr_acc``: ``C``'s accuracy on the real held-out images (over images and attributes)
  beside always answering each attribute's majority value in training (``majority_attr_acc``);
* the key check, for each attribute ``n`` of ``flip_attributes``: ``flip_acc_<n>``, how often
  ``C`` decides the flipped value on ``dec(enc(x), flip(a, n))``, beside ``flip_base_<n>``, how
  often it already decides that value on the plain reconstruction (a decoder that ignored ``a``
  would score ``flip_acc == flip_base``); ``flip_acc`` and ``flip_base`` average them. ``C`` is
  also the classifier the generator was trained against, so this measures control of ``C``'s
  decision, not an independent judge's.

It saves ``<workdir>/samples/edits_<step>.png``: columns of held-out faces, rows the input, its
reconstruction, and one row per attribute of ``flip_attributes`` flipped. ``<workdir>/checkpoint``
holds the EMA generator (entry ``generator``) and the discriminator with its attribute head
(``discriminator``) and, in its metadata, what :func:`load_attgan` needs; an interrupted run
resumes from ``<workdir>/progress``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxcf import report
from jaxcf.core import as_pytree, validation
from jaxcf.data import load_dataset
from jaxcf.models import ATTGAN_KIND as KIND
from jaxcf.models import (
    AttGANConfig,
    AttGANGenerator,
    AttributeDiscriminator,
    AttributeModel,
    attribute_conflicts,
    build_attgan,
    flip_attributes,
)
from jaxcf.training._counterfactual import gan_losses
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

SAMPLES_DIR = "samples"
"""``metadata["kind"]`` of an AttGAN checkpoint."""
TARGETS = ("permute", "flip", "mixed")
"""Groups of CelebA attributes of which at most one is on: switching one on switches the
others off."""


@dataclasses.dataclass(frozen=True)
class AttGANTrainConfig:
    """Attributes:
    model: the encoder-decoder and discriminator; its ``input_shape`` must be the data set's
      image shape and its ``num_attributes`` the data set's number of attributes.
    dataset: registered data set of ``[0, 1]`` images with ``attributes`` ``[N, t]`` in
      ``{0, 1}`` and ``attribute_names`` (``"celeba"``), with ``train`` and ``test`` splits.
    targets: how target attributes are drawn, ``"permute"``, ``"flip"`` or ``"mixed"`` (see
      the module docstring).
    w_rec, w_cls_g, w_cls_d, w_adv: loss weights (AttGAN: 100, 10, 1, 1).
    gan_loss: ``"hinge"`` or ``"vanilla"`` (non-saturating).
    lr_generator, lr_discriminator, b1, b2: Adam's rates and betas.
    ema_decay: decay of the generator's EMA copy (0: the copy is the generator).
    batch_size, steps, eval_every, save_every, seed: the loop's schedule.
    train_examples: use the first this many training images (``None``: all).
    val_examples: held-out images of the periodic evaluation.
    samples: faces (columns) per edit grid.
    flip_attributes: the attributes flipped in the evaluation and the grids.
    """

    model: AttGANConfig = AttGANConfig()
    dataset: str = "celeba"
    targets: Literal["permute", "flip", "mixed"] = "mixed"
    w_rec: float = 100.0
    w_cls_g: float = 10.0
    w_cls_d: float = 1.0
    w_adv: float = 1.0
    gan_loss: Literal["hinge", "vanilla"] = "hinge"
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    ema_decay: float = 0.999
    batch_size: int = 32
    steps: int = 10_000
    eval_every: int = 1000
    save_every: int = 500
    seed: int = 0
    train_examples: int | None = None
    val_examples: int = 256
    samples: int = 8
    flip_attributes: tuple[str, ...] = ("Male", "Young", "Eyeglasses", "Blond_Hair")

    def __post_init__(self):
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", AttGANConfig.from_dict(self.model))
        if not isinstance(self.model, AttGANConfig):
            raise TypeError(f"AttGANTrainConfig.model must be an AttGANConfig, got {self.model!r}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(
                f"AttGANTrainConfig.dataset must name a data set, got {self.dataset!r}"
            )
        object.__setattr__(self, "flip_attributes", tuple(self.flip_attributes))
        if not all(isinstance(n, str) and n for n in self.flip_attributes):
            raise ValueError(
                f"AttGANTrainConfig.flip_attributes must be attribute names, got "
                f"{self.flip_attributes!r}"
            )
        if len(set(self.flip_attributes)) != len(self.flip_attributes):
            raise ValueError(
                f"AttGANTrainConfig.flip_attributes repeats a name: {self.flip_attributes}"
            )
        validation.one_of(self, "targets", TARGETS)
        validation.one_of(self, "gan_loss", ("hinge", "vanilla"))
        validation.non_negative(self, "w_rec", "w_cls_g", "w_cls_d", "w_adv")
        validation.positive(self, "lr_generator", "lr_discriminator")
        validation.unit_interval(self, "b1", "b2", "ema_decay")
        validation.at_least(self, 0, "seed")
        validation.at_least(
            self, 1, "batch_size", "steps", "eval_every", "save_every", "val_examples", "samples"
        )
        # "permute" needs someone to swap with; "flip" works on a batch of one.
        if self.targets != "flip" and self.batch_size < 2:
            raise ValueError(
                f"targets={self.targets!r} permutes the batch: batch_size must be >= 2"
            )
        if self.train_examples is not None:
            validation.at_least(self, 1, "train_examples")

    def loop_config(self) -> LoopConfig:
        return loop_config_of(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- attributes


def draw_targets(key: Array, a: Array, mode: str, conflicts: Array) -> Array:
    """The step's target attributes ``b [B, t]`` for true attributes ``a`` (see the module
    docstring for the ``mode``\\ s)."""
    kp, kf, km = jax.random.split(key, 3)
    b, t = a.shape
    if mode == "permute":
        return a[jax.random.permutation(kp, b)]
    flipped = flip_attributes(a, jax.random.randint(kf, (b,), 0, t), conflicts)
    if mode == "flip":
        return flipped
    if mode == "mixed":
        permuted = a[jax.random.permutation(kp, b)]
        return jnp.where(jax.random.bernoulli(km, 0.5, (b, 1)), permuted, flipped)
    raise ValueError(f"unknown target mode {mode!r}; expected one of {TARGETS}")


def _bce(logits: Array, labels: Array) -> Array:
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def _accuracy(logits: Array, labels: Array) -> Array:
    return jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32))


# ----------------------------------------------------------------------------- the model


# ----------------------------------------------------------------------------- the steps


@functools.lru_cache(maxsize=32)
def _adam(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
    """Adam, cached: the transformation is static in the jitted step, so equal settings must
    give the same object to share its compilation."""
    return optax.adam(learning_rate, b1=b1, b2=b2)


@nnx.jit(static_argnames=("targets", "gan_loss"))
def _train_step(
    generator,
    generator_ema,
    discriminator,
    opt_g,
    opt_d,
    x,
    a,
    key,
    conflicts,
    weights,
    ema_decay,
    targets,
    gan_loss,
):
    # The weights, decay and conflicts are data, so runs that differ only in them share a program.
    b = draw_targets(key, a, targets, conflicts)
    n = x.shape[0]

    def g_loss(g, d):
        z = g.encode(x)
        out = jax.nn.sigmoid(
            g.decode_logits(jnp.concatenate([z, z]), jnp.concatenate([a, b]))
        )  # one decoder pass for the reconstruction and the edit
        x_rec, x_b = out[:n], out[n:]
        adv_b, cls_b = d(x_b)
        terms = {
            "rec": jnp.mean(jnp.abs(x_rec - x)),
            "cls_g": _bce(cls_b, b),
            "adv_g": gan_losses(adv_b, adv_b, gan_loss)[1],  # L_G reads only the fake logits
        }
        total = (
            weights["rec"] * terms["rec"]
            + weights["cls_g"] * terms["cls_g"]
            + weights["adv"] * terms["adv_g"]
        )
        return total, (terms, x_b, _accuracy(cls_b, b))

    # The discriminator is an argument (not captured) so that the state its forward pass
    # updates (spectral-norm vectors) stays within this trace; only the generator is
    # differentiated.
    (loss_g, (terms, x_b, edit_acc)), grads = nnx.value_and_grad(g_loss, has_aux=True)(
        generator, discriminator
    )
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        opt_g.update(generator, grads)
    x_b = jax.lax.stop_gradient(x_b)

    def d_loss(d):
        both = jnp.concatenate([x, x_b])
        if d.cls_convs is None:  # one trunk: one pass over real and fake images
            adv, cls = d(both)
            cls = cls[:n]
        else:  # the classifier sees real images only
            adv, cls = d.adversarial(both), d.attribute_logits(x)
        adv_d = gan_losses(adv[:n], adv[n:], gan_loss)[0]
        cls_d = _bce(cls, a)
        return adv_d + weights["cls_d"] * cls_d, (adv_d, cls_d, _accuracy(cls, a))

    (loss_d, (adv_d, cls_d, real_acc)), grads = nnx.value_and_grad(d_loss, has_aux=True)(
        discriminator
    )
    with jax.numpy_dtype_promotion("standard"):
        opt_d.update(discriminator, grads)
    t = opt_g.step[...].astype(jnp.float32)
    update_ema(generator_ema, generator, jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t)))
    return {
        "loss_g": loss_g,
        **terms,
        "loss_d": loss_d,
        "adv_d": adv_d,
        "cls_d": cls_d,
        "attr_acc": real_acc,  # C on the batch's real images
        "edit_acc": edit_acc,  # C on the batch's edits, against their targets
    }


@functools.partial(jax.jit, static_argnames=("flips",))
def _evaluate(model: AttributeModel, x, a, mean_image, majority, conflicts, flips):
    z = model.encode(x)
    a0 = model.attributes(x)
    recon = model.decode(z, a)
    baseline = mean_image[None]
    pred_recon = model.attribute_logits(recon) > 0
    out = {
        "val_l1": jnp.mean(jnp.abs(recon - x)),
        "val_mse": jnp.mean((recon - x) ** 2),
        "mean_image_l1": jnp.mean(jnp.abs(baseline - x)),
        "mean_image_mse": jnp.mean((baseline - x) ** 2),
        "val_l1_a0": jnp.mean(jnp.abs(model.decode(z, a0) - x)),
        "val_attr_acc": jnp.mean(((a0 > 0.5) == (a > 0.5)).astype(jnp.float32)),
        "majority_attr_acc": jnp.mean(((majority[None] > 0.5) == (a > 0.5)).astype(jnp.float32)),
    }
    acc, base = [], []
    for j in flips:
        b = flip_attributes(a, jnp.full((x.shape[0],), j, jnp.int32), conflicts)
        want = b[:, j] > 0.5
        decided = model.attribute_logits(model.decode(z, b))[:, j] > 0
        acc.append(jnp.mean((decided == want).astype(jnp.float32)))
        base.append(jnp.mean((pred_recon[:, j] == want).astype(jnp.float32)))
    return out, jnp.stack(acc), jnp.stack(base)


def held_out_scores(
    model: AttributeModel,
    x: np.ndarray,
    a: np.ndarray,
    mean_image: np.ndarray,
    majority: np.ndarray,
    flip_names: Sequence[str],
) -> dict[str, float]:
    """The periodic evaluation's numbers (see the module docstring) of ``model`` on faces
    ``x [B, H, W, C]`` with true attributes ``a [B, t]``, beside the mean training image
    ``[H, W, C]`` and each attribute's training share ``majority [t]``; ``flip_names`` are the
    attributes whose flips are scored."""
    names = tuple(model.attribute_names)
    out, acc, base = _evaluate(
        model,
        jnp.asarray(x),
        jnp.asarray(a),
        jnp.asarray(mean_image),
        jnp.asarray(majority),
        jnp.asarray(attribute_conflicts(names)),
        tuple(names.index(n) for n in flip_names),
    )
    metrics = {k: float(v) for k, v in out.items()}
    acc, base = np.asarray(acc), np.asarray(base)
    for name, p, q in zip(flip_names, acc, base, strict=True):
        metrics[f"flip_acc_{name}"] = float(p)
        metrics[f"flip_base_{name}"] = float(q)
    metrics["flip_acc"] = float(acc.mean())
    metrics["flip_base"] = float(base.mean())
    return metrics


@functools.partial(jax.jit, static_argnames=("flips",))
def _edits(model: AttributeModel, x, a, conflicts, flips):
    z = model.encode(x)
    rows = [x, model.decode(z, a)]
    for j in flips:
        rows.append(model.decode(z, flip_attributes(a, jnp.full((x.shape[0],), j), conflicts)))
    return jnp.stack(rows)


# ----------------------------------------------------------------------------- the task


@dataclasses.dataclass
class AttGANTask:
    """The AttGAN family as a :class:`jaxcf.training.Task`: modules ``generator``,
    ``generator_ema``, ``discriminator``, ``opt_generator`` and ``opt_discriminator``; batches
    ``{"x": [B, H, W, C] in [0, 1], "a": [B, t] in {0, 1}}``."""

    config: AttGANTrainConfig
    attribute_names: tuple[str, ...]
    val_x: np.ndarray
    val_a: np.ndarray
    mean_image: np.ndarray  # [H, W, C], the mean training image
    majority: np.ndarray  # [t], each attribute's share of the training images
    samples_dir: Path | None = None

    def __post_init__(self):
        self.attribute_names = tuple(self.attribute_names)
        t = self.config.model.num_attributes
        if len(self.attribute_names) != t:
            raise ValueError(
                f"the model takes {t} attributes, but {len(self.attribute_names)} names were "
                f"given: {self.attribute_names}"
            )
        missing = [n for n in self.config.flip_attributes if n not in self.attribute_names]
        if missing:
            raise ValueError(
                f"flip_attributes {missing} are not among the attributes {self.attribute_names}"
            )
        self._conflicts = jnp.asarray(attribute_conflicts(self.attribute_names))
        self._flips = tuple(self.attribute_names.index(n) for n in self.config.flip_attributes)
        cfg = self.config
        self._weights = {
            "rec": jnp.float32(cfg.w_rec),
            "cls_g": jnp.float32(cfg.w_cls_g),
            "cls_d": jnp.float32(cfg.w_cls_d),
            "adv": jnp.float32(cfg.w_adv),
        }

    def config_dict(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "attribute_names": list(self.attribute_names)}

    def init(self, seed: int, plan: Plan) -> dict[str, Any]:
        del plan
        cfg = self.config
        g, d = build_attgan(cfg.model, seed)
        modules = {
            "generator": g,
            "generator_ema": nnx.clone(g),
            "discriminator": d,
            "opt_generator": nnx.Optimizer(
                g, _adam(cfg.lr_generator, cfg.b1, cfg.b2), wrt=nnx.Param
            ),
            "opt_discriminator": nnx.Optimizer(
                d, _adam(cfg.lr_discriminator, cfg.b1, cfg.b2), wrt=nnx.Param
            ),
        }
        commit(modules)
        return modules

    def train_step(self, modules, batch, key) -> dict[str, Array]:
        cfg = self.config
        return _train_step(
            modules["generator"],
            modules["generator_ema"],
            modules["discriminator"],
            modules["opt_generator"],
            modules["opt_discriminator"],
            batch["x"],
            batch["a"],
            key,
            self._conflicts,
            self._weights,
            jnp.float32(cfg.ema_decay),
            cfg.targets,
            cfg.gan_loss,
        )

    def model(
        self, generator: AttGANGenerator, discriminator: AttributeDiscriminator
    ) -> AttributeModel:
        """The pure model of a generator (e.g. the EMA copy) and a discriminator, both taken in
        eval mode (copies: the modules themselves stay in training mode)."""
        return AttributeModel(
            as_pytree(generator), as_pytree(discriminator), self.config.model, self.attribute_names
        )

    def evaluate(self, modules) -> dict[str, float]:
        model = self.model(modules["generator_ema"], modules["discriminator"])
        metrics = held_out_scores(
            model,
            self.val_x,
            self.val_a,
            self.mean_image,
            self.majority,
            self.config.flip_attributes,
        )
        if self.samples_dir is not None:
            step = int(modules["opt_generator"].step[...])
            self.save_grid(model, self.samples_dir / f"edits_{step:07d}.png")
        return metrics

    def save_grid(self, model: AttributeModel, path: Path) -> None:
        """The edit grid of the first ``samples`` held-out faces: input, reconstruction, then
        each of ``flip_attributes`` flipped (see the module docstring)."""
        n = min(self.config.samples, len(self.val_x))
        rows = np.asarray(
            _edits(
                model,
                jnp.asarray(self.val_x[:n]),
                jnp.asarray(self.val_a[:n]),
                self._conflicts,
                self._flips,
            )
        )
        labels = ["input", "reconstruction", *(f"flip {f}" for f in self.config.flip_attributes)]
        report.labelled_rows(list(zip(labels, rows, strict=True)), path)


# ----------------------------------------------------------------------------- entry points


def _split(config: AttGANTrainConfig, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    data = load_dataset(config.dataset, split)
    x = np.asarray(data.inputs, np.float32)
    a = getattr(data, "attributes", None)
    names = tuple(getattr(data, "attribute_names", ()))
    if a is None or not names:
        raise ValueError(f"{config.dataset} has no attributes to condition an AttGAN on")
    if x.ndim != 4 or tuple(x.shape[1:]) != config.model.input_shape:
        raise ValueError(
            f"{config.dataset} images are {tuple(x.shape[1:])}, but the AttGAN expects "
            f"{config.model.input_shape}"
        )
    if len(names) != config.model.num_attributes:
        raise ValueError(
            f"{config.dataset} has {len(names)} attributes, but the AttGAN takes "
            f"{config.model.num_attributes}"
        )
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(f"{config.dataset}'s images are not in [0, 1]")
    a = np.asarray(a, np.float32)
    if not np.all((a == 0.0) | (a == 1.0)):
        raise ValueError(f"{config.dataset}'s attributes are not in {{0, 1}}")
    return x, a, names


def train_attgan(
    config: AttGANTrainConfig, workdir: str | Path, *, overwrite: bool = False
) -> tuple[AttributeModel, dict[str, Any]]:
    """Trains the AttGAN-like model as ``config`` says; writes ``workdir/checkpoint``, the edit
    grid of each evaluation under ``workdir/samples`` and the final model's ``edits.png`` in
    ``workdir``. Resumes an interrupted run.

    Returns:
      The trained model (the EMA generator and the discriminator's attribute head) and the
      saved metadata.

    Raises:
      FileExistsError: a checkpoint is there and ``overwrite`` is False.
      ValueError: the data set's images are not ``[0, 1]`` images of the model's input shape,
        it has no (or another number of) attributes, or ``flip_attributes`` names one it lacks.
    """
    workdir = Path(workdir)
    final = final_checkpoint(workdir, overwrite=overwrite)
    x, a, names = _split(config, "train")
    if config.train_examples is not None:
        x, a = x[: config.train_examples], a[: config.train_examples]
    val_x, val_a, val_names = _split(config, "test")
    if val_names != names:
        raise ValueError(f"{config.dataset}'s splits name their attributes differently")
    samples_dir = workdir / SAMPLES_DIR
    samples_dir.mkdir(parents=True, exist_ok=True)
    task = AttGANTask(
        config,
        names,
        val_x[: config.val_examples],
        val_a[: config.val_examples],
        x.mean(axis=0, dtype=np.float64).astype(np.float32),
        a.mean(axis=0, dtype=np.float64).astype(np.float32),
        samples_dir,
    )
    result = fit(
        task,
        {"x": x, "a": a},
        config.loop_config(),
        progress_dir=workdir / PROGRESS_DIR,
        desc=f"attgan {config.dataset}",
    )
    generator, discriminator = result.modules["generator_ema"], result.modules["discriminator"]
    model_config = dataclasses.asdict(config.model)
    meta = {
        "kind": KIND,
        "dataset": config.dataset,
        "image_shape": list(config.model.input_shape),
        "latent_dim": config.model.latent_dim,
        "latent_shape": list(config.model.latent_shape),
        "attribute_names": list(names),
        "configs": {"generator": model_config, "discriminator": model_config},
        "train_config": config.to_dict(),
    }
    entries = {"generator": generator, "discriminator": discriminator}
    stored = save_result(final, entries, meta, result, overwrite=overwrite)
    model = task.model(generator, discriminator)
    task.save_grid(model, workdir / "edits.png")
    return model, stored
