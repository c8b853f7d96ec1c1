"""A user's own model as a jaxcf classifier: a Flax NNX module from a factory and an Orbax
checkpoint, a Flax Linen module with its variables, an Equinox module (the optional
``equinox`` extra) with its serialised leaves, or a plain JAX function of ``(params, x)``.

Code is named by an import path, ``"package.module:attribute"`` (the module must be importable:
installed, or in the working directory). Weights come from an Orbax PyTree checkpoint (what
``orbax.checkpoint`` saves for a pytree: ``ocp.save(path, nnx.state(model))`` for an NNX
module, the variables dict for Linen, the params for a function; the older
``StandardCheckpointer`` format loads too) or from an ``.npz`` file of a flat dict of arrays.

Every adapter returns a :class:`~jaxcf.core.FunctionClassifier`, so a method sees the usual
protocol: ``logits(x)``, and ``features(x)`` / ``head(f)`` where the user names them (methods
that need features, such as DeDUCE, refuse a classifier without them, naming what is missing).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from orbax.checkpoint import v1 as ocp

from jaxcf.core import FunctionClassifier, as_pytree


def import_object(path: str) -> Any:
    """The attribute ``path`` names, ``"package.module:attribute"`` (dots after the colon walk
    into the attribute).

    Raises:
      ValueError: a path without ``:``.
      ImportError: the module does not import (its own error attached).
      AttributeError: the module has no such attribute.
    """
    if not isinstance(path, str) or ":" not in path:
        raise ValueError(f"expected 'package.module:attribute', got {path!r}")
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r} (from {path!r}): {exc}") from exc
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{module_name!r} has no attribute {attribute!r} (from {path!r})")
        obj = getattr(obj, part)
    return obj


def load_params(path: str | Path, like: Any = None) -> Any:
    """A pytree of arrays from an Orbax PyTree checkpoint (restored into the structure of
    ``like`` when given, e.g. an NNX module's abstract state) or a flat ``.npz`` file (a dict).

    Raises:
      FileNotFoundError: nothing at ``path``.
      ValueError: a checkpoint whose arrays do not fit ``like`` (the mismatch named).
    """
    path = Path(path).resolve()  # Orbax wants absolute paths; a config names relative ones
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    try:
        with warnings.catch_warnings():
            # Orbax warns that it reads the saved sharding when none is given: a classifier's
            # weights go to the default device, where the saved (single-device) layout fits.
            warnings.filterwarnings("ignore", "Sharding info not provided", UserWarning)
            return ocp.load(path, None if like is None else _on_default_device(like))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the checkpoint at {path} does not fit the model: {exc}") from exc


def _on_default_device(like: Any) -> Any:
    """``like``'s array leaves as abstract arrays placed on the default device."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def place(leaf):
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device)
        return leaf

    return jax.tree.map(place, like)


def _method(name: str | None) -> Callable[[Any, Any], Any] | None:
    """``f(module, x) = module.<name>(x)`` (``"__call__"``: the module itself)."""
    if name is None:
        return None
    if name == "__call__":
        return lambda module, x: module(x)
    return lambda module, x: getattr(module, name)(x)


def _check_methods(obj: Any, names: Mapping[str, str | None], what: str) -> None:
    for role, name in names.items():
        if name is not None and name != "__call__" and not callable(getattr(obj, name, None)):
            raise AttributeError(f"{what} has no method {name!r} (named as its {role})")


def nnx_classifier(
    factory: str,
    checkpoint: str | Path | None = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    logits: str = "__call__",
    features: str | None = None,
    head: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    domain: tuple[float, float] | None = None,
) -> FunctionClassifier:
    """A Flax NNX module built by ``factory(**kwargs)`` (an import path; the factory makes its
    own ``nnx.Rngs``) with its state restored from ``checkpoint`` (an Orbax PyTree checkpoint of
    ``nnx.state(module)``), as a classifier in eval mode.

    Args:
      factory: ``"package.module:function"`` returning the module.
      checkpoint: its saved state (``None``: the factory's own initialisation).
      kwargs: the factory's keyword arguments.
      logits, features, head: the module's methods giving ``[B, C]`` logits (default: calling
        it), ``[B, D]`` penultimate features and the logits of features.
      input_shape, domain: what the classifier declares about its inputs.

    Raises:
      ImportError, AttributeError, ValueError: see :func:`import_object` and
        :func:`load_params`; TypeError: the factory returned no NNX module.
    """
    build = import_object(factory)
    kwargs = dict(kwargs or {})
    module = build(**kwargs)
    if not isinstance(module, nnx.Module):
        raise TypeError(f"{factory} returned a {type(module).__name__}, not a Flax NNX module")
    _check_methods(module, {"logits": logits, "features": features, "head": head}, factory)
    if checkpoint is not None:
        graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build(**kwargs)))
        state = load_params(checkpoint, abstract)
        module = nnx.merge(graphdef, state)
    pure = as_pytree(module)  # eval mode, state as leaves
    return FunctionClassifier(
        _method(logits),
        pure,
        features_fn=_method(features),
        head_fn=_method(head),
        input_shape=input_shape or pure.input_shape,
        domain=domain or pure.domain,
    )


