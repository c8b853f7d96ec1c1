"""Class-conditional Gaussian densities on classifier features (DDU, DeDUCE): evaluation.

Evaluation is a jittable pytree: ``log_prob(z) -> [B, C]``. It uses whitening matrices ``A_c``
with ``A_c^T A_c = Sigma_c^{-1}``, computed in float64 and stored in float32, so that
``log N(z; mu_c, Sigma_c) = log_norm_c - |A_c (z - mu_c)|^2 / 2`` costs one matrix product per
class and no solve inside the hot loop (centring first avoids cancellation in float32). For the
full and shrinkage fits ``A_c = L_c^{-1}`` (``Sigma_c = L_c L_c^T``, ``[D, D]``); the PCA fit
folds its projection ``P [D, k]`` into them, ``A_c = L_c^{-1} P^T`` (``[k, D]``) and
``mu_c = m + P nu_c``, so every fit is a :class:`GaussianDensity` with the same ``log_prob``,
scoring ``[B, D]`` features, and the same checkpoint format (``whiten`` padded to ``[C, D, D]``
with zero rows; the fit's method is recorded in the checkpoint's metadata only).

How the Gaussians are fitted, and when a fit is degenerate: :func:`jaxcf.models.fit_density`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxcf.core import as_pytree

Array = jax.Array


@runtime_checkable
class Density(Protocol):
    """What DeDUCE needs of a density: per-class log densities of a feature batch."""

    def log_prob(self, features: Array) -> Array: ...


def as_density(density: Any) -> Any:
    """A jittable form of any object offering ``log_prob(features [B, D]) -> [B, C]``.

    Pytrees of arrays (:class:`GaussianDensity`, a user's registered dataclass) are used as they
    are; a plain Python object holding arrays as attributes is wrapped so that its arrays become
    leaves (:class:`jaxcf.core.PureObject`), and an NNX module is split like a classifier.

    Raises:
      TypeError: the object has no callable ``log_prob``.
    """
    if not callable(getattr(density, "log_prob", None)):
        raise TypeError(
            f"density {type(density).__name__} lacks log_prob(features [B, D]) -> [B, C]"
        )
    return as_pytree(density)


@struct.dataclass
class GaussianDensity:
    """Per-class Gaussians on features.

    Attributes:
      whiten: ``[C, k, D]`` float32, ``A_c`` with ``A_c^T A_c = Sigma_c^{-1}``: ``L_c^{-1}``
        (full and shrinkage fits, ``k = D``), or ``L_c^{-1} P^T`` with the PCA fit's projection
        ``P [D, k]``. A checkpoint stores it as ``[C, D, D]``, padded with rows of zeros
        (:meth:`to_arrays`), which :meth:`from_arrays` drops again.
      mean: ``[C, D]`` float32, ``mu_c``.
      log_norm: ``[C]`` float32, ``-(d log(2 pi) + log det Sigma_c) / 2`` in the dimension ``d``
        the Gaussians live in (``D``, or ``k`` for PCA).
      jitter: the diagonal jitter the fit needed (a Python float, static).
    """

    whiten: Array
    mean: Array
    log_norm: Array
    jitter: float = struct.field(pytree_node=False, default=0.0)

    @property
    def num_classes(self) -> int:
        return self.whiten.shape[0]

    @property
    def feature_dim(self) -> int:
        return self.whiten.shape[-1]

    @property
    def dim(self) -> int:
        """The dimension the Gaussians live in: ``D``, or ``k`` for a PCA fit."""
        return self.whiten.shape[1]

    def log_prob(self, features: Array) -> Array:
        """Log density of each feature vector under each class. ``[B, D] -> [B, C]``."""
        centred = features.astype(self.mean.dtype)[:, None, :] - self.mean[None]  # [B, C, D]
        sq = jnp.sum(jnp.square(jnp.einsum("cde,bce->bcd", self.whiten, centred)), axis=-1)
        return self.log_norm[None] - 0.5 * sq

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for a checkpoint (see :func:`from_arrays`); ``whiten`` always
        ``[C, D, D]``, so that every fit has the shapes of :meth:`abstract_arrays`."""
        whiten = np.asarray(self.whiten)
        if whiten.shape[1] < whiten.shape[2]:  # a PCA fit: [C, k, D] -> [C, D, D]
            whiten = np.pad(whiten, ((0, 0), (0, whiten.shape[2] - whiten.shape[1]), (0, 0)))
        return {
            "whiten": whiten,
            "mean": np.asarray(self.mean),
            "log_norm": np.asarray(self.log_norm),
            "jitter": np.asarray(self.jitter, np.float64),
        }

    @staticmethod
    def abstract_arrays(num_classes: int, feature_dim: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of :meth:`to_arrays` output, for loading from a checkpoint."""
        c, d = num_classes, feature_dim
        return {
            "whiten": jax.ShapeDtypeStruct((c, d, d), np.float32),
            "mean": jax.ShapeDtypeStruct((c, d), np.float32),
            "log_norm": jax.ShapeDtypeStruct((c,), np.float32),
            "jitter": jax.ShapeDtypeStruct((), np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> GaussianDensity:
        """The density :meth:`to_arrays` stored. Trailing rows of ``whiten`` that are zero in
        every class (a PCA fit's padding) are dropped: they add nothing to ``log_prob`` and
        would cost ``D / k`` times the work. A full or shrinkage fit has none (the last row of
        ``L_c^{-1}`` ends in ``1 / L_c[D, D] > 0``), and loads as it was saved."""
        whiten = np.asarray(arrays["whiten"])
        used = np.flatnonzero(np.any(whiten != 0, axis=(0, 2)))
        if used.size and used[-1] + 1 < whiten.shape[1]:
            whiten = whiten[:, : used[-1] + 1]
        return cls(
            whiten=jnp.asarray(whiten, jnp.float32),
            mean=jnp.asarray(arrays["mean"], jnp.float32),
            log_norm=jnp.asarray(arrays["log_norm"], jnp.float32),
            jitter=float(arrays["jitter"]),
        )
