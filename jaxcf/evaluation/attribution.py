"""Attribution baselines for image classifiers: gradient saliency and Grad-CAM.

These are the classical answers to "which pixels does the classifier look at for this class?",
to be shown beside counterfactual explanations (:func:`jaxcf.report.attribution_grid`).

* :func:`saliency`: the gradient of the target class's logit with respect to the input
  (Simonyan, Vedaldi and Zisserman 2014), ``max_c |d logit_t / d x_{h,w,c}|`` per pixel, or
  gradient x input (``sum_c x_{h,w,c} * d logit_t / d x_{h,w,c}``, signed).
* :func:`grad_cam`: Grad-CAM (Selvaraju et al. 2017) on the classifier's last convolutional
  feature map ``A`` ``[B, h, w, K]``: channel weights ``w_k = mean_{i,j} d logit_t / d A_{i,j,k}``,
  map ``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the input's ``H x W`` and divided by its
  maximum per query (all zeros where the map is zero everywhere). ``weighting="elementwise"``
  gives HiResCAM (Draelos and Carin 2020), ``ReLU(sum_k dlogit_t/dA_k * A_k)``, which stays
  faithful to heads that are not a global average pool (see :func:`grad_cam`); behind a global
  average pool and a linear layer the two are equal.

Every function takes a batch of NHWC images ``x`` ``[B, H, W, C]`` and class targets ``[B]``
(int; ``None``: the class the classifier predicts) and returns one map per query, ``[B, H, W]``
float32. The target's *logit* is differentiated, not its softmax probability (which would
also credit evidence against the other classes). All queries go through one backward pass: the
gradient of ``sum_b logit_{b, t_b}``, which is each query's own gradient because an
eval-mode classifier treats queries independently.

:func:`saliency` and :func:`grad_cam` validate their inputs on the host (rank, NaN/inf, target
range, the classifier's input shape and, for Grad-CAM, its feature-map hook) and then run one
jitted program per shape. Inside your own ``jit``/``vmap`` call :func:`saliency_unchecked` and
:func:`grad_cam_unchecked` on a pure classifier (:func:`jaxcf.core.as_pure`).

Grad-CAM needs two methods beyond the classifier protocol: ``feature_map(x) -> [B, h, w, K]``,
the last convolutional activation, and ``map_head(a) -> [B, C]``, the rest of the network, with
``map_head(feature_map(x)) == logits(x)``. jaxcf's :class:`~jaxcf.models.SmallCNN`,
:class:`~jaxcf.models.ResNet18` and :class:`~jaxcf.models.StandardResNet18` offer them;
classifiers without a convolutional feature map (MLP, BiLSTM, a plain
:class:`~jaxcf.core.FunctionClassifier`) are refused with a ``TypeError``.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.core import PureModule, as_pure, checks
from jaxcf.core import targets as targets_lib

Array = jax.Array
SaliencyMethod = Literal["gradient", "gradient_x_input"]
SALIENCY_METHODS: tuple[SaliencyMethod, ...] = ("gradient", "gradient_x_input")
CamWeighting = Literal["mean", "elementwise"]
CAM_WEIGHTINGS: tuple[CamWeighting, ...] = ("mean", "elementwise")

__all__ = [
    "CAM_WEIGHTINGS",
    "SALIENCY_METHODS",
    "grad_cam",
    "grad_cam_unchecked",
    "saliency",
    "saliency_unchecked",
]


# --------------------------------------------------------------------------------------------
# Pure, jittable bodies (no checks)


def _target_logit_sum(logits: Array, target: Array) -> Array:
    """``sum_b logits[b, target[b]]``: its gradient is every query's own gradient at once."""
    picked = jnp.take_along_axis(logits, target[:, None], axis=-1)
    return jnp.sum(picked.astype(jnp.float32))


def saliency_unchecked(
    classifier: Any, x: Array, target: Array, method: SaliencyMethod = "gradient"
) -> Array:
    """:func:`saliency` without input checks: jittable and vmappable.

    Args:
      classifier: a pure classifier (a pytree offering ``logits``, see
        :func:`jaxcf.core.as_pure`).
      x: ``[B, H, W, C]`` float32 images.
      target: ``[B]`` int32 classes, in ``[0, C)`` (not checked).
      method: ``"gradient"`` or ``"gradient_x_input"`` (static).

    Returns:
      ``[B, H, W]`` float32 (see :func:`saliency` for the units).
    """
    grad = jax.grad(lambda z: _target_logit_sum(classifier.logits(z), target))(x)
    if method == "gradient":
        return jnp.max(jnp.abs(grad), axis=-1)
    if method == "gradient_x_input":
        return jnp.sum(grad * x, axis=-1)
    raise ValueError(f"method must be one of {SALIENCY_METHODS}, got {method!r}")