def linen_classifier(
    module: str,
    variables: str | Path,
    *,
    kwargs: Mapping[str, Any] | None = None,
    features: str | None = None,
    head: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    domain: tuple[float, float] | None = None,
) -> FunctionClassifier:
    """A Flax Linen module ``module(**kwargs)`` (an import path of the class or a factory)
    applied with the variables saved at ``variables``: ``logits(x) = module.apply(v, x)``, and
    ``features`` / ``head`` through ``apply(v, x, method=name)``."""
    linen = import_object(module)(**dict(kwargs or {}))
    if not hasattr(linen, "apply"):
        raise TypeError(f"{module} built a {type(linen).__name__}, not a Flax Linen module")
    _check_methods(linen, {"features": features, "head": head}, module)
    params = jax.tree.map(np.asarray, load_params(variables))

    def by(name: str | None) -> Callable[[Any, Any], Any] | None:
        if name is None:
            return None
        return lambda v, x: linen.apply(v, x, method=getattr(type(linen), name))

    return FunctionClassifier(
        lambda v, x: linen.apply(v, x),
        params,
        features_fn=by(features),
        head_fn=by(head),
        input_shape=input_shape,
        domain=domain,
    )


def function_classifier(
    logits: str,
    params: str | Path | None = None,
    *,
    features: str | None = None,
    head: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    domain: tuple[float, float] | None = None,
) -> FunctionClassifier:
    """A plain JAX function ``logits(params, x) -> [B, C]`` (an import path) with the params
    saved at ``params`` (``None``: no params); ``features(params, x)`` and ``head(params, f)``
    likewise where given."""
    fns = {name: import_object(path) for name, path in (("logits", logits),) if path}
    for role, path in (("features", features), ("head", head)):
        fns[role] = import_object(path) if path else None
    for role, fn in fns.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"the {role} function {fn!r} is not callable")
    loaded = {} if params is None else jax.tree.map(np.asarray, load_params(params))
    return FunctionClassifier(
        fns["logits"],
        loaded,
        features_fn=fns["features"],
        head_fn=fns["head"],
        input_shape=input_shape,
        domain=domain,
    )


def equinox_classifier(
    factory: str,
    checkpoint: str | Path | None = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    per_example: bool = True,
    logits: str = "__call__",
    features: str | None = None,
    head: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    domain: tuple[float, float] | None = None,
) -> FunctionClassifier:
    """An Equinox module built by ``factory(**kwargs)`` with its leaves read from
    ``checkpoint`` (``eqx.tree_serialise_leaves``' file), as a classifier: its arrays are the
    params, the rest is static.

    Args:
      factory: ``"package.module:function"`` returning the module (it makes its own keys).
      checkpoint: the serialised leaves (``None``: the factory's own initialisation).
      kwargs: the factory's keyword arguments.
      per_example: the module (and its ``features`` / ``head``) takes one example, as Equinox
        modules usually do: it is vmapped over the batch. False for batched modules.
      logits, features, head: the module's methods (``"__call__"``: calling it).
      input_shape, domain: what the classifier declares about its inputs.

    Raises:
      ImportError: Equinox is not installed (``pip install -e '.[equinox]'``).
    """
    try:
        import equinox as eqx  # an optional extra: only Equinox models need it
    except ImportError as exc:
        raise ImportError("an Equinox model needs equinox: pip install -e '.[equinox]'") from exc
    module = import_object(factory)(**dict(kwargs or {}))
    _check_methods(module, {"logits": logits, "features": features, "head": head}, factory)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            module = eqx.tree_deserialise_leaves(path, module)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ValueError(f"the checkpoint at {path} does not fit the model: {exc}") from exc
    params, static = eqx.partition(module, eqx.is_array)

    def by(name: str | None) -> Callable[[Any, Any], Any] | None:
        if name is None:
            return None

        def apply(p: Any, x: Any) -> Any:
            model = eqx.combine(p, static)
            fn = model if name == "__call__" else getattr(model, name)
            return jax.vmap(fn)(x) if per_example else fn(x)

        return apply

    return FunctionClassifier(
        by(logits),
        params,
        features_fn=by(features),
        head_fn=by(head),
        input_shape=input_shape,
        domain=domain,
    )
