"""Helpers shared by the benchmarks: the command line every benchmark takes, which device a
result was measured on, timing with compilation apart, FLOPs counted by XLA (loops included)
and the device's matrix-product ceiling.

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
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
from flax import struct

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
    """What every benchmark record names: device (as :func:`device_name` spells it, and its
    platform and kind apart), device count, host CPU and JAX version."""
    device = jax.devices()[0]
    return {
        "device": device_name(),
        "platform": device.platform,
        "device_kind": str(getattr(device, "device_kind", device.platform)),
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


def measure_call(
    fn,
    *args,
    repeats: int = 3,
    min_seconds: float = 0.0,
    max_seconds: float = float("inf"),
    max_repeats: int = 20,
    count_flops: bool = False,
    while_trips: Sequence[float] = (),
    compiler_options: dict | None = None,
) -> tuple[object, dict]:
    """Compiles ``jax.jit(fn)`` for ``args`` and times it: ``(output, record)``.

    The record holds ``compile_seconds`` (tracing, lowering and compiling), the
    ``first_call_seconds`` of the compiled program (a warm-up otherwise) and the steady state:
    ``seconds``, the median of ``repeats_seconds``, at least ``repeats`` calls and more (up to
    ``max_repeats``) until they add up to ``min_seconds``, but no more once they add up to
    ``max_seconds`` (at least one is timed). Every call is ended by
    ``jax.block_until_ready``. With ``count_flops``, also :func:`program_flops` of the program
    (``while_trips``: see there) and ``flops_compiled``, XLA's count on the compiled program
    (each loop body once; on a GPU without the convolutions it hands to cuDNN).
    ``compiler_options`` go to XLA's compiler (``Lowered.compile``).
    """
    start = time.perf_counter()
    traced = jax.jit(fn).trace(*args)
    lowered = traced.lower()
    compiled = lowered.compile(compiler_options) if compiler_options else lowered.compile()
    compile_s = time.perf_counter() - start
    out, first = timed(compiled, *args)
    times: list[float] = []
    while not times or (
        sum(times) < max_seconds
        and (len(times) < repeats or (sum(times) < min_seconds and len(times) < max_repeats))
    ):
        times.append(timed(compiled, *args)[1])
    record = {
        "compile_seconds": compile_s,
        "first_call_seconds": first,
        "seconds": float(np.median(times)),
        "repeats_seconds": times,
    }
    if count_flops:
        record.update(program_flops(traced.jaxpr, lowered, while_trips))
        record["flops_compiled"] = _flops_of(compiled.cost_analysis())
    return out, record


def seconds_per_call(fn, *args, min_seconds: float = 0.5) -> float:
    """Median seconds of ``fn(*args)`` (already compiled) over enough calls to fill
    ``min_seconds`` (at least 5), each ended by ``block_until_ready``, after one untimed call."""
    jax.block_until_ready(fn(*args))
    times: list[float] = []
    while sum(times) < min_seconds or len(times) < 5:
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def ceiling(n: int, min_seconds: float = 0.5) -> dict:
    """The device's dense rate: achieved TFLOP/s of an ``n x n`` matrix product in float32
    (default precision, as the models' convolutions run: TF32 on recent NVIDIA GPUs) and in
    bfloat16, compilation apart."""
    out = {"n": n}
    for dtype in ("float32", "bfloat16"):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        compiled, _ = compile_timed(jnp.matmul, a, a)
        seconds = seconds_per_call(compiled, a, a, min_seconds=min_seconds)
        out[f"{dtype}_tflops"] = 2 * n**3 / seconds / 1e12
    return out


# ------------------------------------------------------------------------------ FLOPs


def _flops_of(cost) -> float:
    """The ``flops`` entry of a cost analysis (older JAX: a list of one dict per program)."""
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def lowered_flops(fn, *args) -> tuple[float, object, float]:
    """``(FLOPs, compiled, compile seconds)`` of ``jax.jit(fn)`` on ``args``.

    The FLOPs are counted on the lowered program, before the backend rewrites it: a GPU
    backend turns convolutions into cuDNN calls that its compiled-program count leaves out
    (on an H200 it reported under 1% of the network's FLOPs). Each loop body counts once
    (see :func:`program_flops` for programs with loops)."""
    lowered = jax.jit(fn).lower(*args)
    flops = _flops_of(lowered.cost_analysis())
    start = time.perf_counter()
    compiled = lowered.compile()
    return flops, compiled, time.perf_counter() - start


def _jaxpr_flops(closed: jex.ClosedJaxpr) -> float:
    """XLA's count of one (sub)program, lowered on its own."""
    avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
    return _flops_of(jax.jit(jex.jaxpr_as_fun(closed)).lower(*avals).cost_analysis())


def _loop_extra(jaxpr: jex.Jaxpr, trips, loops: list[dict]) -> float:
    """FLOPs that XLA's count of ``jaxpr`` misses: every loop's body beyond its first trip.

    ``trips`` yields the trip counts of the ``while`` loops in the order they are met (depth
    first); a loop's record goes to ``loops``."""
    extra = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            body, n, kind = eqn.params["jaxpr"], eqn.params["length"], "scan"
        elif eqn.primitive.name == "while":
            body, n, kind = eqn.params["body_jaxpr"], next(trips, None), "while"
        else:  # a call, a custom derivative, a cond: look for loops inside
            for sub in jex.jaxprs_in_params(eqn.params):
                extra += _loop_extra(sub, trips, loops)
            continue
        loop = {"kind": kind, "trips": 1.0 if n is None else float(n), "known": n is not None}
        loops.append(loop)
        body_flops = _jaxpr_flops(body)
        loop["body_flops"] = body_flops
        inner = _loop_extra(body.jaxpr, trips, loops)
        extra += (loop["trips"] - 1) * body_flops + loop["trips"] * inner
    return extra


def program_flops(closed: jex.ClosedJaxpr, lowered, while_trips: Sequence[float] = ()) -> dict:
    """The FLOPs of one run of a program, loops included, counted by XLA.

    XLA's cost analysis counts each loop body once. Here every ``scan`` body counts as many
    times as the scan runs, and every ``while`` body as many times as ``while_trips`` says (in
    the order the loops are met, outer before inner; a loop that runs a varying number of
    times, such as an inner loop whose length is the outer loop's index, is given its mean):
    the program's count plus, per loop, ``(trips - 1)`` times its body's own count (each body
    lowered alone, on the lowered program as :func:`lowered_flops` does). A ``while`` loop
    without a trip count counts once, and ``flops_exact`` is then false.

    Args:
      closed: the traced program (``jax.jit(fn).trace(...).jaxpr``).
      lowered: its lowered form.
      while_trips: the trip counts of its ``while`` loops.

    Returns:
      ``{"flops", "flops_xla_program" (bodies once), "flops_exact", "loops"}``.
    """
    trips = iter(tuple(while_trips))
    loops: list[dict] = []
    program = _flops_of(lowered.cost_analysis())
    extra = _loop_extra(closed.jaxpr, trips, loops)
    unused = list(trips)
    return {
        "flops": program + extra,
        "flops_xla_program": program,
        "flops_exact": all(lp["known"] for lp in loops) and not unused,
        "loops": loops,
    }


# ------------------------------------------------------------------------------ fixed work


class FixedIterations(struct.PyTreeNode):
    """An :class:`~jaxcf.methods.IterativeSearch` whose queries never count as reached, so
    that :func:`~jaxcf.methods.solve` runs every query for exactly ``max_iter`` updates
    (``max_iter + 1`` steps: the last one is the final check): the same work whether or not a
    query would have succeeded. A search's own ``given_up`` is dropped for the same reason."""

    search: object

    @property
    def max_iter(self) -> int:
        return self.search.max_iter

    def init(self, x, target, key):
        return self.search.init(x, target, key)

    def step(self, state, target):
        score, reached, new = self.search.step(state, target)
        return score, jnp.zeros_like(reached), new

    def current(self, state):
        return self.search.current(state)

    def extras(self, state):
        return self.search.extras(state)


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
