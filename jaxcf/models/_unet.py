"""The denoising UNet of diffusion models (Flax NNX).

``eps = unet(x_t, t)`` or, conditioned on a semantic code (the diffusion autoencoder's
decoder), ``eps = unet(x_t, t, z)``:

* ``x_t``: ``float32 [B, H, W, C]`` noisy images in the model's units (``[-1, 1]``); ``H`` and
  ``W`` divisible by ``2 ** (len(channel_mult) - 1)``;
* ``t``: ``int32 [B]`` step numbers of the training schedule;
* ``z``: ``float32 [B, cond_dim]`` (only when ``cond_dim > 0``);
* returns the predicted noise, shaped like ``x_t``.

The architecture follows the DDPM / improved-diffusion UNet at small scale: a sinusoidal step
embedding through a 2-layer MLP; residual blocks of GroupNorm, SiLU and 3x3 convolutions in
which the step embedding sets a per-channel scale and shift of the second normalisation
("adaptive group norm"), and ``z`` — as in the diffusion autoencoder — multiplies the result
channel-wise; self-attention at the resolutions listed; strided-convolution downsampling and
nearest-neighbour upsampling, with skip connections concatenated. Nothing normalises across
the batch, so each image's prediction is independent of its batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcf.core import validation

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Attributes:
    input_shape: ``(H, W, C)`` of the images the model denoises (MNIST padded: ``(32, 32, 1)``).
    width: channels at full resolution.
    channel_mult: channel multiplier per resolution level (one level per entry; each level
      after the first halves the resolution).
    blocks: residual blocks per level (the decoder has one more, as in DDPM).
    attention: resolutions (side lengths) with a self-attention layer after each block.
    heads: attention heads.
    groups: GroupNorm groups (must divide every level's channels).
    dropout: dropout rate inside residual blocks (training only).
    cond_dim: width of the semantic code ``z`` (0: unconditional).
    """

    kind: Literal["unet"] = "unet"
    input_shape: tuple[int, int, int] = (32, 32, 1)
    width: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    blocks: int = 1
    attention: tuple[int, ...] = (8,)
    heads: int = 1
    groups: int = 8
    dropout: float = 0.0
    cond_dim: int = 0

    def __post_init__(self):
        for name in ("input_shape", "channel_mult", "attention"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        validation.at_least(self, 1, "width", "blocks", "heads", "groups")
        validation.at_least(self, 0, "cond_dim")
        validation.unit_interval(self, "dropout")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"UNetConfig.input_shape must be (H, W, C), got {self.input_shape}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNetConfig.channel_mult must be positive, got {self.channel_mult}")
        factor = 2 ** (len(self.channel_mult) - 1)
        h, w, _ = self.input_shape
        if h % factor or w % factor:
            raise ValueError(
                f"UNetConfig: {len(self.channel_mult)} levels halve the size "
                f"{len(self.channel_mult) - 1} times, so H and W must be multiples of {factor}; "
                f"got {h}x{w} (pad the images)"
            )
        for m in self.channel_mult:
            if (self.width * m) % self.groups:
                raise ValueError(
                    f"UNetConfig.groups={self.groups} does not divide {self.width * m} channels"
                )


