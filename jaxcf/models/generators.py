"""Conditional counterfactual generators and their discriminators (Flax NNX).

A generator maps a batch of queries to counterfactuals in one forward pass::

    x_cf = generator(x, y_m, y_t, keys, train=False)

* ``x``: ``[B, *input_shape]`` queries in the classifier's input units;
* ``y_m``: ``[B, K]`` what the classifier says about ``x`` (class probabilities, or ``[B, 1]``
  regression values);
* ``y_t``: ``[B, K]`` the target in the same form (a one-hot class, a distribution, a value);
* ``keys``: ``[B]`` one PRNG key per query. All randomness (injected noise, Gumbel draws) comes
  from the query's own key, so a query's counterfactual does not depend on the rest of the batch:
  nothing normalises across the batch.
* ``train``: training mode (soft Gumbel-softmax heads for tabular data; images and series
  behave the same in both modes).

A discriminator scores ``(x, y)`` pairs: ``[B]`` logits (``[B, T]`` per step for series), with
the condition entering through a projection head (Miyato & Koyama, 2018):
``D(x, y) = w . phi(x) + <E y, phi(x)>``.

Families (one config class each, ``kind`` names it; :func:`build` builds any of them):

* images: :class:`ImageGenerator` — residual blocks at full resolution (no down- or
  upsampling), each normalisation conditioned on separate embeddings of ``y_m`` and ``y_t``,
  per-pixel noise injected in every block; outputs a perturbation added to ``x`` and clipped to
  the image box. :class:`ImageDiscriminator`: strided convolutions, projection head.
* time series: :class:`SeriesGenerator` — a bidirectional LSTM reading, at each step, the value,
  fresh noise for that step and both conditions; outputs a per-step perturbation.
  :class:`SeriesDiscriminator`: an LSTM with per-step projection logits.
  :class:`SeriesAutoencoder`: the autoencoder variant ``x + D(E(x), y_m, y_t)`` (no noise;
  trained with an MMD term instead of a discriminator).
* tabular: :class:`TabularGenerator` — a residual MLP emitting raw scores for every block of the
  :class:`~jaxcf.tabular.TabularTransform` encoding, turned into a valid row by
  Gumbel-softmax heads (hard one-hot when explaining), with the user's constraints applied
  exactly (:mod:`jaxcf.tabular`). :class:`TabularDiscriminator`: a residual MLP, projection head.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcf.core import classifier_digest, validation
from jaxcf.core.targets import kind_of
from jaxcf.models import checkpoint
from jaxcf.models._spectral import SpectralConv
from jaxcf.models.checkpoint import CHECKPOINT_DIR
from jaxcf.tabular import Constraints, TabularTransform, activate, enforce

Array = jax.Array


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class ImageGeneratorConfig:
    """Attributes:
    input_shape: ``(H, W, C)`` of the images.
    cond_dim: width of ``y_m`` and ``y_t`` (the classifier's number of classes, or 1).
    width: channels of the residual blocks.
    blocks: number of residual blocks.
    groups: groups of the per-sample normalisation.
    domain: box the counterfactual is clipped to.
    """

    kind: Literal["image_generator"] = "image_generator"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    cond_dim: int = 10
    width: int = 32
    blocks: int = 3
    groups: int = 8
    domain: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "domain", tuple(self.domain))
        validation.at_least(self, 1, "cond_dim", "width", "blocks", "groups")
        validation.box(self, "domain")
        if self.width % self.groups:
            raise ValueError(f"width {self.width} must be a multiple of groups {self.groups}")


@dataclasses.dataclass(frozen=True)
class ImageDiscriminatorConfig:
    """Attributes: ``input_shape``, ``cond_dim`` as for the generator; ``widths``: channels of
    the stride-2 convolutions."""

    kind: Literal["image_discriminator"] = "image_discriminator"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    cond_dim: int = 10
    widths: tuple[int, ...] = (32, 64, 128)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "widths", tuple(self.widths))
        validation.at_least(self, 1, "cond_dim")


@dataclasses.dataclass(frozen=True)
class SeriesGeneratorConfig:
    """Attributes:
    input_shape: ``(T, C)`` of the series.
    cond_dim: width of ``y_m`` and ``y_t``.
    hidden: LSTM units per direction.
    noise_dim: noise channels drawn afresh at every step.
    cond_embed: ``0``: ``y_m`` and ``y_t`` enter every step as they are; ``> 0``: each through a
      linear embedding of its own of this width (the paper's ECG generator: 64 each).
    """

    kind: Literal["series_generator"] = "series_generator"
    input_shape: tuple[int, int] = (140, 1)
    cond_dim: int = 2
    hidden: int = 64
    noise_dim: int = 4
    cond_embed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        validation.at_least(self, 1, "cond_dim", "hidden")
        validation.at_least(self, 0, "noise_dim", "cond_embed")


@dataclasses.dataclass(frozen=True)
class SeriesDiscriminatorConfig:
    kind: Literal["series_discriminator"] = "series_discriminator"
    input_shape: tuple[int, int] = (140, 1)
    cond_dim: int = 2
    hidden: int = 64

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        validation.at_least(self, 1, "cond_dim", "hidden")


@dataclasses.dataclass(frozen=True)
class SeriesAutoencoderConfig:
    """The autoencoder variant: ``latent`` is the size of ``E(x)``; ``hidden`` the LSTM units."""

    kind: Literal["series_autoencoder"] = "series_autoencoder"
    input_shape: tuple[int, int] = (140, 1)
    cond_dim: int = 2
    hidden: int = 64
    latent: int = 32

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        validation.at_least(self, 1, "cond_dim", "hidden", "latent")


@dataclasses.dataclass(frozen=True)
class TabularGeneratorConfig:
    """Attributes:
    transform: the :class:`~jaxcf.tabular.TabularTransform` as its ``to_dict()`` (kept as a
      dict so the config stays JSON and hashable by value through :func:`config_to_dict`).
    constraints: ``{"immutable": [...], "increasing": [...]}`` column names.
    cond_dim: width of ``y_m`` and ``y_t``.
    width: hidden units of the residual MLP.
    blocks: residual blocks.
    noise_dim: size of the noise vector.
    temperature: Gumbel-softmax temperature during training.
    """

    kind: Literal["tabular_generator"] = "tabular_generator"
    transform: Any = None
    constraints: Any = None
    cond_dim: int = 2
    width: int = 128
    blocks: int = 2
    noise_dim: int = 8
    temperature: float = 0.5

    def __post_init__(self):
        if self.transform is None:
            raise ValueError("TabularGeneratorConfig needs the fitted transform (to_dict())")
        validation.at_least(self, 1, "cond_dim", "width", "blocks")
        validation.at_least(self, 0, "noise_dim")
        validation.positive(self, "temperature")

    def __hash__(self):  # dict fields: hash the kind and sizes (configs are compared by ==)
        return hash((self.kind, self.cond_dim, self.width, self.blocks, self.noise_dim))


@dataclasses.dataclass(frozen=True)
class TabularDiscriminatorConfig:
    kind: Literal["tabular_discriminator"] = "tabular_discriminator"
    input_dim: int = 85
    cond_dim: int = 2
    width: int = 128
    blocks: int = 2

    def __post_init__(self):
        validation.at_least(self, 1, "input_dim", "cond_dim", "width", "blocks")


# ----------------------------------------------------------------------------- conditions


def model_condition(outputs: Array, *, regression: bool) -> Array:
    """``y_m`` ``[B, K]`` from classifier outputs ``[B, C]``: class probabilities, or a
    regressor's raw ``[B, 1]`` output."""
    outputs = outputs.astype(jnp.float32)
    return outputs if regression else jax.nn.softmax(outputs, axis=-1)


def target_condition(target: Array, num_outputs: int) -> Array:
    """``y_t`` ``[B, K]`` for a target batch of any kind (:mod:`jaxcf.core.targets`): the one-hot
    of a class index, a distribution as it is, a regression value as ``[B, 1]``."""
    kind = kind_of(target)
    if kind == "class":
        return jax.nn.one_hot(target, num_outputs, dtype=jnp.float32)
    if kind == "soft":
        return target.astype(jnp.float32)
    return target.astype(jnp.float32)[:, None]


# ----------------------------------------------------------------------------- pieces


def _noise(keys: Array, shape: tuple[int, ...], salt: int) -> Array:
    """``[B, *shape]`` standard normal noise, row ``i`` drawn from ``fold_in(keys[i], salt)``."""
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, salt), shape))(keys)


