"""A user's own classifier named in an experiment config: a Flax NNX module (factory and Orbax
checkpoint), a Flax Linen module (class or factory and its variables) or a plain JAX function
of ``(params, x)``; see :mod:`jaxcf.models` (``nnx_classifier``, ``linen_classifier``,
``function_classifier``) for how each is loaded."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from jaxcf.core import FunctionClassifier, validation
from jaxcf.models import (
    equinox_classifier,
    function_classifier,
    linen_classifier,
    nnx_classifier,
)

KINDS = ("nnx", "linen", "equinox", "function")


@dataclasses.dataclass(frozen=True)
class UserModel:
    """A classifier of the user's own.

    Attributes:
      kind: ``"nnx"``, ``"linen"``, ``"equinox"`` (the optional ``equinox`` extra) or
        ``"function"``.
      code: an import path ``"package.module:name"``: the NNX factory (it makes its own
        ``nnx.Rngs``), the Linen module class (or a factory of one), the Equinox factory, or
        the logits function ``f(params, x) -> [B, C]``.
      checkpoint: the weights: an Orbax PyTree checkpoint (NNX: ``nnx.state(module)``; Linen:
        the variables; function: the params) or an ``.npz`` of a flat dict; Equinox: the file
        of ``eqx.tree_serialise_leaves``.
      kwargs: keyword arguments of the factory or module class, as ``((name, value), ...)``.
      logits: NNX and Equinox: the method giving logits (``"__call__"``: calling the module).
      features, head: the methods (NNX, Linen) or import paths of functions of
        ``(params, x)`` / ``(params, f)`` (function) giving penultimate features and the
        logits of features; needed by methods that work on features (DeDUCE).
      input_shape: the shape of one input, checked against the data (default: the data's).
      domain: the box the model's inputs live in (default: the data's).
      per_example: Equinox only: the module takes one example (vmapped over the batch).
    """

    kind: Literal["nnx", "linen", "equinox", "function"]
    code: str
    checkpoint: str | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()
    logits: str = "__call__"
    features: str | None = None
    head: str | None = None
    input_shape: tuple[int, ...] | None = None
    domain: tuple[float, float] | None = None
    per_example: bool = True

    def __post_init__(self):
        validation.one_of(self, "kind", KINDS)
        if not isinstance(self.code, str) or ":" not in self.code:
            raise ValueError(f"UserModel.code must be 'package.module:name', got {self.code!r}")
        if self.kind == "linen" and self.checkpoint is None:
            raise ValueError("UserModel(kind='linen') needs the checkpoint of its variables")
        object.__setattr__(self, "kwargs", tuple((str(k), v) for k, v in self.kwargs))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        if self.domain is not None:
            object.__setattr__(self, "domain", tuple(self.domain))
        validation.box(self, "domain")

    def load(self) -> FunctionClassifier:
        """The classifier (see :mod:`jaxcf.models`' adapters)."""
        common = dict(input_shape=self.input_shape, domain=self.domain)
        if self.kind == "nnx":
            return nnx_classifier(
                self.code,
                self.checkpoint,
                kwargs=dict(self.kwargs),
                logits=self.logits,
                features=self.features,
                head=self.head,
                **common,
            )
        if self.kind == "equinox":
            return equinox_classifier(
                self.code,
                self.checkpoint,
                kwargs=dict(self.kwargs),
                per_example=self.per_example,
                logits=self.logits,
                features=self.features,
                head=self.head,
                **common,
            )
        if self.kind == "linen":
            return linen_classifier(
                self.code,
                self.checkpoint,
                kwargs=dict(self.kwargs),
                features=self.features,
                head=self.head,
                **common,
            )
        return function_classifier(
            self.code, self.checkpoint, features=self.features, head=self.head, **common
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for a report."""
        return {"source": self.checkpoint, "kind": f"user {self.kind}", "code": self.code}
