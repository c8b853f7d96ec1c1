"""Distribution metrics for counterfactual generators: how far a set of counterfactuals lies from
the data, measured by the Maximum Mean Discrepancy, overall and per predicted class.

An amortised generator produces counterfactuals for a whole data set at once, so besides
per-query proximity and validity (:mod:`jaxcf.evaluation.metrics`) it is judged by whether its
outputs, as
a set, look like real data of the class they are predicted as. Following Van Looveren et al.
(2021, *Conditional Generative Models for Counterfactual Explanations*), that is the squared MMD
between the counterfactuals and real instances, overall (:func:`mmd2`) and per class
(:func:`class_mmd2`: counterfactuals *predicted* as class ``c`` against real instances *labelled*
``c``). Images are first reduced to 32 numbers each by a fixed, randomly initialised
convolutional encoder (:func:`encode_images`), as in the paper; rows and series can be compared
as they are.

Conventions:

* Samples are ``[N, ...]`` arrays; every non-batch axis is flattened into one feature vector
  (as in :mod:`jaxcf.evaluation.metrics`), in the units of the inputs.
* Kernel: Gaussian (RBF), ``k(x, y) = exp(-||x - y||^2 / (2 s^2))`` with bandwidth ``s``.
* Bandwidth by the median heuristic (:func:`median_bandwidth`), when none is given:
  ``s^2 = median / 2``, where ``median`` is the median (``np.median``: the mean of the two middle
  values for an even count) of the squared Euclidean distances over all distinct pairs of the
  *pooled* sample ``concat(a, b)``; so ``k(x, y) = exp(-||x - y||^2 / median)``. This is
  alibi-detect's ``sigma_median`` convention, on the pooled sample. With more than
  ``max_points`` pooled points (default 2,048: about 2.1 million pairs), the median is taken over
  a subset of that many points drawn without replacement by a fixed-seed generator, so the
  heuristic stays cheap and deterministic. Compare several methods with *one* bandwidth (pass
  ``bandwidth=``) when their MMDs should share a scale.
* Estimator: the unbiased ``MMD_u^2`` of Gretton et al. (2012, eq. 3), diagonal terms excluded:
  ``mean_{i != j} k(a_i, a_j) + mean_{i != j} k(b_i, b_j) - 2 mean_{i, j} k(a_i, b_j)``. It can
  be slightly negative when the two distributions are equal; each sample needs at least 2 points.
* Arithmetic in float64 with numpy, kernel blocks of at most ``2**22`` entries (32 MiB), so a
  10,000 x 10,000 comparison runs in bounded memory; the result is deterministic.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# The metrics' batching helper: fixed-size jitted chunks, the last edge-padded, so any N compiles
# one shape (shared rather than copied).
from jaxcf.evaluation.metrics import chunked

Array = jax.Array

__all__ = [
    "ENCODER_DIM",
    "ImageEncoder",
    "class_mmd2",
    "encode_images",
    "frechet_distance",
    "make_image_encoder",
    "median_bandwidth",
    "mmd2",
]

# Kernel entries per block: bounds the float64 temporaries of one block at 32 MiB each.
_BLOCK_ENTRIES = 1 << 22
# The median heuristic's subsample: its seed is fixed so the bandwidth is reproducible.
_MEDIAN_POINTS = 2048
_MEDIAN_SEED = 0


# --------------------------------------------------------------------------------------------
# Input checks


def _sample(a: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """``[N, ...]`` numeric, finite -> ``[N, D]`` float64."""
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"{name} must be [N, D] (or [N, ...]), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {a.shape[0]}")
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"the samples have {a.shape[1]} and {b.shape[1]} features per row: they must match"
        )


def _check_bandwidth(bandwidth: Any) -> float:
    try:
        s = float(bandwidth)
    except (TypeError, ValueError):
        raise TypeError(f"bandwidth must be a positive number or None, got {bandwidth!r}") from None
    if isinstance(bandwidth, bool) or not math.isfinite(s) or s <= 0:
        raise ValueError(f"bandwidth must be a positive, finite number, got {bandwidth!r}")
    return s


# --------------------------------------------------------------------------------------------
# Kernel sums


def _sq_dists(x: np.ndarray, y: np.ndarray, x_sq: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """``[n, m]`` squared distances by ``|x|^2 + |y|^2 - 2 x.y``, clipped at 0 (rounding)."""
    d = x_sq[:, None] + y_sq[None, :]
    d -= 2.0 * (x @ y.T)
    return np.maximum(d, 0.0, out=d)


def _kernel_sum(x: np.ndarray, y: np.ndarray, gamma: float, same: bool) -> float:
    """``sum_{i, j} exp(-gamma ||x_i - y_j||^2)`` in row blocks; ``same`` (``y is x``) leaves
    out the diagonal, whose kernel value is 1 exactly, not 1 up to rounding of the expansion."""
    x_sq = np.einsum("ij,ij->i", x, x)
    y_sq = x_sq if same else np.einsum("ij,ij->i", y, y)
    rows = max(1, _BLOCK_ENTRIES // len(y))
    total = 0.0
    for start in range(0, len(x), rows):
        stop = min(start + rows, len(x))
        k = _sq_dists(x[start:stop], y, x_sq[start:stop], y_sq)
        k *= -gamma
        np.exp(k, out=k)
        if same:
            idx = np.arange(start, stop)
            k[idx - start, idx] = 0.0
        total += float(k.sum())
    return total


def median_bandwidth(a: Any, b: Any, max_points: int = _MEDIAN_POINTS) -> float:
    """The median-heuristic bandwidth ``s`` of the pooled sample (see the module docstring).

    Args:
      a: ``[N, D]`` first sample (any ``[N, ...]``; non-batch axes are flattened).
      b: ``[M, D]`` second sample.
      max_points: largest pooled sample whose pairs are all used; beyond it, a fixed-seed
        subset of this many pooled points.

    Returns:
      ``s = sqrt(median_{i < j} ||p_i - p_j||^2 / 2)`` over the pooled points ``p``, in the
      units of the inputs; the kernel is then ``exp(-||x - y||^2 / (2 s^2))``.

    Raises:
      ValueError: when the median squared distance is 0 (more than half the pooled pairs are
        identical points): no scale can be read from the data, so pass a bandwidth.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    _same_width(a, b)
    if int(max_points) < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    pooled = np.concatenate([a, b])
    if len(pooled) < 2:
        raise ValueError("the pooled sample needs at least 2 points for a median distance")
    if len(pooled) > max_points:
        pick = np.random.default_rng(_MEDIAN_SEED).choice(len(pooled), max_points, replace=False)
        pooled = pooled[np.sort(pick)]
    pooled = pooled - pooled.mean(axis=0)  # centring shrinks the norms the expansion cancels
    sq = np.einsum("ij,ij->i", pooled, pooled)
    d = _sq_dists(pooled, pooled, sq, sq)[np.triu_indices(len(pooled), 1)]
    median = float(np.median(d))
    if not median > 0:
        raise ValueError(
            "the median squared distance of the pooled sample is 0 (most points coincide): "
            "pass bandwidth= explicitly"
        )
    return math.sqrt(median / 2.0)