def _check_keys(keys: Array, batch: int) -> None:
    if keys.shape[:1] != (batch,):
        raise ValueError(f"need one key per query: keys {keys.shape} for a batch of {batch}")


class CondNorm(nnx.Module):
    """Per-sample group normalisation whose scale and shift come from separate linear
    embeddings of ``y_m`` and ``y_t`` (zero-initialised, so training starts from plain
    normalisation). Works on ``[B, ..., C]``."""

    def __init__(self, channels: int, cond_dim: int, groups: int, *, rngs: nnx.Rngs):
        self.norm = nnx.GroupNorm(channels, groups, use_bias=False, use_scale=False, rngs=rngs)
        zeros = nnx.initializers.zeros_init()
        self.scale_m = nnx.Linear(cond_dim, channels, kernel_init=zeros, rngs=rngs)
        self.scale_t = nnx.Linear(cond_dim, channels, kernel_init=zeros, rngs=rngs)
        self.shift_m = nnx.Linear(cond_dim, channels, kernel_init=zeros, rngs=rngs)
        self.shift_t = nnx.Linear(cond_dim, channels, kernel_init=zeros, rngs=rngs)

    def __call__(self, h: Array, y_m: Array, y_t: Array) -> Array:
        expand = (slice(None),) + (None,) * (h.ndim - 2) + (slice(None),)
        scale = (1.0 + self.scale_m(y_m) + self.scale_t(y_t))[expand]
        shift = (self.shift_m(y_m) + self.shift_t(y_t))[expand]
        return self.norm(h) * scale + shift


