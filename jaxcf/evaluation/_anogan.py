"""The AnoGAN realism score ("AGAN" in DeDUCE's Table 1; Schlegl et al., 2017).

A Wasserstein GAN trained on the data (:class:`~jaxcf.models.WGANModel`) can draw a realistic
image close to ``x`` when ``x`` is realistic. The score of an image is how close it gets: the
minimum over latent codes ``z`` of DeDUCE's equation 7,

    L(z; x) = |G(z) - x|_1 + weight * |f_D(G(z)) - f_D(x)|_1,

the first term summed over pixels, the second over the critic's features ``f_D`` (its
penultimate layer). Lower is more realistic. The minimum is searched by gradient descent from
``restarts`` random codes ``z ~ N(0, I)``, ``steps`` updates each; the score is the final loss
of the best restart.

The defaults are DeDUCE's (its code, ``metrics/AGAN.py``): ``weight`` 0.1, 4,000 steps, three
restarts, plain gradient descent at 0.03 cut to a tenth for the last fifth of the steps. AnoGAN
itself does not name its optimiser; its public re-implementations use Adam, offered here as
``optimizer="adam"`` (the rate cut applies to it too). One departure: DeDUCE keeps the loss
evaluated before its last update; here the score is the loss at the final code.

Randomness: image ``i`` (its index in the scored array) starts its restarts from
:func:`initial_codes` ``(key, i)``, so its score depends neither on the chunk it runs in nor on
the other images. All images and restarts of a chunk run as one jitted program (one
``fori_loop`` over the updates, the restarts folded into the batch); a data set streams through
it chunk by chunk, with a progress bar between chunks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxcf.core import validation
from jaxcf.models import WGANModel, load_wgan

Array = jax.Array

OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class AGANConfig:
    """Attributes:
    weight: ``lambda``, the weight of the feature term (DeDUCE: 0.1).
    learning_rate: the initial step size (DeDUCE: 0.03).
    steps: gradient updates per restart (DeDUCE: at most 4,000; here always all of them).
    restarts: random starting codes per image; the best final loss is kept (DeDUCE: 3).
    optimizer: ``"sgd"`` (plain gradient descent, DeDUCE's code) or ``"adam"`` (betas 0.9 and
      0.999, epsilon 1e-8).
    decay_at: updates after ``round(decay_at * steps)`` take the rate times ``decay``
      (DeDUCE: the last fifth, 0.8).
    decay: factor of that cut (DeDUCE: 0.1; 1: no cut).
    chunk_size: images per compiled call (each runs ``chunk_size * restarts`` searches at
      once).
    """

    weight: float = 0.1
    learning_rate: float = 0.03
    steps: int = 4000
    restarts: int = 3
    optimizer: Literal["sgd", "adam"] = "sgd"
    decay_at: float = 0.8
    decay: float = 0.1
    chunk_size: int = 128

    def __post_init__(self):
        validation.non_negative(self, "weight")
        validation.positive(self, "learning_rate")
        validation.at_least(self, 1, "steps", "restarts", "chunk_size")
        validation.one_of(self, "optimizer", OPTIMIZERS)
        validation.probability(self, "decay_at", "decay")

    @property
    def decay_step(self) -> int:
        """The last update at the full rate (updates are numbered from 0)."""
        return round(self.decay_at * self.steps)


class AGANScores(NamedTuple):
    """What :func:`agan_score` returns, NumPy arrays over the ``N`` images.

    Attributes:
      score: ``[N]`` the AGAN score: the final loss of the best restart.
      losses: ``[N, restarts]`` each restart's final loss (``score`` is their minimum).
      residual: ``[N]`` the best restart's ``|G(z) - x|_1``.
      feature: ``[N]`` the best restart's ``|f_D(G(z)) - f_D(x)|_1`` (unweighted).
      z: ``[N, latent_dim]`` the best restart's final code (``G(z)`` is the reconstruction).
    """

    score: np.ndarray
    losses: np.ndarray
    residual: np.ndarray
    feature: np.ndarray
    z: np.ndarray


def agan_loss(
    wgan: WGANModel, z: Array, x: Array, fx: Array, weight: float | Array
) -> tuple[Array, Array, Array]:
    """DeDUCE's equation 7 per row: ``(loss, residual, feature)``, ``[B]`` each, for codes
    ``z [B, latent_dim]``, images ``x [B, H, W, C]`` and their critic features
    ``fx = wgan.features(x)`` ``[B, F]``."""
    g = wgan.generate(z)
    residual = jnp.sum(jnp.abs(g - x).reshape(x.shape[0], -1), axis=-1)
    feature = jnp.sum(jnp.abs(wgan.features(g) - fx), axis=-1)
    return residual + weight * feature, residual, feature


def initial_codes(key: Array, index: Array | int, restarts: int, latent_dim: int) -> Array:
    """The starting codes ``[restarts, latent_dim]`` of image ``index``: standard normal draws
    from ``fold_in(key, index)``."""
    return jax.random.normal(jax.random.fold_in(key, index), (restarts, latent_dim))


@functools.partial(jax.jit, static_argnames=("config",))
def _search(wgan: WGANModel, x: Array, index: Array, key: Array, config: AGANConfig):
    """The searches of one chunk: images ``x [B, ...]`` with global indices ``index [B]``."""
    b, r, k = x.shape[0], config.restarts, wgan.latent_dim
    z0 = jax.vmap(lambda i: initial_codes(key, i, r, k))(index).reshape(b * r, k)
    # Row b * r + j is image b's restart j; every row's loss depends on its own code only, so
    # the gradient of the summed loss is each row's own gradient.
    xs = jnp.repeat(x, r, axis=0)
    fxs = jnp.repeat(wgan.features(x), r, axis=0)

    def total(z):
        return jnp.sum(agan_loss(wgan, z, xs, fxs, config.weight)[0])

    grad = jax.grad(total)
    lr0 = jnp.float32(config.learning_rate)

    def update(t, carry):
        z, m, v = carry
        g = grad(z)
        lr = jnp.where(t > config.decay_step, lr0 * config.decay, lr0)
        if config.optimizer == "sgd":
            return z - lr * g, m, v
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        n = (t + 1).astype(jnp.float32)
        m_hat = m / (1.0 - jnp.float32(0.9) ** n)
        v_hat = v / (1.0 - jnp.float32(0.999) ** n)
        return z - lr * m_hat / (jnp.sqrt(v_hat) + 1e-8), m, v

    zeros = jnp.zeros_like(z0)
    z, _, _ = jax.lax.fori_loop(0, config.steps, update, (z0, zeros, zeros))
    loss, residual, feature = agan_loss(wgan, z, xs, fxs, config.weight)
    losses = loss.reshape(b, r)
    best = jnp.argmin(losses, axis=1)
    rows = jnp.arange(b) * r + best
    return losses[jnp.arange(b), best], losses, residual[rows], feature[rows], z[rows]


def _checked_images(wgan: WGANModel, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or not len(x):
        raise ValueError(
            f"agan_score takes a non-empty batch of images [N, H, W, C], got {x.shape}"
        )
    if tuple(x.shape[1:]) != tuple(wgan.image_shape):
        raise ValueError(
            f"the WGAN was trained on {tuple(wgan.image_shape)} images and cannot score "
            f"{tuple(x.shape[1:])} images; train one on images of this size"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"agan_score takes float images in [0, 1], got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the images hold NaN or infinite values")
    if x.min() < 0.0 or x.max() > 1.0:
        raise ValueError(
            f"the images must lie in [0, 1] (the WGAN's units), got [{x.min()}, {x.max()}]"
        )
    return x.astype(np.float32)


def agan_score(
    wgan: WGANModel | str | Path,
    x: np.ndarray | Array,
    config: AGANConfig = AGANConfig(),
    *,
    seed: int = 0,
    progress: bool | None = None,
) -> AGANScores:
    """AnoGAN scores of images ``x [N, H, W, C]`` in ``[0, 1]`` (see the module docstring).

    Args:
      wgan: a trained WGAN, or the workdir or checkpoint folder of one
        (:func:`~jaxcf.models.load_wgan`).
      x: the images to score.
      config: the search's settings (DeDUCE's by default).
      seed: seed of the starting codes (image ``i`` starts from
        ``initial_codes(jax.random.key(seed), i, ...)``).
      progress: show a progress bar over chunks (``None``: when there is more than one).

    Returns:
      The scores, each restart's loss, the best restart's terms and codes.

    Raises:
      ValueError: images of another shape than the WGAN's (before anything compiles), an
        empty batch, non-finite values or values outside ``[0, 1]``.
      TypeError: ``wgan`` is neither a :class:`~jaxcf.models.WGANModel` nor a path, or ``x``
        is not floating point.
    """
    x = np.asarray(x)
    if isinstance(wgan, str | Path):
        wgan, _ = load_wgan(wgan, image_shape=tuple(x.shape[1:]) if x.ndim == 4 else None)
    if not isinstance(wgan, WGANModel):
        raise TypeError(
            f"agan_score takes a WGANModel or its checkpoint, got {type(wgan).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    x = _checked_images(wgan, x)
    n = len(x)
    # A set smaller than a chunk runs as one chunk of its own size; larger ones in full chunks,
    # the last padded with copies of the first image (one compiled shape), padding dropped.
    size = min(config.chunk_size, n)
    chunks = math.ceil(n / size)
    key = jax.random.key(seed)
    parts = []
    bar = tqdm(
        total=n,
        desc="agan",
        unit="image",
        leave=False,
        disable=not (chunks > 1 if progress is None else progress),
    )
    try:
        for c in range(chunks):
            lo, hi = c * size, min((c + 1) * size, n)
            idx = np.arange(lo, lo + size, dtype=np.int32)
            chunk = x[lo:hi]
            if hi - lo < size:
                chunk = np.concatenate([chunk, np.repeat(x[:1], size - (hi - lo), axis=0)])
            out = _search(wgan, jnp.asarray(chunk), jnp.asarray(idx), key, config)
            parts.append([np.asarray(a)[: hi - lo] for a in jax.device_get(out)])
            bar.update(hi - lo)
    finally:
        bar.close()
    return AGANScores(*(np.concatenate(p) for p in zip(*parts, strict=True)))
