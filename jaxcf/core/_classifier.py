"""The classifier protocol every method relies on, and adapters to a pure, jittable form.

A method never needs jaxcf's training code. It takes any object offering, for a batch ``x`` of
shape ``[B, *input_shape]``:

* ``logits(x) -> [B, C]``
* ``features(x) -> [B, D]`` (penultimate activations; only methods that need them, e.g. DeDUCE)
* ``head(features) -> [B, C]`` (so that ``head(features(x)) == logits(x)``)

Inside jitted code the classifier must be a pytree whose arrays are leaves (see
:mod:`jaxcf.core`). :func:`as_pure` turns what a user has into such a pytree:

* a Flax NNX module (ours or a user's own) becomes a :class:`~jaxcf.core.PureModule` in eval
  mode, forwarding every method;
* a user's plain JAX function wraps in one line as
  ``FunctionClassifier(lambda params, x: ..., params)``;
* a plain Python object with array attributes becomes a :class:`~jaxcf.core.PureObject`;
* any other pytree offering the protocol (an Equinox module, say) is used as it is.

A classifier may also declare ``input_shape`` (per query) and ``domain``, the box ``(lo, hi)``
its inputs live in (our image models: ``(0.0, 1.0)``). Methods take the box they clip to from
there unless their config names one; without either, inputs are unbounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np
from flax import struct

from jaxcf.core._pure import PureModule, as_pytree

Array = jax.Array
PyTree = Any


@runtime_checkable
class Classifier(Protocol):
    """What a method needs of a classifier. ``features``/``head`` are optional for some methods."""

    def logits(self, x: Array) -> Array: ...


NNXClassifier = PureModule
"""The pure form of an NNX classifier (an alias of :class:`jaxcf.core.PureModule`)."""


@struct.dataclass
class FunctionClassifier:
    """Wraps plain functions of ``(params, x)`` into the classifier protocol.

    Example (a user's own JAX function, in one line)::

        clf = FunctionClassifier(lambda p, x: x.reshape(len(x), -1) @ p["w"] + p["b"], params)

    The functions are static (hashed by identity): create them once, not per call, or every
    call recompiles. ``features_fn(params, x) -> [B, D]`` and ``head_fn(params, f) -> [B, C]``
    are only needed by methods that use features. ``input_shape`` and ``domain`` are optional
    declarations (see the module docstring).
    """

    logits_fn: Callable[[PyTree, Array], Array] = struct.field(pytree_node=False)
    params: PyTree
    features_fn: Callable[[PyTree, Array], Array] | None = struct.field(
        pytree_node=False, default=None
    )
    head_fn: Callable[[PyTree, Array], Array] | None = struct.field(pytree_node=False, default=None)
    input_shape: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)
    domain: tuple[float, float] | None = struct.field(pytree_node=False, default=None)

    def logits(self, x: Array) -> Array:
        return self.logits_fn(self.params, x)

    def features(self, x: Array) -> Array:
        if self.features_fn is None:
            raise TypeError("this FunctionClassifier was built without features_fn")
        return self.features_fn(self.params, x)

    def head(self, features: Array) -> Array:
        if self.head_fn is None:
            raise TypeError("this FunctionClassifier was built without head_fn")
        return self.head_fn(self.params, features)


def as_pure(classifier: Any, *, need_features: bool = False) -> Any:
    """Returns a jittable pytree form of ``classifier`` (see the module docstring).

    Raises:
      TypeError: if the object lacks the protocol methods the caller needs.
    """
    required = ("logits", "features", "head") if need_features else ("logits",)
    missing = [name for name in required if not callable(getattr(classifier, name, None))]
    if isinstance(classifier, FunctionClassifier):  # its methods exist; its functions may not
        given = {"features": classifier.features_fn, "head": classifier.head_fn}
        missing += [name for name in required if name in given and given[name] is None]
    if missing:
        raise TypeError(
            f"classifier {type(classifier).__name__} lacks {', '.join(missing)}: a classifier "
            "must offer logits(x) -> [B, C]"
            + (
                "; this method also needs features(x) -> [B, D] and head(f)"
                if need_features
                else ""
            )
        )
    return as_pytree(classifier)


def classifier_digest(classifier: Any) -> str:
    """SHA-256 over the arrays of a classifier's pure form, by path: the identity a generator
    checkpoint records for the classifier it was trained against."""
    pure = as_pure(classifier)
    h = hashlib.sha256()
    flat, _ = jax.tree_util.tree_flatten_with_path(pure)
    for path, leaf in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