def mmd2(a: Any, b: Any, bandwidth: float | None = None) -> float:
    """Unbiased squared Maximum Mean Discrepancy between two samples, Gaussian kernel.

    Args:
      a: ``[N, D]`` first sample, ``N >= 2`` (any ``[N, ...]``; non-batch axes are flattened).
      b: ``[M, D]`` second sample, ``M >= 2``, same ``D``.
      bandwidth: the kernel's ``s`` in ``exp(-||x - y||^2 / (2 s^2))``, in input units; None
        takes :func:`median_bandwidth` of the pooled sample.

    Returns:
      ``MMD_u^2`` as a Python float (dimensionless: kernel values lie in (0, 1]); about 0, and
      possibly slightly negative, for samples of one distribution. Symmetric in ``a`` and ``b``
      and invariant to translating both.
    """
    a, b = _sample(a, "a", 2), _sample(b, "b", 2)
    _same_width(a, b)
    s = median_bandwidth(a, b) if bandwidth is None else _check_bandwidth(bandwidth)
    gamma = 1.0 / (2.0 * s * s)
    # Distances do not change under a common shift; centring on the pooled mean keeps the
    # squared norms, and so the cancellation in |x|^2 + |y|^2 - 2 x.y, small.
    centre = np.concatenate([a, b]).mean(axis=0)
    a, b = a - centre, b - centre
    n, m = len(a), len(b)
    k_aa = _kernel_sum(a, a, gamma, same=True) / (n * (n - 1))
    k_bb = _kernel_sum(b, b, gamma, same=True) / (m * (m - 1))
    k_ab = _kernel_sum(a, b, gamma, same=False) / (n * m)
    return k_aa + k_bb - 2.0 * k_ab


