"""Mixed precision: a classifier run in bfloat16 inside float32 searches.

:func:`with_precision` wraps any classifier (the protocol of :mod:`jaxcf.core`) so that its
forward pass runs in a lower *compute* dtype while everything around it stays float32:

* its floating-point parameters (and other float state: batch-norm averages, spectral-norm
  vectors) are cast to the compute dtype **once**, when wrapped; integer leaves stay as they are;
* inputs are cast to the compute dtype on the way in;
* outputs (``logits``, ``features``, ``head``) come back as float32.

So a method's losses, softmax thresholds, densities and iterates stay float32, and the gradient
of a loss with respect to the input is float32 too (``astype``'s transpose casts the cotangent
back), though it carries only the compute dtype's precision. What changes is the classifier's
arithmetic: bfloat16 keeps 8 significant bits, enough for the search's steps, not for its
verdicts: about 8% of the counterfactuals a bfloat16 network puts past a 0.5 threshold sit just
below it under the float32 network (``benchmarks/mixed_precision.py``).

The wrapper therefore also carries the classifier's float32 form (``reference``), and the
methods let that one decide: a search counts a query as solved only when the float32 network,
run on the candidate, agrees (a candidate it rejects keeps searching), and a one-pass method
reports success as the float32 network judges its output (:func:`decision_classifier`). The
bfloat16 network steers, the float32 one decides; a reported success is a float32 success.

The wrapper is a pytree (the cast parameters and the float32 ones are its leaves, the dtype is
static), so it passes through ``jit``, ``shard_map`` and the runner's fingerprint like any
classifier, and two wraps of one model share a compiled program. ``"float32"`` returns the
classifier unwrapped: the default path is bitwise what it was.

Users choose the precision where they choose a method: ``make("deduce", cfg, precision=...)``
or ``MethodSpec(..., precision="bfloat16")`` (see :mod:`jaxcf.methods`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxcf.core._classifier import as_pure

Array = jax.Array

PRECISIONS = ("float32", "bfloat16")
"""Names accepted for a classifier's compute precision; ``"float32"`` is the default."""


def check_precision(precision: Any) -> str:
    """Returns ``precision`` if it names a supported compute dtype.

    Raises:
      ValueError: anything but one of :data:`PRECISIONS` (a dtype object is refused too, so
        that configs stay plain, JSON-ready strings).
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _cast_floats(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating-point array leaf cast to ``dtype`` (others untouched)."""

    def cast(leaf):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
            return jnp.asarray(leaf, dtype)
        return leaf

    return jax.tree.map(cast, tree)


@struct.dataclass
class MixedPrecision:
    """A classifier computing in ``compute_dtype`` behind a float32 interface.

    Build it with :func:`with_precision`. Shapes are the wrapped classifier's; dtypes:

    * ``logits(x [B, ...] float32) -> [B, C] float32``
    * ``features(x [B, ...] float32) -> [B, D] float32``
    * ``head(features [B, D] float32) -> [B, C] float32``

    Attributes:
      inner: the wrapped classifier's pytree, its float leaves already in ``compute_dtype``.
      reference: the same classifier in float32 (its pure form, as wrapped), which decides
        success (:func:`decision_classifier`); ``None`` leaves the verdicts to ``inner`` too
        (decisions in the compute dtype, as a benchmark's comparison point).
      compute_dtype: the dtype's name (static, so that equal wraps share compiled programs).
    """

    inner: Any
    reference: Any = None
    compute_dtype: str = struct.field(pytree_node=False, default="bfloat16")

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return getattr(self.inner, "input_shape", None)

    @property
    def domain(self) -> tuple[float, float] | None:
        return getattr(self.inner, "domain", None)

    def _in(self, a: Array) -> Array:
        return a.astype(self.compute_dtype)

    def _method(self, name: str):
        fn = getattr(self.inner, name, None)
        if not callable(fn):
            raise TypeError(f"the classifier wrapped in {self.compute_dtype} has no {name}()")
        return fn

    def logits(self, x: Array) -> Array:
        return self._method("logits")(self._in(x)).astype(jnp.float32)

    def features(self, x: Array) -> Array:
        return self._method("features")(self._in(x)).astype(jnp.float32)

    def head(self, features: Array) -> Array:
        return self._method("head")(self._in(features)).astype(jnp.float32)


def with_precision(classifier: Any, precision: str = "float32") -> Any:
    """``classifier`` computing in ``precision`` (see the module docstring).

    Args:
      classifier: anything :func:`jaxcf.core.as_pure` accepts (an NNX module, a
        :class:`~jaxcf.core.FunctionClassifier`, a pytree or plain object offering
        ``logits``).
      precision: ``"float32"`` (returns ``classifier`` itself, untouched) or ``"bfloat16"``.

    Returns:
      ``classifier``, or a :class:`MixedPrecision` around its pure form (cast, and kept in
      float32 as the ``reference`` that decides success). Wrapping a
      :class:`MixedPrecision` again at its own precision returns it unchanged; at another one it
      is refused (its parameters were already rounded).

    Raises:
      ValueError: an unknown precision, or re-wrapping at a different one.
      TypeError: the classifier lacks ``logits``.
    """
    check_precision(precision)
    if isinstance(classifier, MixedPrecision):
        if classifier.compute_dtype != precision:
            raise ValueError(
                f"this classifier already computes in {classifier.compute_dtype}; wrap the "
                f"original to run it in {precision}"
            )
        return classifier
    if precision == "float32":
        return classifier
    pure = as_pure(classifier)
    return MixedPrecision(
        inner=_cast_floats(pure, jnp.dtype(precision)), reference=pure, compute_dtype=precision
    )


def decision_classifier(classifier: Any) -> Any:
    """The classifier whose verdict counts: a :class:`MixedPrecision`'s float32 ``reference``,
    any other classifier (or a wrapper without a reference) itself.

    Methods score their candidates with it to decide success; with ``classifier`` returned
    unchanged the float32 path traces exactly as before.
    """
    if isinstance(classifier, MixedPrecision) and classifier.reference is not None:
        return classifier.reference
    return classifier
