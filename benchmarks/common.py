"""Helpers shared by the benchmarks: the command line every benchmark takes, which device a
result was measured on, and timing with compilation apart.

A benchmark module defines a frozen dataclass ``Config`` (its settings, documented in the class
docstring's ``Attributes:``) and ``run(config) -> dict``; its ``main(argv)`` is
``common.main(Config, run, argv, __doc__)``, which reads ``--config.FIELD=VALUE`` overrides as
the library's commands do (:mod:`jaxcf.core.config_file`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import platform
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

from jaxcf.core import to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.core.config_file import override_all, split_overrides

# ------------------------------------------------------------------------------ command line


def main(
    config_type: type,
    run: Callable[[object], object],
    argv: Sequence[str] | None = None,
    doc: str | None = None,
) -> int:
    """Runs ``run(config)`` on ``config_type()`` with the ``--config.FIELD=VALUE`` (or
    ``--config.FIELD VALUE``) overrides of ``argv`` (default ``sys.argv[1:]``); returns the
    exit status, 0.

    ``-h``/``--help`` prints the first paragraph of ``doc`` (default: the module docstring of
    ``config_type``) and every field with its default, and returns 0 without running. Any
    other argument, or an override that names no field, gives a value of the wrong type or
    fails the config's validation, exits with status 2 and a usage error, as argparse does.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    module = sys.modules[config_type.__module__]
    doc = module.__doc__ if doc is None else doc
    parser = argparse.ArgumentParser(
        prog=_prog(module), usage="%(prog)s [--config.FIELD=VALUE ...]", add_help=False
    )
    if "-h" in argv or "--help" in argv:
        print(parser.format_usage() + "\n" + help_text(config_type, doc))
        return 0
    overrides, unknown = split_overrides(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:  # a config's own validation may raise either
        config = override_all(config_type(), overrides)
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    run(config)
    return 0


def _prog(module) -> str:
    """How the benchmark was started: ``python -m benchmarks.NAME`` or ``jaxcf bench NAME``."""
    spec = getattr(module, "__spec__", None)
    name = spec.name if spec is not None else module.__name__
    if module.__name__ == "__main__":
        return f"python -m {name}"
    return f"jaxcf bench {name.rpartition('.')[2]}"


def help_text(config_type: type, doc: str | None = None) -> str:
    """The help text: ``doc``'s first paragraph, then each field of ``config_type`` as an
    override with its default value, its type and its ``Attributes:`` entry."""
    paragraph = inspect.cleandoc(doc or "").split("\n\n")[0]
    lines = [
        paragraph,
        "",
        "settings (a value is read as a Python literal, or as the bare text for a string):",
    ]
    docs = field_docs(config_type)
    for f in dataclasses.fields(config_type):
        lines.append(f"  --config.{f.name}={_spelled(_default(f))}  ({_type_name(f.type)})")
        if f.name in docs:
            lines += textwrap.wrap(
                docs[f.name], 92, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
    return "\n".join(lines)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _type_name(annotation) -> str:
    """An annotation as written (a string under ``from __future__ import annotations``)."""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "?")


def _spelled(value) -> str:
    """``value`` as an override would spell it: a string as its text, anything else as its
    Python literal."""
    return value if isinstance(value, str) else repr(value)


def field_docs(config_type: type) -> dict[str, str]:
    """The entries of the ``Attributes:`` section of ``config_type``'s docstring, by field name
    (``name: text``, the text possibly continued on more deeply indented lines)."""
    section = inspect.cleandoc(config_type.__doc__ or "").partition("Attributes:\n")[2]
    docs: dict[str, str] = {}
    name, indent = None, None
    for line in section.splitlines():
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        head, colon, text = line.strip().partition(": ")
        if depth == indent and colon and head.isidentifier():
            name, docs[head] = head, text
        elif depth > indent and line.strip() and name is not None:
            docs[name] += " " + line.strip()
        else:
            break
    return docs


def items(text: str) -> list[str]:
    """The comma-separated items of a setting such as ``"deduce,jsma"``."""
    return text.split(",")


def sizes(text: str) -> list[int]:
    """The comma-separated integers of a setting such as ``"64,256,1024"``."""
    return [int(v) for v in items(text)]


def check_items(config, field: str, choices: Sequence[str]) -> None:
    """The field, a comma-separated string, names only ``choices`` (for ``__post_init__``)."""
    value = getattr(config, field)
    if not isinstance(value, str) or any(v not in choices for v in items(value)):
        raise ValueError(
            f"{type(config).__name__}.{field} must list some of {', '.join(choices)} "
            f"(comma-separated), got {value!r}"
        )


def check_sizes(config, field: str) -> None:
    """The field, a comma-separated string, holds integers >= 1 (for ``__post_init__``)."""
    value = getattr(config, field)
    try:
        ok = isinstance(value, str) and min(sizes(value)) >= 1
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{type(config).__name__}.{field} must list integers >= 1 (comma-separated), "
            f"got {value!r}"
        )


# ------------------------------------------------------------------------------ measuring


def device_name() -> str:
    """``"cpu"``, or the platform and device kind (e.g. ``"gpu NVIDIA H200"``)."""
    device = jax.devices()[0]
    kind = str(getattr(device, "device_kind", device.platform))
    return device.platform if kind == device.platform else f"{device.platform} {kind}"


def cpus() -> int:
    """Host CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def environment() -> dict:
    """What every benchmark record names: device, device count, host CPU and JAX version."""
    return {
        "device": device_name(),
        "device_count": jax.device_count(),
        "host": {"processor": platform.processor() or platform.machine(), "cpus": cpus()},
        "jax": jax.__version__,
    }


def compile_timed(fn, *args) -> tuple[object, float]:
    """``jax.jit(fn)`` lowered and compiled for ``args``, and the seconds that took."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def timed(fn, *args) -> tuple[object, float]:
    """``fn(*args)`` and its wall seconds, ended by ``jax.block_until_ready``."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def one_query_per_call(fn, explainer, x, target, keys) -> tuple[float, float]:
    """``(first call seconds, steady seconds)`` of calling the jitted ``fn(explainer, x, t, k)``
    on one query at a time in a Python loop, as per-instance code runs (the first call, which
    compiles, is timed apart and not repeated)."""
    _, first = timed(fn, explainer, x[:1], target[:1], keys[:1])
    start = time.perf_counter()
    for i in range(len(x)):
        jax.block_until_ready(fn(explainer, x[i : i + 1], target[i : i + 1], keys[i : i + 1]))
    return first, time.perf_counter() - start


def write_results(out: Path, name: str, results: dict, markdown: str) -> Path:
    """Writes ``<out>/<name>_<device>.json`` (``results``) and ``.md`` (``markdown``), the
    device as :func:`device_name` names it; returns the path without its suffix."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{name}_{device_name().replace(' ', '_')}"
    write_json_atomic(stem.with_suffix(".json"), to_jsonable(results))
    write_text_atomic(stem.with_suffix(".md"), markdown)
    return stem
