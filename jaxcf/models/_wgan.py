"""A Wasserstein GAN (Flax NNX) for the AnoGAN realism score (:func:`jaxcf.evaluation.agan_score`).

``x = generator(z)`` and ``critic(x)``, ``critic.features(x)``:

* ``z``: ``float32 [B, latent_dim]`` latent codes; the prior is ``N(0, I)``;
* ``x``: ``float32 [B, H, W, C]`` images in ``[0, 1]`` (the generator ends in a sigmoid);
* ``critic(x)``: ``[B]`` critic values (unbounded: a Wasserstein critic, not a classifier);
* ``critic.features(x)``: ``[B, F]``, ``F = critic_widths[-1]``: the critic's penultimate layer,
  taken before its activation (DeDUCE's code also takes its critic's features before the
  activation). AnoGAN's feature-matching term compares these.

Both networks are fully connected: the generator maps ``z`` through ReLU layers of
``generator_widths`` to ``H * W * C`` sigmoid pixels; the critic flattens the image and runs
LeakyReLU(0.2) layers of ``critic_widths`` to one linear output. Nothing normalises across the
batch (the gradient penalty is defined per sample, and an image's score must not depend on its
batch). Fully connected rather than convolutional on purpose: the AnoGAN score runs thousands of
gradient steps through the generator and the critic per image, and on a CPU fully connected
layers run them far faster than convolutions of like size (measured on 2 cores: 57,000
image-steps per second for an MLP pair of 0.8M multiply-adds per image, 4,200 for a
convolutional pair of 1.9M; the default pair, 2.0M, runs about 22,000).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import jax
from flax import nnx, struct

from jaxcf.core import as_pytree, validation
from jaxcf.models import checkpoint
from jaxcf.models._saved import check_fits, open_checkpoint

Array = jax.Array

KIND = "wgan"
"""``metadata["kind"]`` of a WGAN checkpoint."""


def _widths(config: Any, name: str) -> None:
    value = getattr(config, name)
    if not value or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value
    ):
        raise ValueError(
            f"{type(config).__name__}.{name} must be a non-empty tuple of positive ints, got "
            f"{value!r}"
        )


@dataclasses.dataclass(frozen=True)
class WGANConfig:
    """Attributes:
    image_shape: ``(H, W, C)`` of the images.
    latent_dim: width ``k`` of the code ``z`` (DeDUCE's WGAN: 64).
    generator_widths: hidden layers of the generator, from ``z`` up.
    critic_widths: hidden layers of the critic, from the image down; the last one is the
      feature layer ``f_D``.
    """

    kind: Literal["wgan"] = "wgan"
    image_shape: tuple[int, int, int] = (28, 28, 1)
    latent_dim: int = 64
    generator_widths: tuple[int, ...] = (256, 512, 1024)
    critic_widths: tuple[int, ...] = (512, 256)

    def __post_init__(self):
        for name in ("image_shape", "generator_widths", "critic_widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        validation.one_of(self, "kind", (KIND,))
        validation.at_least(self, 1, "latent_dim")
        shape = self.image_shape
        if len(shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
        ):
            raise ValueError(f"WGANConfig.image_shape must be (H, W, C), got {shape}")
        _widths(self, "generator_widths")
        _widths(self, "critic_widths")

    @property
    def pixels(self) -> int:
        """``H * W * C``."""
        return math.prod(self.image_shape)

    @property
    def feature_dim(self) -> int:
        """Width ``F`` of the critic's feature layer."""
        return self.critic_widths[-1]

    @classmethod
    def from_dict(cls, d: dict) -> WGANConfig:
        """Inverse of ``dataclasses.asdict``."""
        return cls(**d)


MNIST_WGAN = WGANConfig()
"""28x28 grayscale, a 64-d code, generator 256-512-1024, critic 512-256 (256 features)."""


def _check_images(config: WGANConfig, x: Array, who: str) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != config.image_shape:
        raise ValueError(
            f"the {who} takes images [B, {', '.join(map(str, config.image_shape))}], got "
            f"{tuple(x.shape)}"
        )


class WGANGenerator(nnx.Module):
    """``z [B, latent_dim]`` -> images ``[B, H, W, C]`` in ``[0, 1]``."""

    def __init__(self, config: WGANConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        sizes = (config.latent_dim, *config.generator_widths)
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.out = nnx.Linear(sizes[-1], config.pixels, rngs=rngs)

    def __call__(self, z: Array) -> Array:
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"the generator takes codes [B, {self.config.latent_dim}], got {tuple(z.shape)}"
            )
        h = z
        for layer in self.hidden:
            h = nnx.relu(layer(h))
        return jax.nn.sigmoid(self.out(h)).reshape((z.shape[0], *self.config.image_shape))


class WGANCritic(nnx.Module):
    """Images ``[B, H, W, C]`` -> critic values ``[B]``; :meth:`features` gives ``f_D``."""

    def __init__(self, config: WGANConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        sizes = (config.pixels, *config.critic_widths)
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.out = nnx.Linear(sizes[-1], 1, rngs=rngs)

    def features(self, x: Array) -> Array:
        """``[B, F]``: the last hidden layer's output before its activation."""
        _check_images(self.config, x, "critic")
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.hidden):
            h = layer(nnx.leaky_relu(h, 0.2) if i else h)
        return h

    def __call__(self, x: Array) -> Array:
        return self.out(nnx.leaky_relu(self.features(x), 0.2))[:, 0]


class WGANModel(struct.PyTreeNode):
    """A trained WGAN as one jittable pytree (the pure generator and critic and their static
    config), in the data's units: images ``[B, H, W, C]`` in ``[0, 1]``, codes
    ``[B, latent_dim]``."""

    generator: Any
    critic: Any
    config: WGANConfig = struct.field(pytree_node=False)

    @classmethod
    def of(cls, generator: WGANGenerator, critic: WGANCritic) -> WGANModel:
        """The pure model of two NNX modules of one config."""
        if generator.config != critic.config:
            raise ValueError(
                f"generator and critic configs differ: {generator.config} != {critic.config}"
            )
        return cls(as_pytree(generator), as_pytree(critic), generator.config)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    def generate(self, z: Array) -> Array:
        """Images ``[B, H, W, C]`` in ``[0, 1]`` of codes ``z [B, latent_dim]``."""
        return self.generator(z)

    def features(self, x: Array) -> Array:
        """The critic's features ``f_D(x)``, ``[B, F]``."""
        return self.critic.features(x)

    def critic_value(self, x: Array) -> Array:
        """The critic's values ``[B]``."""
        return self.critic(x)

    def sample(self, key: Array, n: int) -> Array:
        """``n`` images generated from prior draws ``z ~ N(0, I)``."""
        return self.generate(jax.random.normal(key, (n, self.latent_dim)))


def build_wgan(config: WGANConfig, seed: int = 0) -> tuple[WGANGenerator, WGANCritic]:
    """A freshly initialised generator and critic (one ``nnx.Rngs(seed)`` stream, generator
    first)."""
    rngs = nnx.Rngs(seed)
    return WGANGenerator(config, rngs=rngs), WGANCritic(config, rngs=rngs)


def load_wgan(
    directory: str | Path,
    *,
    image_shape: tuple[int, ...] | None = None,
    dataset: str | None = None,
) -> tuple[WGANModel, dict[str, Any]]:
    """Loads a WGAN saved by :func:`jaxcf.training.train_wgan` (its workdir or checkpoint
    directory): ``(model, metadata)``.

    Args:
      directory: the workdir or its ``checkpoint`` folder.
      image_shape: when given, the ``(H, W, C)`` of the images the caller will score; a WGAN of
        other images is refused.
      dataset: when given, the data set the WGAN must have been trained on.

    Raises:
      FileNotFoundError: no checkpoint there.
      ValueError: another kind of checkpoint, a WGAN of another image shape or data set than
        asked for, or weights that do not match the stored config
        (:class:`~jaxcf.models.checkpoint.CheckpointMismatchError`).
    """
    directory, meta, config = open_checkpoint(
        directory, kind=KIND, entry="generator", from_dict=WGANConfig.from_dict, label="WGAN"
    )
    check_fits(
        directory, meta, config.image_shape, image_shape=image_shape, dataset=dataset, label="WGAN"
    )
    generator, critic = build_wgan(config)
    checkpoint.load(directory, {"generator": generator, "critic": critic})
    return WGANModel.of(generator, critic), meta