def frechet_distance(a: Any, b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two samples of features (the formula of FID,
    Heusel et al. 2017): ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)``.

    FID proper uses Inception-v3 features; offline there are none, so callers pass features of
    their own (e.g. a classifier's penultimate layer) and should say so. Covariances are the
    unbiased sample covariances; the matrix square roots come from symmetric eigendecompositions
    in float64 (negative round-off eigenvalues are clipped to 0).

    Args:
      a: ``[N, D]`` features, ``N >= 2`` (non-batch axes are flattened).
      b: ``[M, D]`` features, ``M >= 2``, same ``D``.

    Returns:
      The distance as a Python float, in squared feature units; 0 for identical samples.
    """
    a, b = _sample(a, "a", 2), _sample(b, "b", 2)
    _same_width(a, b)
    mu = a.mean(0) - b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    return float(
        mu @ mu + np.trace(s_a) + np.trace(s_b) - 2.0 * np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    )


def _labels(v: Any, n: int, num_classes: int, name: str) -> np.ndarray:
    v = np.asarray(v)
    if v.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one class per row), got {v.shape}")
    if not np.issubdtype(v.dtype, np.integer):
        raise TypeError(f"{name} must hold integer classes, got dtype {v.dtype}")
    if n and (v.min() < 0 or v.max() >= num_classes):
        raise ValueError(f"{name} has classes outside [0, {num_classes})")
    return v


def class_mmd2(
    features_cf: Any,
    pred_cf: Any,
    features_real: Any,
    labels_real: Any,
    num_classes: int,
    bandwidth: float | None = None,
) -> np.ndarray:
    """Per-class ``MMD_u^2`` between counterfactuals predicted as class ``c`` and real instances
    labelled ``c`` (Van Looveren et al. 2021, MMD per predicted class).

    Args:
      features_cf: ``[M, D]`` counterfactuals (or their encodings, :func:`encode_images`).
      pred_cf: ``[M]`` int, the classifier's prediction on each counterfactual.
      features_real: ``[N, D]`` real instances, same ``D``.
      labels_real: ``[N]`` int, their labels (or predictions, to compare like with like).
      num_classes: ``C``.
      bandwidth: one ``s`` for every class; None takes the median heuristic of each class's own
        pooled sample, as :func:`mmd2` on that pair of subsets would.

    Returns:
      ``[C]`` float64: ``mmd2(features_cf[pred_cf == c], features_real[labels_real == c])``, NaN
      for a class with fewer than 2 rows on either side.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    cf = _sample(features_cf, "features_cf")
    real = _sample(features_real, "features_real")
    _same_width(cf, real)
    pred_cf = _labels(pred_cf, len(cf), num_classes, "pred_cf")
    labels_real = _labels(labels_real, len(real), num_classes, "labels_real")
    if bandwidth is not None:
        bandwidth = _check_bandwidth(bandwidth)
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        a, b = cf[pred_cf == c], real[labels_real == c]
        if len(a) >= 2 and len(b) >= 2:
            out[c] = mmd2(a, b, bandwidth)
    return out


# --------------------------------------------------------------------------------------------
# Image encoder

ENCODER_DIM = 32
_ENCODER_FILTERS = (64, 128, 256)
_ENCODER_KERNEL = 7
_ENCODER_STRIDE = 2
_ENCODER_SLOPE = 0.01


class ImageEncoder(nnx.Module):
    """The paper's fixed, randomly initialised encoder that reduces images before MMD.

    Three convolutions (kernel 7, stride 2, "SAME" padding, 64 / 128 / 256 filters), each
    followed by LeakyReLU with slope 0.01, then a linear layer from the flattened map to 32
    features (no activation). Weights are Glorot-uniform (Keras' default, which the paper's
    TensorFlow code used), biases 0. Spatial sizes: 28 -> 14 -> 7 -> 4 (4,096 features into the
    linear layer), 64 -> 32 -> 16 -> 8 (16,384).

    Args:
      input_shape: ``(H, W, C)`` of the images (the linear layer's size depends on it).
      out_dim: features per image.
      rngs: initialisation streams; :func:`make_image_encoder` builds one from a seed.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], out_dim: int = ENCODER_DIM, *, rngs: nnx.Rngs
    ):
        h, w, c = (int(v) for v in input_shape)
        init = nnx.initializers.glorot_uniform()
        convs = []
        for f in _ENCODER_FILTERS:
            convs.append(
                nnx.Conv(
                    c,
                    f,
                    (_ENCODER_KERNEL, _ENCODER_KERNEL),
                    strides=_ENCODER_STRIDE,
                    padding="SAME",
                    kernel_init=init,
                    rngs=rngs,
                )
            )
            c = f
            h, w = -(-h // _ENCODER_STRIDE), -(-w // _ENCODER_STRIDE)  # "SAME": ceil(n / 2)
        self.convs = nnx.List(convs)
        self.linear = nnx.Linear(h * w * c, out_dim, kernel_init=init, rngs=rngs)
        self.input_shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))

    def __call__(self, x: Array) -> Array:
        """``[B, H, W, C]`` float32 -> ``[B, out_dim]`` float32."""
        for conv in self.convs:
            x = jax.nn.leaky_relu(conv(x), _ENCODER_SLOPE)
        return self.linear(x.reshape(x.shape[0], -1))


def _image_shape(input_shape: Any) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {input_shape}")
    return shape


def make_image_encoder(
    input_shape: tuple[int, int, int], seed: int = 0, out_dim: int = ENCODER_DIM
) -> ImageEncoder:
    """A new :class:`ImageEncoder` for ``(H, W, C)`` images, initialised from ``nnx.Rngs(seed)``:
    the same seed gives the same weights on every machine (JAX's counter-based PRNG)."""
    if int(out_dim) < 1:
        raise ValueError(f"out_dim must be >= 1, got {out_dim}")
    return ImageEncoder(_image_shape(input_shape), int(out_dim), rngs=nnx.Rngs(int(seed)))


@functools.lru_cache(maxsize=8)
def _encoder_parts(input_shape: tuple[int, int, int], seed: int, out_dim: int):
    # Built once per shape and seed: construction initialises ~1-4 M parameters.
    return nnx.split(make_image_encoder(input_shape, seed, out_dim))


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef: Any, state: Any, x: Array) -> Array:
    return nnx.merge(graphdef, state)(x).astype(jnp.float32)


def encode_images(
    images: Any, seed: int = 0, batch_size: int = 256, out_dim: int = ENCODER_DIM
) -> np.ndarray:
    """Encodes images with the fixed :class:`ImageEncoder` of ``seed``, for :func:`mmd2`.

    Args:
      images: ``[N, H, W, C]`` images, in the scale every compared set shares (our data sets:
        [0, 1]); encode real images and counterfactuals with the same ``seed``.
      seed: the encoder's initialisation seed.
      batch_size: images per jitted forward pass; the last batch is padded to the same size,
        so one shape compiles. Rows do not depend on it beyond float32 rounding.
      out_dim: features per image (the paper: 32).

    Returns:
      ``[N, out_dim]`` float32 encodings.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("images is an empty batch")
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise TypeError(f"images must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or inf")
    graphdef, state = _encoder_parts(_image_shape(x.shape[1:]), int(seed), int(out_dim))
    return chunked(lambda xb: _encode(graphdef, state, xb), batch_size, x)