def timestep_embedding(t: Array, dim: int, max_period: float = 10_000.0) -> Array:
    """Sinusoidal embedding ``[B, dim]`` of step numbers ``t [B]`` (cosines then sines of
    geometrically spaced frequencies, as in the Transformer and DDPM)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


def _conv(c_in: int, c_out: int, rngs: nnx.Rngs, *, stride: int = 1, zero: bool = False):
    init = nnx.initializers.zeros_init() if zero else nnx.initializers.lecun_normal()
    return nnx.Conv(
        c_in, c_out, (3, 3), strides=(stride, stride), padding=1, kernel_init=init, rngs=rngs
    )


class ResBlock(nnx.Module):
    """GroupNorm-SiLU-conv, then adaptive GroupNorm (step scale / shift, times ``z``'s
    channel-wise scale), SiLU, dropout, zero-initialised conv; a 1x1 shortcut when the width
    changes."""

    def __init__(
        self, c_in: int, c_out: int, emb_dim: int, cfg: UNetConfig, *, rngs: nnx.Rngs
    ) -> None:
        self.norm1 = nnx.GroupNorm(c_in, cfg.groups, rngs=rngs)
        self.conv1 = _conv(c_in, c_out, rngs)
        self.emb = nnx.Linear(emb_dim, 2 * c_out, rngs=rngs)
        self.cond = nnx.Linear(cfg.cond_dim, c_out, rngs=rngs) if cfg.cond_dim else None
        self.norm2 = nnx.GroupNorm(c_out, cfg.groups, use_scale=False, use_bias=False, rngs=rngs)
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.conv2 = _conv(c_out, c_out, rngs, zero=True)
        self.skip = nnx.Conv(c_in, c_out, (1, 1), rngs=rngs) if c_in != c_out else None

    def __call__(self, x: Array, emb: Array, z: Array | None) -> Array:
        h = self.conv1(nnx.silu(self.norm1(x)))
        scale, shift = jnp.split(self.emb(nnx.silu(emb))[:, None, None, :], 2, axis=-1)
        h = self.norm2(h) * (1.0 + scale) + shift
        if self.cond is not None:
            h = h * self.cond(z)[:, None, None, :]
        h = self.conv2(self.dropout(nnx.silu(h)))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nnx.Module):
    """Self-attention over the pixels of a feature map, residual, output zero-initialised."""

    def __init__(self, channels: int, cfg: UNetConfig, *, rngs: nnx.Rngs) -> None:
        self.norm = nnx.GroupNorm(channels, cfg.groups, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=cfg.heads,
            in_features=channels,
            out_kernel_init=nnx.initializers.zeros_init(),
            decode=False,
            rngs=rngs,
        )

    def __call__(self, x: Array) -> Array:
        b, h, w, c = x.shape
        seq = self.norm(x).reshape(b, h * w, c)
        return x + self.attn(seq).reshape(b, h, w, c)


class UNet(nnx.Module):
    """See the module docstring. ``__call__(x_t, t, z=None) -> eps``; ``denoise`` is the same
    (the name :class:`~jaxcf.core.PureModule` forwards)."""

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        cfg = config
        c_img = cfg.input_shape[-1]
        emb_dim = 4 * cfg.width
        self.time1 = nnx.Linear(cfg.width, emb_dim, rngs=rngs)
        self.time2 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)
        self.stem = _conv(c_img, cfg.width, rngs)

        widths = [cfg.width * m for m in cfg.channel_mult]
        size = cfg.input_shape[0]
        skips = [cfg.width]
        c = cfg.width
        self.down = nnx.List()
        for level, c_out in enumerate(widths):
            for _ in range(cfg.blocks):
                self.down.append(self._stage(c, c_out, emb_dim, size, rngs))
                c = c_out
                skips.append(c)
            if level < len(widths) - 1:
                self.down.append(_conv(c, c, rngs, stride=2))
                size //= 2
                skips.append(c)
        self.mid1 = ResBlock(c, c, emb_dim, cfg, rngs=rngs)
        self.mid_attn = Attention(c, cfg, rngs=rngs)
        self.mid2 = ResBlock(c, c, emb_dim, cfg, rngs=rngs)
        self.up = nnx.List()
        for level, c_out in reversed(list(enumerate(widths))):
            for _ in range(cfg.blocks + 1):
                self.up.append(self._stage(c + skips.pop(), c_out, emb_dim, size, rngs))
                c = c_out
            if level > 0:
                self.up.append(_conv(c, c, rngs))  # after a nearest-neighbour 2x upsampling
                size *= 2
        self.out_norm = nnx.GroupNorm(c, cfg.groups, rngs=rngs)
        self.out = _conv(c, c_img, rngs, zero=True)

    def _stage(self, c_in, c_out, emb_dim, size, rngs):
        block = ResBlock(c_in, c_out, emb_dim, self.config, rngs=rngs)
        attn = Attention(c_out, self.config, rngs=rngs) if size in self.config.attention else None
        return _Stage(block, attn)

    def __call__(self, x: Array, t: Array, z: Array | None = None) -> Array:
        cfg = self.config
        if (z is None) != (cfg.cond_dim == 0):
            raise ValueError(
                f"this UNet {'takes' if cfg.cond_dim else 'takes no'} a code z "
                f"(cond_dim={cfg.cond_dim})"
            )
        emb = self.time2(nnx.silu(self.time1(timestep_embedding(t, cfg.width))))
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb, z) if isinstance(layer, _Stage) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb, z)), emb, z)
        for layer in self.up:
            if isinstance(layer, _Stage):
                h = layer(jnp.concatenate([h, hs.pop()], axis=-1), emb, z)
            else:
                b, hh, ww, c = h.shape
                h = layer(jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest"))
        return self.out(nnx.silu(self.out_norm(h)))

    def denoise(self, x: Array, t: Array, z: Array | None = None) -> Array:
        return self(x, t, z)


class _Stage(nnx.Module):
    """A residual block, then attention where the resolution asks for it."""

    def __init__(self, block: ResBlock, attn: Attention | None) -> None:
        self.block = block
        self.attn = attn

    def __call__(self, h: Array, emb: Array, z: Array | None) -> Array:
        h = self.block(h, emb, z)
        return h if self.attn is None else self.attn(h)


# ----------------------------------------------------------------------------- diffusion AE


@dataclasses.dataclass(frozen=True)
class SemanticEncoderConfig:
    """Attributes:
    input_shape: ``(H, W, C)`` of the (padded) images.
    width: channels of the first convolution; each level doubles up to ``width * max(mult)``.
    channel_mult: channel multiplier per level; each level after the first halves the size.
    code_dim: width of the semantic code ``z`` (the diffusion autoencoder's 512).
    groups: GroupNorm groups.
    """

    kind: Literal["semantic_encoder"] = "semantic_encoder"
    input_shape: tuple[int, int, int] = (32, 32, 1)
    width: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    code_dim: int = 512
    groups: int = 8

    def __post_init__(self):
        for name in ("input_shape", "channel_mult"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        validation.at_least(self, 1, "width", "code_dim", "groups")
        for m in self.channel_mult:
            if (self.width * m) % self.groups:
                raise ValueError(
                    f"SemanticEncoderConfig.groups={self.groups} does not divide "
                    f"{self.width * m} channels"
                )


class SemanticEncoder(nnx.Module):
    """``z = encoder(x0)``: ``[B, H, W, C]`` clean images (model units) to ``[B, code_dim]``.
    Strided 3x3 convolutions with GroupNorm and SiLU, global average pooling, a linear map."""

    def __init__(self, config: SemanticEncoderConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        c = config.input_shape[-1]
        self.convs = nnx.List()
        self.norms = nnx.List()
        for level, m in enumerate(config.channel_mult):
            c_out = config.width * m
            self.convs.append(_conv(c, c_out, rngs, stride=1 if level == 0 else 2))
            self.norms.append(nnx.GroupNorm(c_out, config.groups, rngs=rngs))
            c = c_out
        self.out = nnx.Linear(c, config.code_dim, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = nnx.silu(norm(conv(h)))
        return self.out(jnp.mean(h, axis=(1, 2)))


@dataclasses.dataclass(frozen=True)
class DiffAEConfig:
    """A diffusion autoencoder (Preechakul et al. 2022): a semantic encoder and a UNet decoder
    conditioned on its code (``unet.cond_dim == encoder.code_dim``)."""

    kind: Literal["diffae"] = "diffae"
    unet: UNetConfig = UNetConfig(cond_dim=512)
    encoder: SemanticEncoderConfig = SemanticEncoderConfig()

    def __post_init__(self):
        if isinstance(self.unet, dict):
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if isinstance(self.encoder, dict):
            object.__setattr__(self, "encoder", SemanticEncoderConfig(**self.encoder))
        if self.unet.cond_dim != self.encoder.code_dim:
            raise ValueError(
                f"DiffAEConfig: the UNet's cond_dim {self.unet.cond_dim} must equal the "
                f"encoder's code_dim {self.encoder.code_dim}"
            )
        if self.unet.input_shape != self.encoder.input_shape:
            raise ValueError("DiffAEConfig: the UNet and the encoder see different image shapes")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.unet.input_shape


class DiffusionAutoencoder(nnx.Module):
    """``encode(x0) -> z`` and ``denoise(x_t, t, z) -> eps``."""

    def __init__(self, config: DiffAEConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        self.encoder = SemanticEncoder(config.encoder, rngs=rngs)
        self.unet = UNet(config.unet, rngs=rngs)

    def encode(self, x0: Array) -> Array:
        return self.encoder(x0)

    def denoise(self, x: Array, t: Array, z: Array | None = None) -> Array:
        if z is None:
            raise ValueError("a diffusion autoencoder's denoiser needs the code z")
        return self.unet(x, t, z)

    def __call__(self, x: Array, t: Array, z: Array | None = None) -> Array:
        return self.denoise(x, t, z)


def build_denoiser(config: UNetConfig | DiffAEConfig, *, seed: int = 0) -> nnx.Module:
    """The UNet or diffusion autoencoder a config describes."""
    rngs = nnx.Rngs(seed)
    return (
        DiffusionAutoencoder(config, rngs=rngs)
        if config.kind == "diffae"
        else UNet(config, rngs=rngs)
    )


def denoiser_config_from_dict(d: dict) -> UNetConfig | DiffAEConfig:
    """Inverse of ``dataclasses.asdict`` for :func:`build_denoiser`'s configs."""
    return DiffAEConfig(**d) if d.get("kind") == "diffae" else UNetConfig(**d)