def straight_through_clip(x: Array, lo: float, hi: float) -> Array:
    """``clip(x, lo, hi)`` forwards, identity backwards: a pixel pushed past the box still gets
    a gradient, so a generator cannot get stuck emitting out-of-range values."""
    return x + jax.lax.stop_gradient(jnp.clip(x, lo, hi) - x)


class _Generator(nnx.Module):
    """Common base: ``generate`` is the public name of ``__call__`` (what the pure, jittable
    wrapper :class:`~jaxcf.core.PureModule` forwards)."""

    def generate(self, x, y_m, y_t, keys, **kwargs):
        return self(x, y_m, y_t, keys, **kwargs)


# ----------------------------------------------------------------------------- images


class _ResBlock(nnx.Module):
    def __init__(self, width: int, cond_dim: int, groups: int, *, rngs: nnx.Rngs):
        self.norm1 = CondNorm(width, cond_dim, groups, rngs=rngs)
        self.conv1 = nnx.Conv(width, width, (3, 3), rngs=rngs)
        self.norm2 = CondNorm(width, cond_dim, groups, rngs=rngs)
        self.conv2 = nnx.Conv(width, width, (3, 3), rngs=rngs)
        self.noise_scale = nnx.Param(jnp.zeros((width,)))  # learned per-channel noise strength

    def __call__(self, h, y_m, y_t, noise):
        r = self.conv1(nnx.relu(self.norm1(h, y_m, y_t)))
        r = r + noise * self.noise_scale[...][None, None, None, :]
        r = self.conv2(nnx.relu(self.norm2(r, y_m, y_t)))
        return h + r


