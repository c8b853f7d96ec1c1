"""Adapters that turn what a user has into jittable pytrees: NNX modules, plain Python objects.

Inside jitted code, a model or density must be a pytree whose arrays are leaves, so that frozen
parameters are passed as arguments (not baked into the program as constants) and two calls with
the same architecture and shapes reuse one compiled program.

* :class:`PureModule` wraps any Flax NNX module: the graph definition is static, the state
  (params, batch statistics, spectral-norm vectors, ...) is data, and *every* method of the module
  is forwarded (``logits``, ``features``, ``encode``, ``decode``, ...), each call running on a
  throw-away copy merged inside the trace, so nothing a method does can mutate the user's model.
  RNG state (``nnx.RngState``) is kept out of the traced pytree: it is static, compared by value,
  so methods that draw from the module's own streams still run (take keys explicitly for
  randomness that matters), and fingerprints of the pytree hold no keys.
* :class:`PureObject` wraps a plain Python object (no pytree registration) whose array
  attributes are its data: they become leaves, the rest stays static, and its methods are
  forwarded the same way.
* :func:`as_pytree` picks the right one, and leaves anything that already is a pytree of arrays
  (our dataclasses, an Equinox module) as it is.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import jax
import numpy as np
from flax import nnx, struct

Array = jax.Array


class Frozen:
    """A static (non-pytree) value compared and hashed by the bytes of its arrays, so that two
    wrappers of equal RNG state share a compiled program."""

    def __init__(self, value: Any, key: str | None = None):
        self.value = value
        h = hashlib.sha256()
        if key is not None:  # the caller describes the value
            h.update(key.encode())
        else:
            leaves, treedef = jax.tree.flatten(value)
            h.update(str(treedef).encode())
            for leaf in leaves:
                h.update(np.ascontiguousarray(np.asarray(plain_leaf(leaf))).tobytes())
        self.digest = h.hexdigest()

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frozen) and other.digest == self.digest

    def __repr__(self) -> str:
        return f"Frozen({self.digest[:16]})"


def plain_leaf(leaf: Any) -> Any:
    """A PRNG key's raw bits; any other leaf unchanged (what hashing a pytree's leaves reads:
    typed keys have no bytes of their own)."""
    if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(leaf)
    return leaf


class _Forwarding:
    """Forwards unknown public attributes to the wrapped object rebuilt by ``_rebuild()``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._rebuild(), name)


@struct.dataclass
class PureModule(_Forwarding):
    """A frozen NNX module split into a static graph definition and a pytree of state.

    Attributes:
      graphdef: the module's structure (static).
      state: everything but RNG state (data).
      rng: the module's RNG state, static and compared by value (``None`` if it has none).
      input_shape: per-query input shape the module declares (``config.input_shape``), if any.
      domain: the box its inputs live in (the module's ``domain`` attribute), if any.
    """

    graphdef: nnx.GraphDef = struct.field(pytree_node=False)
    state: nnx.State
    rng: Frozen | None = struct.field(pytree_node=False, default=None)
    input_shape: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)
    domain: tuple[float, float] | None = struct.field(pytree_node=False, default=None)

    @classmethod
    def wrap(cls, module: nnx.Module, *, eval_mode: bool = True) -> PureModule:
        """Splits a copy of ``module`` (put in eval mode: batch norm uses its running averages,
        spectral norm stops iterating)."""
        module = nnx.clone(module)
        if eval_mode:
            module.eval()
        graphdef, rng, state = nnx.split(module, nnx.RngState, ...)
        declared = getattr(getattr(module, "config", None), "input_shape", None)
        domain = getattr(module, "domain", None)
        return cls(
            graphdef=graphdef,
            state=state,
            rng=Frozen(rng) if jax.tree.leaves(rng) else None,
            input_shape=tuple(declared) if declared is not None else None,
            domain=tuple(domain) if domain is not None else None,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the module itself (its ``__call__``), on a throw-away copy like every method."""
        return self._rebuild()(*args, **kwargs)

    def _rebuild(self) -> nnx.Module:
        states = (self.state,) if self.rng is None else (self.rng.value, self.state)
        return nnx.merge(self.graphdef, *states)


@struct.dataclass
class PureObject(_Forwarding):
    """A plain Python object whose array attributes are leaves (see the module docstring)."""

    arrays: dict[str, Array]
    template: Frozen = struct.field(pytree_node=False)

    @classmethod
    def wrap(cls, obj: Any) -> PureObject:
        attrs = vars(obj)
        arrays = {k: v for k, v in attrs.items() if _is_array(v)}
        rest = copy.copy(obj)
        for k in arrays:  # the static template keeps no arrays, only their absence
            setattr(rest, k, None)
        # Two objects of one class with equal non-array attributes share a compiled program;
        # attributes without a faithful repr fall back to the object's identity.
        others = {k: v for k, v in attrs.items() if k not in arrays}
        key = f"{type(obj).__module__}.{type(obj).__qualname__}:{others!r}"
        if " at 0x" in key:
            key += f"@{id(obj)}"
        return cls(arrays=arrays, template=Frozen(rest, key=key))

    def _rebuild(self) -> Any:
        obj = copy.copy(self.template.value)
        for k, v in self.arrays.items():
            setattr(obj, k, v)
        return obj


def _is_array(v: Any) -> bool:
    return isinstance(v, jax.Array | np.ndarray)


def is_pytree_of_arrays(obj: Any) -> bool:
    """Whether ``obj`` flattens into array leaves (and is not itself a single opaque leaf)."""
    leaves = jax.tree.leaves(obj)
    if len(leaves) == 1 and leaves[0] is obj:
        return False
    return all(
        isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float | bool)
        for leaf in leaves
    )


def as_pytree(obj: Any) -> Any:
    """``obj`` in a jittable form: NNX modules become :class:`PureModule`, plain objects
    :class:`PureObject`; pytrees of arrays are returned as they are."""
    if isinstance(obj, PureModule | PureObject):
        return obj
    if isinstance(obj, nnx.Module):
        return PureModule.wrap(obj)
    if is_pytree_of_arrays(obj):
        return obj
    if hasattr(obj, "__dict__"):
        return PureObject.wrap(obj)
    raise TypeError(f"cannot make a jittable pytree of {type(obj).__name__}")