def grad_cam_unchecked(
    classifier: Any, x: Array, target: Array, weighting: CamWeighting = "mean"
) -> Array:
    """:func:`grad_cam` without input checks: jittable and vmappable.

    Args:
      classifier: a pure classifier offering ``feature_map`` and ``map_head`` (see the module
        docstring).
      x: ``[B, H, W, C]`` float32 images.
      target: ``[B]`` int32 classes, in ``[0, C)`` (not checked).
      weighting: ``"mean"`` (Grad-CAM) or ``"elementwise"`` (HiResCAM) (static).

    Returns:
      ``[B, H, W]`` float32 in ``[0, 1]``.
    """
    a = classifier.feature_map(x)  # [B, h, w, K]
    grad = jax.grad(lambda f: _target_logit_sum(classifier.map_head(f), target))(a)
    grad, a = grad.astype(jnp.float32), a.astype(jnp.float32)
    if weighting == "mean":
        weights = jnp.mean(grad, axis=(1, 2))  # [B, K]
        cam = jax.nn.relu(jnp.einsum("bhwk,bk->bhw", a, weights))
    elif weighting == "elementwise":
        cam = jax.nn.relu(jnp.sum(grad * a, axis=-1))
    else:
        raise ValueError(f"weighting must be one of {CAM_WEIGHTINGS}, got {weighting!r}")
    # Bilinear interpolation of a non-negative map stays non-negative (its weights are).
    cam = jax.image.resize(cam, (x.shape[0], x.shape[1], x.shape[2]), method="bilinear")
    top = jnp.max(cam, axis=(1, 2), keepdims=True)  # [B, 1, 1]
    positive = top > 0.0
    # XLA may divide by multiplying with a reciprocal: clip the maximum's rounding above 1.
    return jnp.where(positive, jnp.minimum(cam / jnp.where(positive, top, 1.0), 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("method",))
def _saliency_jit(classifier, x, target, method):
    return saliency_unchecked(classifier, x, target, method)


@functools.partial(jax.jit, static_argnames=("weighting",))
def _grad_cam_jit(classifier, x, target, weighting):
    return grad_cam_unchecked(classifier, x, target, weighting)


@jax.jit
def _predict(classifier, x):
    return jnp.argmax(classifier.logits(x), axis=-1).astype(jnp.int32)


# --------------------------------------------------------------------------------------------
# Checked entry points


def _name(classifier: Any) -> str:
    """The user's classifier's class name (the wrapped module's, for a PureModule)."""
    if isinstance(classifier, PureModule):
        return type(classifier._rebuild()).__name__
    return type(classifier).__name__


def _check(classifier: Any, x: Any, target: Any, caller: str) -> tuple[Any, Array, Array, int]:
    """``(pure classifier, x float32 [B, H, W, C], target int32 [B], number of classes)``;
    raises before anything compiles."""
    pure = as_pure(classifier)
    shape = np.shape(x)
    if len(shape) != 4:
        raise ValueError(
            f"{caller} takes a batch of NHWC images [B, H, W, C], got shape {tuple(shape)} "
            "(a single image needs a leading batch axis: x[None])"
        )
    x = checks.check_queries(x, min_rank=4)
    num_classes = checks.classifier_io(pure, tuple(x.shape[1:]))
    if target is None:
        target = _predict(pure, x)
    else:
        target = targets_lib.check_target(target, x.shape[0], num_classes, kinds=("class",))
    return pure, x, target, num_classes


def saliency(
    classifier: Any, x: Any, target: Any = None, *, method: SaliencyMethod = "gradient"
) -> Array:
    """Gradient saliency maps of the target class's logit, one per query.

    Args:
      classifier: any classifier offering ``logits(x) -> [B, C]`` (an NNX module, a
        :class:`~jaxcf.core.FunctionClassifier`, ...).
      x: ``[B, H, W, C]`` images (finite; values are not clipped or checked against a domain).
      target: ``[B]`` int class indices (or one int for every query); ``None`` explains the
        class the classifier predicts for each query.
      method: ``"gradient"`` (default): ``max_c |d logit_t / d x_c|`` per pixel, non-negative,
        in logit units per unit of input intensity (Simonyan et al. 2014).
        ``"gradient_x_input"``: ``sum_c x_c * d logit_t / d x_c``, signed, in logit units: each
        pixel's first-order contribution to the logit relative to an all-zero (black) image;
        positive where the pixel's intensity supports the target class.

    Returns:
      ``[B, H, W]`` float32.

    Raises:
      ValueError: ``x`` not ``[B, H, W, C]``, empty, NaN/inf or of a shape the classifier does
        not take; a target of the wrong length or outside ``[0, C)``; an unknown ``method``.
      TypeError: a classifier without ``logits``; a soft or regression (float) target.
    """
    if method not in SALIENCY_METHODS:
        raise ValueError(f"method must be one of {SALIENCY_METHODS}, got {method!r}")
    pure, x, target, _ = _check(classifier, x, target, "saliency")
    return _saliency_jit(pure, x, target, method)


def grad_cam(
    classifier: Any, x: Any, target: Any = None, *, weighting: CamWeighting = "mean"
) -> Array:
    """Grad-CAM maps of the target class on the classifier's last convolutional feature map.

    For the feature map ``A = feature_map(x)`` ``[B, h, w, K]``: channel weights
    ``w_k = mean_{i,j} d logit_t / d A_{i,j,k}``, map ``ReLU(sum_k w_k A_k)`` ``[B, h, w]``,
    upsampled bilinearly (``jax.image.resize``) to ``[B, H, W]`` and divided by its maximum per
    query. A query whose map is zero everywhere (no positive evidence for the target at this
    layer) gets all zeros.

    The spatial mean suits heads that pool the map globally (the ResNets). Behind a head that
    flattens it into a dense layer (SmallCNN), each position has its own weights, the mean
    gradients of a channel largely cancel, and ``sum_k w_k A_k`` is often negative everywhere:
    on the MNIST SmallCNN of the tests about a third of the predicted-class maps are all zero.
    ``weighting="elementwise"`` (HiResCAM) keeps the gradient per position,
    ``ReLU(sum_k dlogit_t/dA_{i,j,k} * A_{i,j,k})``, whose sum over positions before the ReLU is
    the first-order estimate of the logit. Behind a global average pool and a linear layer (both
    ResNets) the gradient is the same at every position and the two weightings agree.

    Args:
      classifier: a classifier offering ``logits`` and the Grad-CAM hook ``feature_map(x) ->
        [B, h, w, K]`` and ``map_head(a) -> [B, C]`` (jaxcf's SmallCNN, ResNet18 and
        StandardResNet18 do).
      x: ``[B, H, W, C]`` images (finite).
      target: ``[B]`` int class indices (or one int); ``None``: the predicted classes.
      weighting: ``"mean"`` (Grad-CAM, default) or ``"elementwise"`` (HiResCAM).

    Returns:
      ``[B, H, W]`` float32 in ``[0, 1]`` (unitless: relative to each query's maximum). Its
      resolution is the feature map's, ``h x w``, interpolated: 14x14 for SmallCNN, 4x4 for
      ResNet18, and a single cell (a constant map) for StandardResNet18 on 28x28 inputs.

    Raises:
      TypeError: a classifier without a convolutional feature map (MLP, BiLSTM,
        FunctionClassifier), or a float target.
      ValueError: as :func:`saliency`, an unknown ``weighting``, or a ``feature_map`` that
        does not return ``[B, h, w, K]``.
    """
    if weighting not in CAM_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {CAM_WEIGHTINGS}, got {weighting!r}")
    pure = as_pure(classifier)
    missing = [m for m in ("feature_map", "map_head") if not callable(getattr(pure, m, None))]
    if missing:
        raise TypeError(
            f"grad_cam needs a convolutional feature map, and the classifier "
            f"{_name(classifier)} has no {' or '.join(missing)}: Grad-CAM weights the channels "
            "of the last convolutional activation, so the classifier must offer "
            "feature_map(x) -> [B, h, w, K] and map_head(a) -> [B, C] with "
            "map_head(feature_map(x)) == logits(x) (jaxcf's SmallCNN, ResNet18 and "
            "StandardResNet18 do; MLP, BiLSTM and FunctionClassifier have no convolutional "
            "feature map: use saliency for them)"
        )
    pure, x, target, num_classes = _check(pure, x, target, "grad_cam")
    probe = jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32)
    fmap = jax.eval_shape(pure.feature_map, probe)
    if len(fmap.shape) != 4 or fmap.shape[0] != 1:
        raise ValueError(
            f"{_name(classifier)}.feature_map must return [B, h, w, K], got a shape "
            f"{tuple(fmap.shape)} for one query"
        )
    head = jax.eval_shape(pure.map_head, fmap)
    if tuple(head.shape) != (1, num_classes):
        raise ValueError(
            f"{_name(classifier)}.map_head must return logits [B, {num_classes}], got "
            f"{tuple(head.shape)} for one query"
        )
    return _grad_cam_jit(pure, x, target, weighting)
