"""An attribute-informed encoder-decoder in the style of AttGAN (He et al., 2019), the
generative model of the AIP counterfactual method (attribute-informed perturbation).

``z = generator.encode(x)``, ``x_hat = generator.decode(z, a)``, and a discriminator that
also carries an attribute classifier, ``adv, attr_logits = discriminator(x)``:

* ``x``: ``float32 [B, H, W, C]`` images in ``[0, 1]``;
* ``z``: ``[B, latent_dim]``, the encoder's spatial latent ``[B, h, w, c]``
  (:attr:`AttGANConfig.latent_shape`) flattened;
* ``a``: ``[B, num_attributes]`` attribute values in ``[0, 1]`` (1: the image has it; soft
  values interpolate);
* ``decode`` returns images in ``[0, 1]`` (a sigmoid of :meth:`AttGANGenerator.decode_logits`);
* ``adv``: ``[B]`` real/fake logits; ``attr_logits``: ``[B, num_attributes]`` logits of the
  attribute classifier ``C`` (its sigmoid is the attribute vector AIP starts from).

Architecture. The encoder is a stack of stride-2 ``kernel_size`` convolutions (one per entry of
``encoder_widths``; AttGAN: five 4x4 ones, 64 to 1024 channels) with LeakyReLU(0.2). The latent
is linear in the last features: either the last convolution itself (no activation), or, with
``latent_channels``, a 1x1 convolution of the activated last features to that many channels
(how the paper's 1024 channels at 2x2 become a 1024-d latent: 2 x 2 x 256). The decoder mirrors
the encoder: per level a nearest-neighbour 2x upsampling and a 3x3 convolution (no transposed
convolutions, so no checkerboard artefacts), LeakyReLU(0.2) between levels, the last level to
the ``C`` channels' logits. The attributes enter as ``a - 0.5`` (AttGAN's +-0.5 for absent and
present) tiled over the spatial grid and concatenated to the latent's channels, and to the
inputs of the next ``inject_layers`` decoder levels. There are no skip connections from the
encoder: everything the decoder knows about the image is in ``z``.

The discriminator is a trunk of stride-2 convolutions with LeakyReLU(0.2), spectrally normalised
(bound 1, :class:`~jaxcf.models.SpectralConv`, 3x3 kernels) for the hinge loss, and an
adversarial head on its flattened features (a hidden dense layer and the logit). The attribute
classifier ``C`` is a head of the same form on its own trunk of the same widths (plain 4x4
stride-2 convolutions) by default; ``classifier_trunk="shared"`` puts it on the adversarial
trunk as AttGAN does, which a spectrally normalised trunk makes learn several times slower.

Nothing normalises across the batch: an image's code, decoding and attributes are independent
of its batch, and the generator is smooth in ``z`` and ``a`` (AIP differentiates the decoder
in both). The generator's convolutions are :class:`jaxcf.models.Conv`, whose input gradient
stays on XLA CPU's fast path inside search loops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxcf import assets
from jaxcf.core import as_pytree, validation
from jaxcf.models import checkpoint
from jaxcf.models._bundled import verify
from jaxcf.models._conv import Conv
from jaxcf.models._saved import check_fits, open_checkpoint
from jaxcf.models._spectral import SpectralConv

Array = jax.Array


_SLOPE = 0.2  # LeakyReLU's negative slope throughout


def _positive_ints(value: tuple, name: str) -> None:
    if not value or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value
    ):
        raise ValueError(
            f"AttGANConfig.{name} must be a non-empty tuple of positive ints, got {value}"
        )


@dataclasses.dataclass(frozen=True)
class AttGANConfig:
    """Attributes:
    input_shape: ``(H, W, C)`` of the images; ``H`` and ``W`` multiples of
      ``2 ** len(encoder_widths)`` (64 with up to six levels); square with spectral
      normalisation.
    num_attributes: length ``t`` of the attribute vectors.
    encoder_widths: channels of the encoder's stride-2 convolutions, one level each.
    latent_channels: channels of the latent (a 1x1 convolution after the last level); ``None``:
      the last level's convolution is the latent (``encoder_widths[-1]`` channels).
    decoder_widths: channels of the decoder's levels but the last (which outputs ``C``);
      ``len(encoder_widths) - 1`` entries; ``None``: the encoder's widths mirrored,
      ``encoder_widths[-2::-1]``.
    kernel_size: the encoder's convolutions' kernel (4 as AttGAN's); padded by
      ``(kernel_size - 1) // 2`` so each halves the size exactly.
    inject_layers: decoder levels after the first that also take the tiled attributes
      (0: the latent only; at most ``len(encoder_widths) - 1``).
    discriminator_widths: channels of the discriminator's stride-2 convolutions; ``None``: the
      encoder's widths.
    discriminator_hidden: width of each head's hidden dense layer.
    spectral_norm: spectrally normalise the adversarial trunk's convolutions (bound 1).
    classifier_trunk: ``"separate"``: the attribute classifier has its own trunk of the same
      widths (4x4 stride-2 convolutions, not normalised); ``"shared"``: it shares the
      adversarial trunk, as AttGAN's (with spectral normalisation the classifier then learns
      several times slower: on CelebA, 400 steps of the classifier alone reach 65% on *Male*
      through a spectrally normalised trunk, 90% through a plain one).
    """

    kind: Literal["attgan"] = "attgan"
    input_shape: tuple[int, int, int] = (64, 64, 3)
    num_attributes: int = 13
    encoder_widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    latent_channels: int | None = 256
    decoder_widths: tuple[int, ...] | None = None
    kernel_size: int = 4
    inject_layers: int = 1
    discriminator_widths: tuple[int, ...] | None = None
    discriminator_hidden: int = 1024
    spectral_norm: bool = True
    classifier_trunk: Literal["separate", "shared"] = "separate"

    def __post_init__(self):
        for name in ("input_shape", "encoder_widths", "decoder_widths", "discriminator_widths"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        validation.one_of(self, "kind", ("attgan",))
        validation.one_of(self, "classifier_trunk", ("separate", "shared"))
        validation.at_least(self, 1, "num_attributes", "discriminator_hidden")
        validation.at_least(self, 2, "kernel_size")
        validation.at_least(self, 0, "inject_layers")
        if self.latent_channels is not None:
            validation.at_least(self, 1, "latent_channels")
        if not isinstance(self.spectral_norm, bool):
            raise ValueError(
                f"AttGANConfig.spectral_norm must be a bool, got {self.spectral_norm!r}"
            )
        shape = self.input_shape
        if len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise ValueError(f"AttGANConfig.input_shape must be (H, W, C), got {shape}")
        _positive_ints(self.encoder_widths, "encoder_widths")
        levels = len(self.encoder_widths)
        if self.decoder_widths is not None:
            if len(self.decoder_widths) != levels - 1:
                raise ValueError(
                    f"AttGANConfig.decoder_widths must have len(encoder_widths) - 1 = {levels - 1}"
                    f" entries (the last level outputs the image), got {self.decoder_widths}"
                )
            if self.decoder_widths:
                _positive_ints(self.decoder_widths, "decoder_widths")
        if self.discriminator_widths is not None:
            _positive_ints(self.discriminator_widths, "discriminator_widths")
        if self.inject_layers > levels - 1:
            raise ValueError(
                f"AttGANConfig.inject_layers must be at most len(encoder_widths) - 1 = "
                f"{levels - 1}, got {self.inject_layers}"
            )
        h, w, _ = shape
        for name, n in (("encoder", levels), ("discriminator", len(self.disc_widths))):
            factor = 2**n
            if h % factor or w % factor:
                raise ValueError(
                    f"AttGANConfig: the {name}'s {n} stride-2 levels need H and W multiples of "
                    f"{factor}; got {h}x{w}"
                )
        if self.spectral_norm and h != w:
            raise ValueError(f"spectral normalisation needs square images, got {h}x{w}")

    @property
    def dec_widths(self) -> tuple[int, ...]:
        """The decoder levels' output channels, the last one the image's ``C``."""
        hidden = self.decoder_widths
        if hidden is None:
            hidden = tuple(reversed(self.encoder_widths[:-1]))
        return (*hidden, self.input_shape[-1])

    @property
    def disc_widths(self) -> tuple[int, ...]:
        """The discriminator's convolution widths."""
        return (
            self.encoder_widths if self.discriminator_widths is None else self.discriminator_widths
        )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape ``(h, w, c)`` of the encoder's spatial latent."""
        factor = 2 ** len(self.encoder_widths)
        h, w, _ = self.input_shape
        c = self.encoder_widths[-1] if self.latent_channels is None else self.latent_channels
        return (h // factor, w // factor, c)

    @property
    def latent_dim(self) -> int:
        """Width ``k`` of the flattened latent ``z``."""
        h, w, c = self.latent_shape
        return h * w * c

    @classmethod
    def from_dict(cls, d: dict) -> AttGANConfig:
        """Inverse of ``dataclasses.asdict`` (also after a JSON round trip)."""
        return cls(**d)


PAPER_ATTGAN = AttGANConfig()
"""The AIP/AttGAN image setting at 64x64: five 4x4 stride-2 convolutions 64 -> 2 (64 to 1024
channels), a 1x1 convolution to a 2 x 2 x 256 = 1024-d latent, the mirrored decoder, a
discriminator and a classifier trunk of the encoder's widths with 1024-wide heads (14.2M
parameters in the generator, 25.8M in the discriminator and classifier)."""
CPU_ATTGAN = AttGANConfig(
    encoder_widths=(16, 32, 64, 128, 256),
    latent_channels=None,
    discriminator_widths=(16, 32, 64, 128, 256),
    discriminator_hidden=256,
)
"""CPU-sized: five 4x4 stride-2 convolutions of 16 to 256 channels, whose last gives the
2 x 2 x 256 = 1024-d latent directly; the mirrored decoder; discriminator and classifier trunks
of the same widths with 256-wide heads."""


def _tile(a: Array, h: Array) -> Array:
    """``a - 0.5`` ``[B, t]`` tiled over ``h``'s spatial grid and concatenated to its channels."""
    b, hh, ww, _ = h.shape
    grid = jnp.broadcast_to((a - 0.5)[:, None, None, :], (b, hh, ww, a.shape[-1]))
    return jnp.concatenate([h, grid.astype(h.dtype)], axis=-1)


class Encoder(nnx.Module):
    """Images ``[B, H, W, C]`` to the spatial latent ``[B, h, w, c]`` (see the module
    docstring)."""

    def __init__(self, config: AttGANConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        k = config.kernel_size
        c = config.input_shape[-1]
        self.convs = nnx.List()
        for width in config.encoder_widths:
            self.convs.append(Conv(c, width, k, stride=2, pad=(k - 1) // 2, rngs=rngs))
            c = width
        self.project = (
            None
            if config.latent_channels is None
            else Conv(c, config.latent_channels, 1, pad=0, rngs=rngs)
        )

    def __call__(self, x: Array) -> Array:
        h = x
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < last or self.project is not None:
                h = nnx.leaky_relu(h, _SLOPE)
        return h if self.project is None else self.project(h)


class Decoder(nnx.Module):
    """The spatial latent ``[B, h, w, c]`` and attributes ``[B, t]`` to image logits
    ``[B, H, W, C]`` (see the module docstring)."""

    def __init__(self, config: AttGANConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        t = config.num_attributes
        c = config.latent_shape[-1]
        self.convs = nnx.List()
        for i, width in enumerate(config.dec_widths):
            extra = t if i <= config.inject_layers else 0
            self.convs.append(Conv(c + extra, width, 3, rngs=rngs))
            c = width

    def __call__(self, z: Array, a: Array) -> Array:
        h = z
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            if i <= self.config.inject_layers:
                h = _tile(a, h)
            b, hh, ww, c = h.shape
            h = conv(jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest"))
            if i < last:
                h = nnx.leaky_relu(h, _SLOPE)
        return h


class AttGANGenerator(nnx.Module):
    """The encoder and the attribute-conditioned decoder; ``__call__(x, a)`` decodes ``x``'s
    code with attributes ``a``."""

    def __init__(self, config: AttGANConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _check_images(self, x: Array) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.config.input_shape:
            raise ValueError(
                f"the AttGAN encoder takes images "
                f"[B, {', '.join(map(str, self.config.input_shape))}], got {tuple(x.shape)}"
            )

    def _check_code(self, z: Array, a: Array) -> None:
        k, t = self.config.latent_dim, self.config.num_attributes
        if z.ndim != 2 or z.shape[1] != k:
            raise ValueError(f"the AttGAN decoder takes codes [B, {k}], got {tuple(z.shape)}")
        if a.ndim != 2 or a.shape[1] != t:
            raise ValueError(
                f"the AttGAN decoder takes attribute vectors [B, {t}], got {tuple(a.shape)}"
            )
        if a.shape[0] != z.shape[0]:
            raise ValueError(
                f"codes and attribute vectors must share the batch: {z.shape[0]} != {a.shape[0]}"
            )

    def encode(self, x: Array) -> Array:
        """The flattened latent ``[B, latent_dim]`` of images ``[B, H, W, C]`` in ``[0, 1]``."""
        self._check_images(x)
        h = self.encoder(x)
        return h.reshape(h.shape[0], -1)

    def decode_logits(self, z: Array, a: Array) -> Array:
        """Per-pixel logits ``[B, H, W, C]`` (``decode`` is their sigmoid)."""
        self._check_code(z, a)
        return self.decoder(z.reshape((z.shape[0], *self.config.latent_shape)), a)

    def decode(self, z: Array, a: Array) -> Array:
        """Images ``[B, H, W, C]`` in ``[0, 1]`` of codes ``z [B, latent_dim]`` with attributes
        ``a [B, num_attributes]``."""
        return jax.nn.sigmoid(self.decode_logits(z, a))

    def __call__(self, x: Array, a: Array) -> Array:
        """``decode(encode(x), a)``."""
        return self.decode(self.encode(x), a)


class AttributeDiscriminator(nnx.Module):
    """``__call__(x) -> (adv [B], attr_logits [B, t])``: the real/fake logit and the attribute
    classifier's logits, from one shared trunk or two (``classifier_trunk``; see the module
    docstring)."""

    def __init__(self, config: AttGANConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        chans = (config.input_shape[-1], *config.disc_widths)
        side = config.input_shape[0]
        self.convs = nnx.List()
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            if config.spectral_norm:
                conv = SpectralConv(
                    a, b, kernel_size=3, input_size=side, strides=2, coeff=1.0, rngs=rngs
                )
            else:
                conv = Conv(a, b, 4, stride=2, pad=1, rngs=rngs)
            self.convs.append(conv)
            side //= 2
        if config.classifier_trunk == "separate":
            self.cls_convs = nnx.List(
                [
                    Conv(a, b, 4, stride=2, pad=1, rngs=rngs)
                    for a, b in zip(chans[:-1], chans[1:], strict=True)
                ]
            )
        else:
            self.cls_convs = None
        factor = 2 ** len(config.disc_widths)
        h, w, _ = config.input_shape
        flat = (h // factor) * (w // factor) * chans[-1]
        hidden = config.discriminator_hidden
        self.adv_hidden = nnx.Linear(flat, hidden, rngs=rngs)
        self.adv_out = nnx.Linear(hidden, 1, rngs=rngs)
        self.cls_hidden = nnx.Linear(flat, hidden, rngs=rngs)
        self.cls_out = nnx.Linear(hidden, config.num_attributes, rngs=rngs)

    def _check(self, x: Array) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.config.input_shape:
            raise ValueError(
                f"the AttGAN discriminator takes images "
                f"[B, {', '.join(map(str, self.config.input_shape))}], got {tuple(x.shape)}"
            )

    @staticmethod
    def _trunk(convs: nnx.List, x: Array) -> Array:
        h = x
        for conv in convs:
            h = nnx.leaky_relu(conv(h), _SLOPE)
        return h.reshape(h.shape[0], -1)

    def _adv_head(self, f: Array) -> Array:
        return self.adv_out(nnx.leaky_relu(self.adv_hidden(f), _SLOPE))[:, 0]

    def _cls_head(self, f: Array) -> Array:
        return self.cls_out(nnx.leaky_relu(self.cls_hidden(f), _SLOPE))

    def adversarial(self, x: Array) -> Array:
        """The real/fake logits ``[B]``."""
        self._check(x)
        return self._adv_head(self._trunk(self.convs, x))

    def attribute_logits(self, x: Array) -> Array:
        """The attribute classifier's logits ``[B, num_attributes]``."""
        self._check(x)
        convs = self.convs if self.cls_convs is None else self.cls_convs
        return self._cls_head(self._trunk(convs, x))

    def __call__(self, x: Array) -> tuple[Array, Array]:
        if self.cls_convs is not None:
            return self.adversarial(x), self.attribute_logits(x)
        self._check(x)
        f = self._trunk(self.convs, x)
        return self._adv_head(f), self._cls_head(f)


def build_attgan(
    config: AttGANConfig, seed: int = 0
) -> tuple[AttGANGenerator, AttributeDiscriminator]:
    """The generator and the discriminator of ``config``, initialised from ``seed``.

    The initialisers draw from an ``"rbg"`` key (XLA's random-bit generator) rather than the
    default threefry one: each initialiser of a new shape compiles on its own, and on CPU a
    threefry draw takes about 0.5 s to compile, 20-30 s for these models, against a few
    seconds for ``"rbg"``. The draws are deterministic for a seed on a given backend."""
    rngs = nnx.Rngs(jax.random.key(seed, impl="rbg"))
    return AttGANGenerator(config, rngs=rngs), AttributeDiscriminator(config, rngs=rngs)


KIND = "attgan"


EXCLUSIVE: tuple[tuple[str, ...], ...] = (
    ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"),
    ("Straight_Hair", "Wavy_Hair"),
    ("Mustache", "No_Beard"),
    ("Bald", "Bangs"),
    ("Receding_Hairline", "Bangs"),
)


def attribute_conflicts(names: Sequence[str]) -> np.ndarray:
    """``float32 [t, t]``: row ``i`` is 1 at the attributes that switching attribute ``i`` on
    switches off (the other members of its :data:`EXCLUSIVE` groups; names a data set lacks
    are ignored)."""
    names = tuple(names)
    out = np.zeros((len(names), len(names)), np.float32)
    for group in EXCLUSIVE:
        present = [names.index(n) for n in group if n in names]
        for i in present:
            for j in present:
                if i != j:
                    out[i, j] = 1.0
    return out


def flip_attributes(a: Array, index: Array, conflicts: Array) -> Array:
    """``a [B, t]`` with attribute ``index[b]`` of row ``b`` set to ``1 - round(a)`` (a soft
    value flips to the other side of 1/2), and, where that switches it on, the attributes it
    excludes (``conflicts [t, t]``, :func:`attribute_conflicts`) switched off."""
    t = a.shape[-1]
    onehot = jax.nn.one_hot(index, t, dtype=a.dtype)
    old = jnp.sum(a * onehot, axis=-1, keepdims=True)
    new = (old < 0.5).astype(a.dtype)
    flipped = a * (1.0 - onehot) + onehot * new
    off = (onehot @ jnp.asarray(conflicts, a.dtype)) * new
    return flipped * (1.0 - off)


class AttributeModel(struct.PyTreeNode):
    """A trained AttGAN-like model as one jittable pytree, in the data's units: images
    ``[B, H, W, C]`` in ``[0, 1]``, codes ``[B, latent_dim]``, attribute vectors
    ``[B, num_attributes]`` in ``[0, 1]`` (columns :attr:`attribute_names`).

    ``encode(x)`` is the flattened latent, ``attributes(x)`` the attribute classifier's
    probabilities (the ``a0`` AIP starts from) and ``decode(z, a)`` the decoder's images.
    """

    generator: Any
    discriminator: Any
    config: AttGANConfig = struct.field(pytree_node=False)
    attribute_names: tuple[str, ...] = struct.field(pytree_node=False)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.config.latent_shape

    @property
    def num_attributes(self) -> int:
        return self.config.num_attributes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.input_shape

    @property
    def attribute_range(self) -> tuple[float, float]:
        """The box attribute vectors live in: ``(0, 1)``."""
        return (0.0, 1.0)

    def encode(self, x: Array) -> Array:
        """The flattened latent ``[B, latent_dim]`` of images ``[B, H, W, C]``."""
        return self.generator.encode(x)

    def attribute_logits(self, x: Array) -> Array:
        """The attribute classifier's logits ``[B, num_attributes]``."""
        return self.discriminator.attribute_logits(x)

    def attributes(self, x: Array) -> Array:
        """``a0 [B, num_attributes]``: the attribute classifier's probabilities in ``[0, 1]``."""
        return jax.nn.sigmoid(self.attribute_logits(x))

    def decode(self, z: Array, a: Array) -> Array:
        """Images ``[B, H, W, C]`` in ``[0, 1]`` of codes ``z [B, latent_dim]`` with attributes
        ``a [B, num_attributes]`` (soft values interpolate)."""
        return self.generator.decode(z, a)

    def reconstruct(self, x: Array, a: Array | None = None) -> Array:
        """``decode(encode(x), a)``, with ``a`` the classifier's ``attributes(x)`` when not
        given."""
        return self.decode(self.encode(x), self.attributes(x) if a is None else a)

    def index(self, name: str) -> int:
        """The column of attribute ``name``."""
        if name not in self.attribute_names:
            raise ValueError(f"no attribute {name!r}; this model has {self.attribute_names}")
        return self.attribute_names.index(name)

    def flip(self, a: Array, name: str) -> Array:
        """``a [B, num_attributes]`` with attribute ``name`` flipped in every row (and the
        attributes it excludes switched off where it switches on; :func:`flip_attributes`)."""
        if a.ndim != 2 or a.shape[1] != self.num_attributes:
            raise ValueError(
                f"attribute vectors must be [B, {self.num_attributes}], got {tuple(a.shape)}"
            )
        index = jnp.full((a.shape[0],), self.index(name), jnp.int32)
        return flip_attributes(a, index, attribute_conflicts(self.attribute_names))


def load_attgan(
    directory: str | Path,
    *,
    image_shape: tuple[int, ...] | None = None,
    attribute_names: Sequence[str] | None = None,
    dataset: str | None = None,
) -> tuple[AttributeModel, dict[str, Any]]:
    """Loads a model saved by :func:`train_attgan` (its workdir or checkpoint directory), or
    one shipped with the package (``"bundled:<name>"``, checked against its content digest):
    ``(model, metadata)``.

    Args:
      directory: the workdir or its ``checkpoint`` folder, or ``"bundled:<name>"``.
      image_shape: when given, the ``(H, W, C)`` the caller's images have; a model of other
        images is refused.
      attribute_names: when given, the attributes (in order) the caller's vectors hold; a model
        of others is refused.
      dataset: when given, the data set the model must have been trained on.

    Raises:
      FileNotFoundError: no checkpoint there (or no shipped model of that name).
      ValueError: the directory holds another kind of checkpoint, a model of another image
        shape, attribute list or data set than asked for, weights that do not match the
        stored config (:class:`~jaxcf.models.checkpoint.CheckpointMismatchError`), or a shipped
        model
        whose arrays do not match its digest.
    """
    bundled = str(directory).startswith(assets.PREFIX)
    directory, meta, config = _open(directory)
    names = tuple(meta.get("attribute_names", ()))
    if len(names) != config.num_attributes:
        raise ValueError(
            f"{directory}: metadata names {len(names)} attributes {names}, but the model takes "
            f"{config.num_attributes}"
        )
    check_fits(
        directory,
        meta,
        config.input_shape,
        image_shape=image_shape,
        dataset=dataset,
        label="AttGAN",
    )
    if attribute_names is not None and tuple(attribute_names) != names:
        raise ValueError(
            f"{directory} holds an AttGAN of the attributes {names}, not {tuple(attribute_names)}"
        )
    modules = _modules(directory, config)
    if bundled:
        verify(directory, modules, None)
    model = AttributeModel(
        as_pytree(modules["generator"]), as_pytree(modules["discriminator"]), config, names
    )
    return model, meta


def load_attgan_modules(directory: str | Path) -> tuple[dict[str, nnx.Module], dict[str, Any]]:
    """The saved generator and discriminator as NNX modules (``{"generator", "discriminator"}``)
    and the metadata, without :func:`load_attgan`'s fit checks (for tools that rewrite the
    weights, such as :func:`jaxcf.training.export_attgan_compact`)."""
    directory, meta, config = _open(directory)
    return _modules(directory, config), meta


def _open(directory: str | Path) -> tuple[Path, dict[str, Any], AttGANConfig]:
    return open_checkpoint(
        assets.resolve(directory),
        kind=KIND,
        entry="generator",
        from_dict=AttGANConfig.from_dict,
        label="AttGAN",
    )


def _modules(directory: Path, config: AttGANConfig) -> dict[str, nnx.Module]:
    generator, discriminator = build_attgan(config)
    modules = {"generator": generator, "discriminator": discriminator}
    checkpoint.load(directory, modules)
    return modules
