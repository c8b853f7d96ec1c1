"""Python config files, in the style of the Flax examples: a file defining ``get_config()``.

Entry points take ``--config FILE`` and, as ``ml_collections`` config flags do, any number of
field overrides ``--config.FIELD=VALUE`` (or ``--config.FIELD VALUE``), dotted for nested
fields: ``--config.epochs=2 --config.model.channels=(16,32)``. Configs are frozen dataclasses,
so an override rebuilds every dataclass on the way down with ``dataclasses.replace``, and their
own validation runs again on the new values. Tuple items are addressed by index
(``--config.methods.0.config.mu=0.5``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_config_argument", "load_config", "override", "parse_args"]

_FLAG = "--config."


def load_config(path: str | Path, overrides: Sequence[tuple[str, str]] = ()) -> Any:
    """Executes the config file at ``path`` and returns its ``get_config()``, with each
    ``(field path, value text)`` of ``overrides`` applied in order (see ``override``).

    Raises:
      FileNotFoundError: no such file.
      AttributeError: the file defines no ``get_config``.
      ValueError: an override names no field or gives a value of the wrong type, or the
        config's own validation rejects the new value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    spec = importlib.util.spec_from_file_location(f"jaxcf_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path} defines no get_config()")
    config = module.get_config()
    for field, text in overrides:
        config = override(config, field, text)
    return config


def override(config: Any, field: str, text: str) -> Any:
    """``config`` with the field at the dotted path ``field`` set to the value ``text`` spells.

    ``text`` is read as a Python literal (``3``, ``1e-3``, ``(32, 64)``, ``None``, ``True``;
    ``true``/``false`` too), or as the text itself where the field takes strings, so ``adam``
    needs no quotes. The value must fit the field's annotation (an int may stand for a float, a
    list for a tuple); a tuple item must fit the item it replaces.
    """
    if not field or any(not part for part in field.split(".")):
        raise ValueError(f"{_FLAG}{field}: empty field name")
    return _set(config, field.split("."), text, field)


def _set(node: Any, parts: list[str], text: str, field: str, hint: Any = None) -> Any:
    if not parts:
        return _parse(text, node, hint, field)
    head, rest = parts[0], parts[1:]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        settable = [f.name for f in dataclasses.fields(node) if f.init]
        if head not in settable:
            raise ValueError(
                f"{_FLAG}{field}: {type(node).__name__} has no field {head!r}; its fields: "
                f"{', '.join(settable)}"
            )
        try:
            hint = typing.get_type_hints(type(node)).get(head)
        except Exception:  # an annotation that does not resolve at run time: go by the value
            hint = None
        new = _set(getattr(node, head), rest, text, field, hint)
        return dataclasses.replace(node, **{head: new})
    if isinstance(node, tuple):
        if not head.isdigit() or int(head) >= len(node):
            raise ValueError(
                f"{_FLAG}{field}: {head!r} is not an index of this {len(node)}-item tuple"
            )
        i = int(head)
        return (*node[:i], _set(node[i], rest, text, field, _item_hint(hint, i)), *node[i + 1 :])
    raise ValueError(f"{_FLAG}{field}: cannot go into {head!r} of a {type(node).__name__} value")


def _item_hint(hint: Any, i: int) -> Any:
    """The annotation of item ``i`` of a tuple annotated ``hint`` (None: unknown)."""
    args = typing.get_args(hint) if typing.get_origin(hint) is tuple else ()
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return args[i] if i < len(args) else None


class _Mismatch(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the annotation ``hint`` wants it (ints as floats, lists as tuples), or
    ``_Mismatch``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if isinstance(value, bool):  # True is an int to Python, not to a config
        raise _Mismatch
    if hint is float and isinstance(value, int | float):
        return float(value)
    if origin is tuple or hint is tuple:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args and len(args) != len(value):
            raise _Mismatch
        return (
            tuple(_coerce(v, a) for v, a in zip(value, args, strict=True)) if args else tuple(value)
        )
    kind = origin if isinstance(origin, type) else hint  # list[int] -> list
    if isinstance(kind, type) and isinstance(value, kind):
        return value
    raise _Mismatch


def _literal(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word


def _parse(text: str, old: Any, hint: Any, field: str) -> Any:
    if dataclasses.is_dataclass(old):
        raise ValueError(
            f"{_FLAG}{field} is a {type(old).__name__}: set its fields instead "
            f"({_FLAG}{field}.<name>=...)"
        )
    if hint is None:  # no annotation (a tuple item): go by the old value's type
        hint = Any if old is None else (tuple if isinstance(old, tuple) else type(old))
    # A literal first; then, for fields that take strings, the text as it is ("123" as a name).
    for value in (_literal(text), text):
        try:
            return _coerce(value, hint)
        except _Mismatch:
            pass
    raise ValueError(f"{_FLAG}{field}: expected {_describe(hint)} (now {old!r}), got {text!r}")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``--config FILE`` (required) and documents the ``--config.FIELD=VALUE`` overrides
    that ``parse_args`` accepts."""
    parser.add_argument(
        "--config",
        required=True,
        help="config file with get_config(); override its fields with --config.FIELD=VALUE "
        "(dotted for nested fields, e.g. --config.model.hidden=64)",
    )


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[argparse.Namespace, Any]:
    """Parses ``argv`` with ``parser`` (which has ``add_config_argument``) and loads the
    config with its ``--config.FIELD=VALUE`` overrides: ``(args, config)``. Any other
    unknown argument, and a bad override, exit with a usage error."""
    args, rest = parser.parse_known_args(argv)
    overrides, unknown = [], []
    tokens = iter(rest)
    for token in tokens:
        if not token.startswith(_FLAG):
            unknown.append(token)
            continue
        field, eq, text = token[len(_FLAG) :].partition("=")
        if not eq:  # --config.FIELD VALUE
            text = next(tokens, None)
            if text is None:
                unknown.append(token)
                continue
        overrides.append((field, text))
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        config = load_config(args.config)
    except (FileNotFoundError, AttributeError) as e:
        parser.error(str(e))
    for field, text in overrides:
        try:  # a config's own validation may raise either
            config = override(config, field, text)
        except (ValueError, TypeError) as e:
            parser.error(str(e))
    return args, config
