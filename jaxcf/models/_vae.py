"""Convolutional variational autoencoders (Flax NNX), the generative models of the latent-space
counterfactual methods (REVISE, xGEMs).

``mean, logvar = vae.encode(x)`` and ``x_hat = vae.decode(z)``:

* ``x``: ``float32 [B, H, W, C]`` images in the data's units, ``[0, 1]``;
* ``mean``, ``logvar``: ``[B, latent_dim]`` each, the Gaussian posterior ``q(z | x)``;
* ``z``: ``[B, latent_dim]`` codes; the prior is ``N(0, I)``;
* ``decode`` returns the decoder's per-pixel means, i.e. Bernoulli probabilities or Gaussian /
  Laplace means, in ``[0, 1]`` (a sigmoid of :meth:`VAE.decode_logits`).

One class covers the sizes the project uses, its depth set by the config:

* 28x28 grayscale (MNIST and the MedMNIST sets): two stride-2 convolutions, 28 -> 14 -> 7, then
  a dense layer and the 32-d code (:data:`MNIST_VAE`, the published REVISE baseline's size);
* 64x64 RGB (CelebA): four stride-2 4x4 convolutions, 64 -> 32 -> 16 -> 8 -> 4, and a 128-d
  code (:data:`CELEBA_VAE`).

The encoder is a stack of stride-2 convolutions (one per entry of ``widths``) with SiLU, then
an optional dense layer, then a linear map to ``2 * latent_dim``. The decoder mirrors it: a
dense map from ``z`` to the smallest feature map, then per level a nearest-neighbour 2x
upsampling and a 3x3 convolution (no transposed convolutions, so no checkerboard artefacts),
the last one to the ``C`` channels' logits. Nothing normalises across the batch, so each image's
code and decoding are independent of its batch, and everything is smooth in ``z`` (the
latent-space searches differentiate the decoder). The convolutions are
:class:`jaxcf.models.Conv`, whose input gradient stays on XLA CPU's fast path inside the
searches' loops.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxcf.core import as_pytree, validation
from jaxcf.models import checkpoint
from jaxcf.models._conv import Conv
from jaxcf.models._saved import check_fits, open_checkpoint

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Attributes:
    input_shape: ``(H, W, C)`` of the images; ``H`` and ``W`` divisible by
      ``2 ** len(widths)`` (28 with two levels, 32 with up to five, 64 with up to six).
    latent_dim: width ``k`` of the code ``z``.
    widths: channels of the encoder's stride-2 convolutions, one level each (the decoder runs
      them in reverse).
    kernel_size: the encoder convolutions' kernel (3, or 4 as in DCGAN-style 64x64 encoders);
      padded by ``(kernel_size - 1) // 2`` so each halves the size exactly. The decoder's
      convolutions are 3x3.
    hidden: width of the dense layer between the feature map and the code, in both directions
      (0: none, the feature map maps to the code directly).
    """

    kind: Literal["vae"] = "vae"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    latent_dim: int = 32
    widths: tuple[int, ...] = (32, 64)
    kernel_size: int = 3
    hidden: int = 256

    def __post_init__(self):
        for name in ("input_shape", "widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        validation.one_of(self, "kind", ("vae",))
        validation.at_least(self, 1, "latent_dim")
        validation.at_least(self, 2, "kernel_size")
        validation.at_least(self, 0, "hidden")
        shape = self.input_shape
        if len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise ValueError(f"VAEConfig.input_shape must be (H, W, C), got {shape}")
        if not self.widths or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in self.widths
        ):
            raise ValueError(
                f"VAEConfig.widths must be a non-empty tuple of positive ints, got {self.widths}"
            )
        factor = 2 ** len(self.widths)
        h, w, _ = shape
        if h % factor or w % factor:
            raise ValueError(
                f"VAEConfig: {len(self.widths)} stride-2 levels halve the size "
                f"{len(self.widths)} times, so H and W must be multiples of {factor}; got "
                f"{h}x{w}"
            )

    @property
    def bottleneck(self) -> tuple[int, int, int]:
        """Shape ``(h, w, c)`` of the smallest feature map."""
        factor = 2 ** len(self.widths)
        h, w, _ = self.input_shape
        return (h // factor, w // factor, self.widths[-1])

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        """Inverse of ``dataclasses.asdict``."""
        return cls(**d)


MNIST_VAE = VAEConfig(input_shape=(28, 28, 1), latent_dim=32, widths=(32, 64), hidden=256)
"""28x28 grayscale: 28 -> 14 -> 7, a 256-wide dense layer and a 32-d code."""
CELEBA_VAE = VAEConfig(
    input_shape=(64, 64, 3), latent_dim=128, widths=(32, 64, 128, 256), kernel_size=4, hidden=0
)
"""64x64 RGB: 4x4 stride-2 convolutions 64 -> 32 -> 16 -> 8 -> 4 and a 128-d code."""


class VAE(nnx.Module):
    """See the module docstring. ``__call__(x, key)`` returns ``(logits, mean, logvar)`` of one
    reparametrised sample; :func:`jaxcf.training.vae_loss` turns them into the loss."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        cfg = config
        c = cfg.input_shape[-1]
        self.enc = nnx.List()
        for width in cfg.widths:
            self.enc.append(
                Conv(c, width, cfg.kernel_size, stride=2, pad=(cfg.kernel_size - 1) // 2, rngs=rngs)
            )
            c = width
        h, w, c_last = cfg.bottleneck
        flat = h * w * c_last
        if cfg.hidden:
            self.enc_hidden = nnx.Linear(flat, cfg.hidden, rngs=rngs)
            self.dec_hidden = nnx.Linear(cfg.latent_dim, cfg.hidden, rngs=rngs)
            flat_in, code_in = cfg.hidden, cfg.hidden
        else:
            self.enc_hidden = self.dec_hidden = None
            flat_in, code_in = flat, cfg.latent_dim
        self.enc_out = nnx.Linear(flat_in, 2 * cfg.latent_dim, rngs=rngs)
        self.dec_in = nnx.Linear(code_in, flat, rngs=rngs)
        self.dec = nnx.List()
        c = c_last
        for width in [*reversed(cfg.widths[:-1]), cfg.input_shape[-1]]:
            self.dec.append(Conv(c, width, 3, rngs=rngs))
            c = width

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def _check(self, x: Array) -> None:
        if tuple(x.shape[1:]) != self.config.input_shape or x.ndim != 4:
            raise ValueError(
                f"the VAE takes images [B, {', '.join(map(str, self.config.input_shape))}], "
                f"got {tuple(x.shape)}"
            )

    def encode(self, x: Array) -> tuple[Array, Array]:
        """``(mean, logvar)``, ``[B, latent_dim]`` each, of ``q(z | x)`` for ``[0, 1]`` images."""
        self._check(x)
        h = x
        for conv in self.enc:
            h = nnx.silu(conv(h))
        h = h.reshape(h.shape[0], -1)
        if self.enc_hidden is not None:
            h = nnx.silu(self.enc_hidden(h))
        out = self.enc_out(h)
        k = self.config.latent_dim
        return out[:, :k], out[:, k:]

    def decode_logits(self, z: Array) -> Array:
        """Per-pixel logits ``[B, H, W, C]`` of the decoder (``decode`` is their sigmoid)."""
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"the VAE decodes codes [B, {self.config.latent_dim}], got {z.shape}")
        h = z
        if self.dec_hidden is not None:
            h = nnx.silu(self.dec_hidden(h))
        h = nnx.silu(self.dec_in(h)).reshape((z.shape[0], *self.config.bottleneck))
        for i, conv in enumerate(self.dec):
            b, hh, ww, c = h.shape
            h = conv(jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest"))
            if i < len(self.dec) - 1:
                h = nnx.silu(h)
        return h

    def decode(self, z: Array) -> Array:
        """Images ``[B, H, W, C]`` of codes ``z [B, latent_dim]``: the decoder's per-pixel means
        (Bernoulli probabilities or Gaussian / Laplace means), in ``[0, 1]``."""
        return jax.nn.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: Array) -> Array:
        """``decode(encode(x)[0])``: the deterministic reconstruction through the posterior
        mean."""
        return self.decode(self.encode(x)[0])

    def __call__(self, x: Array, key: Array) -> tuple[Array, Array, Array]:
        """``(logits, mean, logvar)``: the decoder's logits at one reparametrised sample
        ``z ~ q(z | x)`` drawn with ``key``."""
        mean, logvar = self.encode(x)
        return self.decode_logits(reparametrise(mean, logvar, key)), mean, logvar


def reparametrise(mean: Array, logvar: Array, key: Array) -> Array:
    """``z = mean + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` drawn with ``key``."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


def gaussian_kl(mean: Array, logvar: Array) -> Array:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per row ``[B]``, summed over the code."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)


KIND = "vae"


class VAEModel(struct.PyTreeNode):
    """A trained VAE as one jittable pytree (the pure module and its static config), in the
    data's units: images ``[B, H, W, C]`` in ``[0, 1]``, codes ``[B, latent_dim]``.

    ``encode(x)`` is the posterior mean, the deterministic code REVISE and xGEMs start from;
    ``decode(z)`` the decoder's per-pixel means in ``[0, 1]``.
    """

    vae: Any
    config: VAEConfig = struct.field(pytree_node=False)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.input_shape

    def encode(self, x: Array) -> Array:
        """The posterior mean ``[B, latent_dim]`` of images ``[B, H, W, C]``."""
        return self.vae.encode(x)[0]

    def posterior(self, x: Array) -> tuple[Array, Array]:
        """``(mean, logvar)`` of ``q(z | x)``, ``[B, latent_dim]`` each."""
        return self.vae.encode(x)

    def decode(self, z: Array) -> Array:
        """Images ``[B, H, W, C]`` in ``[0, 1]`` (the decoder's means) of codes ``z``."""
        return self.vae.decode(z)

    def reconstruct(self, x: Array) -> Array:
        """``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def sample(self, key: Array, n: int) -> Array:
        """``n`` images decoded from prior draws ``z ~ N(0, I)``."""
        return self.decode(jax.random.normal(key, (n, self.latent_dim)))


def load_vae(
    directory: str | Path,
    *,
    image_shape: tuple[int, ...] | None = None,
    dataset: str | None = None,
) -> tuple[VAEModel, dict[str, Any]]:
    """Loads a VAE saved by :func:`train_vae` (its workdir or checkpoint directory):
    ``(model, metadata)``.

    Args:
      directory: the workdir or its ``checkpoint`` folder.
      image_shape: when given, the ``(H, W, C)`` the caller's images have (e.g. a classifier's
        input shape); a VAE of other images is refused.
      dataset: when given, the data set the VAE must have been trained on.

    Raises:
      FileNotFoundError: no checkpoint there.
      ValueError: the directory holds another kind of checkpoint, a VAE of another image
        shape or data set than asked for, or weights that do not match the stored config
        (:class:`~jaxcf.models.checkpoint.CheckpointMismatchError`).
    """
    directory, meta, config = open_checkpoint(
        directory, kind=KIND, entry="vae", from_dict=VAEConfig.from_dict, label="VAE"
    )
    check_fits(
        directory, meta, config.input_shape, image_shape=image_shape, dataset=dataset, label="VAE"
    )
    vae = VAE(config, rngs=nnx.Rngs(0))
    checkpoint.load(directory, {"vae": vae})
    return VAEModel(as_pytree(vae), config), meta
