"""A trained diffusion model (or diffusion autoencoder) as one pytree: its EMA UNet, noise
schedule and image space, and the loader of its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf import diffusion as diff
from jaxcf.core import as_pytree
from jaxcf.models import checkpoint
from jaxcf.models._unet import build_denoiser, denoiser_config_from_dict
from jaxcf.models.checkpoint import CHECKPOINT_DIR

Array = jax.Array


class ImageSpace(struct.PyTreeNode):
    """The map between a data set's ``[0, 1]`` images ``[B, H, W, C]`` and the model's
    ``[-1, 1]`` images ``[B, H + 2 pad, W + 2 pad, C]`` (border at -1, the background)."""

    pad: int = struct.field(pytree_node=False, default=0)

    def to_model(self, x: Array) -> Array:
        y = 2.0 * x - 1.0
        p = self.pad
        return jnp.pad(y, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-1.0) if p else y

    def from_model(self, y: Array) -> Array:
        p = self.pad
        if p:
            y = y[:, p:-p, p:-p, :]
        return (y + 1.0) / 2.0


class DiffusionModel(struct.PyTreeNode):
    """A trained diffusion model as one pytree: the (pure) EMA UNet, its full schedule and the
    image space. ``denoise(x_t, t[, z])`` predicts the noise; :meth:`sample` draws images."""

    unet: Any
    schedule: diff.NoiseSchedule
    space: ImageSpace
    image_shape: tuple[int, ...] = struct.field(pytree_node=False)

    @property
    def is_autoencoder(self) -> bool:
        return hasattr(self.unet, "encode")

    def denoise(self, x_t: Array, t: Array, z: Array | None = None) -> Array:
        return self.unet.denoise(x_t, t) if z is None else self.unet.denoise(x_t, t, z)

    def encode(self, x0: Array) -> Array:
        """A diffusion autoencoder's semantic code ``[B, code_dim]`` of clean images in model
        units."""
        if not self.is_autoencoder:
            raise TypeError("this diffusion model has no semantic encoder")
        return self.unet.encode(x0)

    def sample(
        self,
        keys: Array,
        schedule: diff.NoiseSchedule | None = None,
        method: str = "ddim",
        eta: float = 0.0,
        z: Array | None = None,
    ) -> Array:
        """``[B, *image_shape]`` images in ``[0, 1]`` from pure noise, one per key. ``schedule``:
        the steps to take (``model.schedule.respace(50)``, made outside ``jit``: respacing reads
        the arrays on the host); default all of the training schedule's. ``z``: an
        autoencoder's codes ``[B, code_dim]``."""
        schedule = self.schedule if schedule is None else schedule
        x_T = jax.vmap(
            lambda k: jax.random.normal(jax.random.fold_in(k, 2**31 - 1), self.unet_shape)
        )(keys)

        def denoise(x, t):
            return self.denoise(x, t, z)

        x0 = diff.sample(denoise, schedule, x_T, keys, method=method, eta=eta)
        return jnp.clip(self.space.from_model(x0), 0.0, 1.0)

    @property
    def unet_shape(self) -> tuple[int, int, int]:
        p = self.space.pad
        h, w, c = self.image_shape
        return (h + 2 * p, w + 2 * p, c)


def load_diffusion(directory: str | Path) -> tuple[DiffusionModel, dict[str, Any]]:
    """Loads a model saved by :func:`train_diffusion`: ``(model, metadata)``.

    Raises:
      ValueError: the directory holds another kind of checkpoint.
    """
    directory = Path(directory)
    if (directory / CHECKPOINT_DIR).is_dir():
        directory = directory / CHECKPOINT_DIR
    meta = checkpoint.read_metadata(directory)
    if "unet" not in meta.get("configs", {}):
        raise ValueError(f"{directory} is not a diffusion checkpoint (no UNet config)")
    unet = build_denoiser(denoiser_config_from_dict(meta["configs"]["unet"]))
    checkpoint.load(directory, {"unet": unet})
    model = DiffusionModel(
        as_pytree(unet),
        diff.make_schedule(diff.ScheduleConfig(**meta["schedule"])),
        ImageSpace(int(meta["pad"])),
        tuple(meta["image_shape"]),
    )
    return model, meta
