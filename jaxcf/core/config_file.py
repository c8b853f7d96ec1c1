"""Python config files, in the style of the Flax examples: a file defining ``get_config()``.

Entry points take ``--config FILE`` and, as ``ml_collections`` config flags do, any number of
field overrides ``--config.FIELD=VALUE`` (or ``--config.FIELD VALUE``), dotted for nested
fields: ``--config.epochs=2 --config.model.channels=(16,32)``. Configs are frozen dataclasses,
so the overrides rebuild every dataclass on the way down with ``dataclasses.replace``, and their
own validation runs again on the new values. Overrides of one dataclass's fields are applied
together, so fields checked against each other can change in any order
(``--config.augment.subset=16 --config.augment.augmented=4``). Tuple items are addressed by
index (``--config.methods.0.config.mu=0.5``).
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

__all__ = [
    "add_config_argument",
    "load_config",
    "override",
    "override_all",
    "parse_args",
    "split_overrides",
]

_FLAG = "--config."


def load_config(path: str | Path, overrides: Sequence[tuple[str, str]] = ()) -> Any:
    """Executes the config file at ``path`` and returns its ``get_config()``, with the
    ``(field path, value text)`` pairs of ``overrides`` applied (see ``override_all``).

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
    return override_all(module.get_config(), overrides)


def override(config: Any, field: str, text: str) -> Any:
    """``config`` with the field at the dotted path ``field`` set to the value ``text`` spells.

    ``text`` is read as a Python literal (``3``, ``1e-3``, ``(32, 64)``, ``None``, ``True``;
    ``true``/``false`` too), or as the text itself where the field takes strings, so ``adam``
    needs no quotes. The value must fit the field's annotation (an int may stand for a float, a
    list for a tuple); a tuple item must fit the item it replaces.
    """
    return override_all(config, [(field, text)])


def override_all(config: Any, overrides: Sequence[tuple[str, str]]) -> Any:
    """``config`` with every ``(field path, value text)`` of ``overrides`` set (as
    :func:`override` reads them). Each dataclass is rebuilt once with all its new fields, so
    its validation sees them together; a field given twice takes the later value.

    Raises:
      ValueError: an empty or unknown field, a value of the wrong type, a field set both
        whole and inside, or the config's own validation rejecting the new values.
    """
    tree: dict[str, Any] = {}
    for field, text in overrides:
        parts = field.split(".")
        if not field or not all(parts):
            raise ValueError(f"{_FLAG}{field}: empty field name")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{_FLAG}{field}: an earlier override sets a field above it")
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"{_FLAG}{field}: an earlier override sets a field inside it")
        node[parts[-1]] = (field, text)
    return _apply(config, tree, None) if tree else config


def _first(tree: dict[str, Any]) -> str:
    """The full path of the first override under ``tree`` (for messages)."""
    leaf = next(iter(tree.values()))
    return leaf[0] if isinstance(leaf, tuple) else _first(leaf)


def _apply(node: Any, tree: Any, hint: Any) -> Any:
    """``node`` with the overrides of ``tree`` (a leaf ``(field, text)``, or a dict of them by
    field name or tuple index) set."""
    if isinstance(tree, tuple):
        return _parse(tree[1], node, hint, tree[0])
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        settable = [f.name for f in dataclasses.fields(node) if f.init]
        try:
            hints = typing.get_type_hints(type(node))
        except Exception:  # an annotation that does not resolve at run time: go by the value
            hints = {}
        changes = {}
        for head, sub in tree.items():
            if head not in settable:
                raise ValueError(
                    f"{_FLAG}{_first({head: sub})}: {type(node).__name__} has no field "
                    f"{head!r}; its fields: {', '.join(settable)}"
                )
            changes[head] = _apply(getattr(node, head), sub, hints.get(head))
        return dataclasses.replace(node, **changes)
    if isinstance(node, tuple):
        items = list(node)
        for head, sub in tree.items():
            if not head.isdigit() or int(head) >= len(node):
                raise ValueError(
                    f"{_FLAG}{_first({head: sub})}: {head!r} is not an index of this "
                    f"{len(node)}-item tuple"
                )
            items[int(head)] = _apply(node[int(head)], sub, _item_hint(hint, int(head)))
        return tuple(items)
    raise ValueError(
        f"{_FLAG}{_first(tree)}: cannot go into {next(iter(tree))!r} of a "
        f"{type(node).__name__} value"
    )


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


def add_config_argument(parser: argparse.ArgumentParser, *, positional: bool = False) -> None:
    """Adds the config file argument, ``--config FILE`` (required) or, with ``positional``, a
    leading ``CONFIG``, and documents the ``--config.FIELD=VALUE`` overrides that
    ``parse_args`` accepts."""
    text = (
        "config file with get_config(); override its fields with --config.FIELD=VALUE "
        "(dotted for nested fields, e.g. --config.model.hidden=64)"
    )
    if positional:
        parser.add_argument("config", metavar="CONFIG", help=text)
    else:
        parser.add_argument("--config", required=True, help=text)


def split_overrides(tokens: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The field overrides among command-line ``tokens``, ``--config.FIELD=VALUE`` or
    ``--config.FIELD VALUE``, as ``(field path, value text)`` pairs in their order (ready for
    :func:`override_all`), and the tokens that are neither, in theirs (a ``--config.FIELD``
    with no value after it among them)."""
    overrides, unknown = [], []
    rest = iter(tokens)
    for token in rest:
        if not token.startswith(_FLAG):
            unknown.append(token)
            continue
        field, eq, text = token[len(_FLAG) :].partition("=")
        if not eq:  # --config.FIELD VALUE
            text = next(rest, None)
            if text is None:
                unknown.append(token)
                continue
        overrides.append((field, text))
    return overrides, unknown


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[argparse.Namespace, Any]:
    """Parses ``argv`` with ``parser`` (which has ``add_config_argument``) and loads the
    config with its ``--config.FIELD=VALUE`` overrides: ``(args, config)``. Any other
    unknown argument, and a bad override, exit with a usage error."""
    args, rest = parser.parse_known_args(argv)
    overrides, unknown = split_overrides(rest)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        config = load_config(args.config)
    except (FileNotFoundError, AttributeError) as e:
        parser.error(str(e))
    try:  # a config's own validation may raise either
        config = override_all(config, overrides)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    return args, config