class ImageGenerator(_Generator):
    """Residual image generator at full resolution; returns ``clip(x + delta)``.

    Shapes: ``x [B, H, W, C]`` in the domain box, ``y_m, y_t [B, K]``, ``keys [B]`` ->
    ``x_cf [B, H, W, C]``. ``delta = tanh(.)`` so one step can move a pixel across the box.
    """

    def __init__(self, config: ImageGeneratorConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, w = config.input_shape[-1], config.width
        self.stem = nnx.Conv(c, w, (3, 3), rngs=rngs)
        self.blocks = nnx.List(
            [_ResBlock(w, config.cond_dim, config.groups, rngs=rngs) for _ in range(config.blocks)]
        )
        self.norm = CondNorm(w, config.cond_dim, config.groups, rngs=rngs)
        self.out = nnx.Conv(w, c, (3, 3), kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, x: Array, y_m: Array, y_t: Array, keys: Array, *, train: bool = False):
        del train
        _check_keys(keys, x.shape[0])
        h, w = x.shape[1:3]
        feat = self.stem(x)
        for i, block in enumerate(self.blocks):
            feat = block(feat, y_m, y_t, _noise(keys, (h, w, 1), i))
        delta = jnp.tanh(self.out(nnx.relu(self.norm(feat, y_m, y_t))))
        return straight_through_clip(x + delta, *self.config.domain)


class ImageDiscriminator(nnx.Module):
    """Spectrally normalised stride-2 convolutions with LeakyReLU(0.2), averaged over space,
    projection head: ``[B]``."""

    def __init__(self, config: ImageDiscriminatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        chans = (config.input_shape[-1], *config.widths)
        # Spectral normalisation (bound 1) keeps the hinge discriminator Lipschitz (Miyato et
        # al.), so it cannot overpower the generator early on.
        sizes, side = [], config.input_shape[0]
        for _ in config.widths:
            sizes.append(side)
            side = -(-side // 2)
        self.convs = nnx.List(
            [
                SpectralConv(a, b, kernel_size=3, input_size=n, strides=2, coeff=1.0, rngs=rngs)
                for a, b, n in zip(chans[:-1], chans[1:], sizes, strict=True)
            ]
        )
        self.linear = nnx.Linear(chans[-1], 1, rngs=rngs)
        self.embed = nnx.Linear(config.cond_dim, chans[-1], use_bias=False, rngs=rngs)

    def __call__(self, x: Array, y: Array) -> Array:
        h = x
        for conv in self.convs:
            h = nnx.leaky_relu(conv(h), 0.2)
        phi = jnp.mean(h, axis=(1, 2))
        return self.linear(phi)[:, 0] + jnp.sum(self.embed(y) * phi, axis=-1)


# ----------------------------------------------------------------------------- series


def _lstm_outputs(cell: nnx.OptimizedLSTMCell, x: Array, hidden: int, reverse: bool) -> Array:
    """Runs ``cell`` over ``x [B, T, C]`` from a zero carry; every step's hidden state
    ``[B, T, H]`` (in the input's time order also when ``reverse``). A plain ``lax.scan``: unlike
    ``nnx.RNN`` it also runs under ``jax.eval_shape`` of a captured module."""
    zeros = jnp.zeros((x.shape[0], hidden), x.dtype)

    def step(carry, x_t):
        carry, h = cell(carry, x_t)
        return carry, h

    _, hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(x, 0, 1), reverse=reverse)
    return jnp.swapaxes(hs, 0, 1)


class _BiLSTM(nnx.Module):
    """A bidirectional LSTM layer: ``[B, T, C]`` -> ``[B, T, 2H]`` (forward, backward)."""

    def __init__(self, d_in: int, hidden: int, *, rngs: nnx.Rngs):
        self.hidden = hidden
        self.fwd = nnx.OptimizedLSTMCell(d_in, hidden, rngs=rngs)
        self.bwd = nnx.OptimizedLSTMCell(d_in, hidden, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return jnp.concatenate(
            [
                _lstm_outputs(self.fwd, x, self.hidden, reverse=False),
                _lstm_outputs(self.bwd, x, self.hidden, reverse=True),
            ],
            axis=-1,
        )


def _per_step(v: Array, steps: int) -> Array:
    """``[B, K]`` -> ``[B, T, K]``, the same vector at every step."""
    return jnp.broadcast_to(v[:, None, :], (v.shape[0], steps, v.shape[1]))


class SeriesGenerator(_Generator):
    """Bidirectional LSTM over ``[x_t, noise_t, y_m, y_t]`` (with ``cond_embed``: over
    ``[x_t, noise_t, E_m y_m, E_t y_t]``); returns ``x + delta`` with a per-step ``delta``
    (series are unbounded, standardised units).

    Shapes: ``x [B, T, C]``, ``y_m, y_t [B, K]``, ``keys [B]`` -> ``[B, T, C]``.
    """

    def __init__(self, config: SeriesGeneratorConfig, *, rngs: nnx.Rngs):
        self.config = config
        t, c = config.input_shape
        cond = config.cond_embed or config.cond_dim
        if config.cond_embed:
            # Built only when asked for: without them every parameter draws the same initial
            # values as before the option existed (recorded generators stay reproducible).
            self.embed_m = nnx.Linear(config.cond_dim, config.cond_embed, rngs=rngs)
            self.embed_t = nnx.Linear(config.cond_dim, config.cond_embed, rngs=rngs)
        d_in = c + config.noise_dim + 2 * cond
        self.rnn = _BiLSTM(d_in, config.hidden, rngs=rngs)
        self.out = nnx.Linear(
            2 * config.hidden, c, kernel_init=nnx.initializers.zeros_init(), rngs=rngs
        )

    def __call__(self, x: Array, y_m: Array, y_t: Array, keys: Array, *, train: bool = False):
        del train
        _check_keys(keys, x.shape[0])
        steps = x.shape[1]
        if self.config.cond_embed:
            y_m, y_t = self.embed_m(y_m), self.embed_t(y_t)
        parts = [x, _per_step(y_m, steps), _per_step(y_t, steps)]
        if self.config.noise_dim:
            parts.insert(1, _noise(keys, (steps, self.config.noise_dim), 0))
        h = self.rnn(jnp.concatenate(parts, axis=-1))
        return x + self.out(h)


class SeriesDiscriminator(nnx.Module):
    """LSTM over the series; per-step logits ``w . h_t + <E y, h_t>``: ``[B, T]``."""

    def __init__(self, config: SeriesDiscriminatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        c = config.input_shape[1]
        self.cell = nnx.OptimizedLSTMCell(c, config.hidden, rngs=rngs)
        self.linear = nnx.Linear(config.hidden, 1, rngs=rngs)
        self.embed = nnx.Linear(config.cond_dim, config.hidden, use_bias=False, rngs=rngs)

    def __call__(self, x: Array, y: Array) -> Array:
        h = _lstm_outputs(self.cell, x, self.config.hidden, reverse=False)
        return self.linear(h)[..., 0] + jnp.einsum("btd,bd->bt", h, self.embed(y))


class SeriesAutoencoder(_Generator):
    """The autoencoder variant ``x_cf = x + D(E(x), y_m, y_t)``.

    ``E``: a bidirectional LSTM whose final states map to a ``latent``-d code; ``D``: a
    bidirectional LSTM reading ``[code, y_m, y_t]`` at every step and emitting a per-step
    perturbation. Deterministic: ``keys`` are accepted for the common signature and ignored.
    """

    def __init__(self, config: SeriesAutoencoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        c = config.input_shape[1]
        self.encoder = _BiLSTM(c, config.hidden, rngs=rngs)
        self.code = nnx.Linear(2 * config.hidden, config.latent, rngs=rngs)
        self.decoder = _BiLSTM(config.latent + 2 * config.cond_dim, config.hidden, rngs=rngs)
        self.out = nnx.Linear(
            2 * config.hidden, c, kernel_init=nnx.initializers.zeros_init(), rngs=rngs
        )

    def encode(self, x: Array) -> Array:
        """``[B, T, C]`` -> ``[B, latent]``: the time-mean of the encoder's outputs."""
        return jnp.tanh(self.code(jnp.mean(self.encoder(x), axis=1)))

    def __call__(self, x: Array, y_m: Array, y_t: Array, keys: Array, *, train: bool = False):
        del train
        _check_keys(keys, x.shape[0])
        steps = x.shape[1]
        cond = jnp.concatenate([self.encode(x), y_m, y_t], axis=-1)
        return x + self.out(self.decoder(_per_step(cond, steps)))


# ----------------------------------------------------------------------------- tabular


class _DenseBlock(nnx.Module):
    def __init__(self, width: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.fc1 = nnx.Linear(width, width, rngs=rngs)
        self.fc2 = nnx.Linear(width, width, rngs=rngs)

    def __call__(self, h: Array) -> Array:
        return h + self.fc2(nnx.relu(self.fc1(nnx.relu(self.norm(h)))))


class TabularGenerator(_Generator):
    """Residual MLP over ``[x, y_m, y_t, fixed, noise]`` emitting raw block scores, turned into a
    valid encoded row (straight-through Gumbel-softmax heads in training, hard one-hot
    otherwise) with the
    constraints applied exactly (:func:`jaxcf.tabular.enforce`).

    Shapes: ``x [B, D]`` encoded rows, ``y_m, y_t [B, K]``, ``keys [B]``, optional
    ``fixed [B, n_columns]`` (nonzero = keep this column as in the query) -> ``[B, D]``.
    """

    def __init__(self, config: TabularGeneratorConfig, *, rngs: nnx.Rngs):

        self.config = config
        transform = TabularTransform.from_dict(config.transform)
        self.constraints = Constraints(**(config.constraints or {}))
        self.constraints.check(transform.schema)
        self.layout = transform.layout  # static and hashable
        n_cols = len(transform.schema)
        d_in = transform.dim + 2 * config.cond_dim + config.noise_dim + n_cols
        self.inp = nnx.Linear(d_in, config.width, rngs=rngs)
        self.blocks = nnx.List([_DenseBlock(config.width, rngs=rngs) for _ in range(config.blocks)])
        self.out = nnx.Linear(config.width, transform.dim, rngs=rngs)

    @property
    def transform(self):
        """The :class:`~jaxcf.tabular.TabularTransform` the generator writes rows of."""
        return TabularTransform.from_dict(self.config.transform)

    def __call__(
        self,
        x: Array,
        y_m: Array,
        y_t: Array,
        keys: Array,
        *,
        train: bool = False,
        fixed: Array | None = None,
    ) -> Array:

        _check_keys(keys, x.shape[0])
        n_cols = len(self.layout.blocks)
        if fixed is None:
            fixed = jnp.zeros((x.shape[0], n_cols), jnp.float32)
        fixed = fixed.astype(jnp.float32)
        parts = [x, y_m, y_t, fixed]
        if self.config.noise_dim:
            parts.append(_noise(keys, (self.config.noise_dim,), 0))
        h = self.inp(jnp.concatenate(parts, axis=-1))
        for block in self.blocks:
            h = block(h)
        raw = self.out(nnx.relu(h))
        if train:  # a Gumbel draw per row from the row's own key
            t = self.config.temperature

            # Straight-through: the classifier and the discriminator see hard one-hot rows, as
            # real rows and explained rows are (soft rows are trivially told apart from real
            # ones), while the gradient is the soft sample's.
            def one(r, k):
                k = jax.random.fold_in(k, 1)
                return activate(self.layout, r[None], k, temperature=t, straight_through=True)[0]

            cf = jax.vmap(one)(raw, keys)
        else:
            cf = activate(self.layout, raw)
        return enforce(self.layout, self.constraints, x, cf, fixed > 0.5)


class TabularDiscriminator(nnx.Module):
    """Residual MLP with a projection head: ``[B, D]`` rows -> ``[B]`` logits."""

    def __init__(self, config: TabularDiscriminatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.inp = nnx.Linear(config.input_dim, config.width, rngs=rngs)
        self.blocks = nnx.List([_DenseBlock(config.width, rngs=rngs) for _ in range(config.blocks)])
        self.linear = nnx.Linear(config.width, 1, rngs=rngs)
        self.embed = nnx.Linear(config.cond_dim, config.width, use_bias=False, rngs=rngs)

    def __call__(self, x: Array, y: Array) -> Array:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        phi = nnx.leaky_relu(h, 0.2)
        return self.linear(phi)[:, 0] + jnp.sum(self.embed(y) * phi, axis=-1)


# ----------------------------------------------------------------------------- registry

_FAMILIES: dict[str, tuple[type, type]] = {
    "image_generator": (ImageGeneratorConfig, ImageGenerator),
    "image_discriminator": (ImageDiscriminatorConfig, ImageDiscriminator),
    "series_generator": (SeriesGeneratorConfig, SeriesGenerator),
    "series_discriminator": (SeriesDiscriminatorConfig, SeriesDiscriminator),
    "series_autoencoder": (SeriesAutoencoderConfig, SeriesAutoencoder),
    "tabular_generator": (TabularGeneratorConfig, TabularGenerator),
    "tabular_discriminator": (TabularDiscriminatorConfig, TabularDiscriminator),
}


def build(config: Any, *, seed: int = 0) -> nnx.Module:
    """Builds the generator or discriminator a config describes, initialised from ``seed``."""
    kind = getattr(config, "kind", None)
    if kind not in _FAMILIES:
        raise ValueError(f"unknown generator config kind {kind!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[kind][1](config, rngs=nnx.Rngs(seed))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a generator/discriminator config (``kind`` included)."""
    return dataclasses.asdict(config)


def config_from_dict(d: dict[str, Any]) -> Any:
    """Inverse of :func:`config_to_dict` (lists back to tuples)."""
    kind = d.get("kind")
    if kind not in _FAMILIES:
        raise ValueError(f"unknown generator config kind {kind!r}; known: {sorted(_FAMILIES)}")
    cls = _FAMILIES[kind][0]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
        raise ValueError(f"{kind} config has unknown fields {sorted(unknown)}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**kw)


def load_generator(
    directory: str | Path, classifier: Any = None
) -> tuple[nnx.Module, dict[str, Any]]:
    """Loads a generator saved by :func:`train_generator`: ``(generator, metadata)``.

    Raises:
      ValueError: ``classifier`` is given and is not the one the generator was trained against
        (its digest differs).
    """
    directory = Path(directory)
    if (directory / CHECKPOINT_DIR).is_dir():
        directory = directory / CHECKPOINT_DIR
    meta = checkpoint.read_metadata(directory)
    if "generator" not in meta.get("configs", {}):
        raise ValueError(f"{directory} is not a generator checkpoint (no generator config)")
    generator = build(config_from_dict(meta["configs"]["generator"]))
    checkpoint.load(directory, {"generator": generator})
    if classifier is not None:
        digest = classifier_digest(classifier)
        if digest != meta.get("classifier_digest"):
            raise ValueError(
                f"the generator in {directory} was trained against another classifier (digest "
                f"{str(meta.get('classifier_digest'))[:12]}, this one {digest[:12]}): retrain it "
                "for this classifier"
            )
    return generator, meta
