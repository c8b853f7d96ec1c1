"""Class-conditional Gaussian densities on classifier features (DDU, DeDUCE).

One Gaussian per class on the penultimate features ``z`` of the training set: the class mean and
the covariance ``X^T X / (n - 1)`` of the centred features. The fit runs in float64 on the host;
the covariance gets diagonal jitter, increased from 0 through machine epsilon and the powers of
ten from 1e-308 up, until the Cholesky factorisation of every class succeeds (the DDU recipe).

Evaluation is a jittable pytree: ``log_prob(z) -> [B, C]``. It uses the whitening matrices
``L_c^{-1}`` (``Sigma_c = L_c L_c^T``), computed in float64 and stored in float32, so that
``log N(z; mu_c, Sigma_c) = log_norm_c - |L_c^{-1} (z - mu_c)|^2 / 2`` costs one matrix product
per class and no solve inside the hot loop (centring first avoids cancellation in float32).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxcf.core import as_pytree

Array = jax.Array

_JITTERS = (0.0, float(np.finfo(np.float64).eps), *(10.0**e for e in range(-308, 1)))


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
      whiten: ``[C, D, D]`` float32, ``L_c^{-1}``.
      mean: ``[C, D]`` float32, ``mu_c``.
      log_norm: ``[C]`` float32, ``-(D log(2 pi) + log det Sigma_c) / 2``.
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

    def log_prob(self, features: Array) -> Array:
        """Log density of each feature vector under each class. ``[B, D] -> [B, C]``."""
        centred = features.astype(self.mean.dtype)[:, None, :] - self.mean[None]  # [B, C, D]
        sq = jnp.sum(jnp.square(jnp.einsum("cde,bce->bcd", self.whiten, centred)), axis=-1)
        return self.log_norm[None] - 0.5 * sq

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for a checkpoint (see :func:`from_arrays`)."""
        return {
            "whiten": np.asarray(self.whiten),
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
        return cls(
            whiten=jnp.asarray(arrays["whiten"], jnp.float32),
            mean=jnp.asarray(arrays["mean"], jnp.float32),
            log_norm=jnp.asarray(arrays["log_norm"], jnp.float32),
            jitter=float(arrays["jitter"]),
        )


def class_moments(
    features: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 class means ``[C, D]`` and covariances ``[C, D, D]`` (``X^T X / (n - 1)``)."""
    z = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    d = z.shape[1]
    means = np.zeros((num_classes, d))
    covs = np.zeros((num_classes, d, d))
    for c in range(num_classes):
        zc = z[labels == c]
        if len(zc) < 2:
            raise ValueError(f"class {c} has {len(zc)} training features; need at least 2")
        means[c] = zc.mean(axis=0)
        centred = zc - means[c]
        covs[c] = centred.T @ centred / (len(zc) - 1)
    return means, covs


def fit_gaussians(features: np.ndarray, labels: np.ndarray, num_classes: int) -> GaussianDensity:
    """Fits one Gaussian per class to ``features [N, D]`` with integer ``labels [N]``.

    Raises:
      ValueError: on NaN/inf features, a class with fewer than two samples, or if no jitter up
        to 1 makes every covariance positive definite.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or inf")
    means, covs = class_moments(features, labels, num_classes)
    d = features.shape[1]
    for jitter in _JITTERS:
        try:
            chol = np.linalg.cholesky(covs + jitter * np.eye(d))
        except np.linalg.LinAlgError:
            continue
        break
    else:
        raise ValueError("no jitter up to 1.0 makes the class covariances positive definite")
    whiten = np.linalg.inv(chol)  # [C, D, D], lower triangular
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    log_norm = -0.5 * (d * np.log(2.0 * np.pi) + log_det)
    return GaussianDensity(
        whiten=jnp.asarray(whiten, jnp.float32),
        mean=jnp.asarray(means, jnp.float32),
        log_norm=jnp.asarray(log_norm, jnp.float32),
        jitter=float(jitter),
    )
