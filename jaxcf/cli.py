"""The ``jaxcf`` command.

    jaxcf train CONFIG --workdir W        train the model a config file describes
    jaxcf explain CONFIG --workdir W      run an explanation experiment (models, methods, report)
    jaxcf report W                        write an experiment's report again from its finished runs
    jaxcf methods [NAME ...]              the registered methods, their configs and what they need
    jaxcf bench [NAME]                    run (or list) a benchmark of a checkout's benchmarks/
                                          (``jaxcf bench suite``: every family in one call)
    jaxcf export CHECKPOINT --out DIR     a compact copy of a trained model, small enough to ship

A config file is a Python file defining ``get_config()`` (the Flax examples' style). Any field
of the config can be overridden on the command line, dotted for nested fields and indexed for
tuple items: ``--config.epochs=2 --config.methods.0.config.max_iter=100``; the value is read as
a Python literal and must fit the field's type, and the config validates itself again.

Config files, experiments and benchmarks of a checkout (``explain/``, ``benchmarks/``) import
from the working directory, as ``python -m`` does: run the command from the repository root.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

import jax

from jaxcf._version import __version__
from jaxcf.core import write_json_atomic
from jaxcf.core.config_file import add_config_argument, load_config, parse_args
from jaxcf.experiment import (
    HTML_DIR,
    REPORT_DIR,
    RUNS_DIR,
    Experiment,
    train,
    trainable,
    write_html_report,
)
from jaxcf.methods import describe, method_names
from jaxcf.models import ATTGAN_KIND, checkpoint
from jaxcf.runner import distributed
from jaxcf.training import export_attgan_compact, export_compact

EXPERIMENT_FILE = "experiment.json"
"""What ``jaxcf explain`` records in a workdir so that ``jaxcf report`` can rebuild the config."""

_COMMANDS = {
    "train": "train the model a config file describes",
    "explain": "run an explanation experiment described by a config file",
    "report": "write an experiment's report again from the finished runs in its workdir",
    "methods": "list the registered methods, their configs and what they need",
    "bench": "run a benchmark of the checkout's benchmarks/ folder (or list them)",
    "export": "write a compact copy of a trained model (bfloat16-rounded weights)",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"jaxcf {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in _COMMANDS:
        print(f"jaxcf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    _import_from_cwd()
    return globals()[f"_{command}"](rest) or 0


def _usage() -> str:
    lines = ["usage: jaxcf COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, text in _COMMANDS.items()]
    lines += ["", "jaxcf COMMAND --help describes a command's arguments."]
    return "\n".join(lines)


def _import_from_cwd() -> None:
    """Lets config files import the checkout's ``explain`` and ``benchmarks`` packages."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _parser(command: str, usage_note: str = "") -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"jaxcf {command}",
        description=_COMMANDS[command] + (f". {usage_note}" if usage_note else ""),
    )


# ------------------------------------------------------------------------------ train


def _train(argv: list[str]) -> int:
    parser = _parser(
        "train",
        "The checkpoint goes to WORKDIR/checkpoint; an interrupted run resumes where it stopped.",
    )
    add_config_argument(parser, positional=True)
    parser.add_argument("--workdir", required=True, type=Path, help="where the model goes")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished checkpoint")
    args, config = parse_args(parser, argv)
    if not trainable(config):
        parser.error(f"{args.config} describes a {type(config).__name__}, which is not trainable")
    print(train(config, args.workdir, overwrite=args.overwrite), flush=True)
    return 0


# ------------------------------------------------------------------------------ explain


def _explain(argv: list[str]) -> int:
    parser = _parser(
        "explain",
        "Models the experiment needs are trained when missing; finished runs are reused; the "
        "report goes to WORKDIR/report/.",
    )
    add_config_argument(parser, positional=True)
    parser.add_argument("--workdir", required=True, type=Path, help="models, runs and report")
    group = parser.add_argument_group(
        "several processes (hosts)",
        "start the same command in every process; the workdir must be on a shared file system",
    )
    group.add_argument(
        "--distributed", action="store_true", help="join a multi-process job (Slurm, Cloud TPU)"
    )
    group.add_argument("--coordinator", help="host:port of process 0 (implies --distributed)")
    group.add_argument("--num_processes", type=int, help="processes in the job")
    group.add_argument("--process_id", type=int, help="this process's index")
    args, config = parse_args(parser, argv)
    if not isinstance(config, Experiment):
        parser.error(
            f"{args.config} describes a {type(config).__name__}, not an experiment (a config "
            "with a run(workdir) method)"
        )
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    _record(args.workdir, args.config, argv)
    config.run(args.workdir)
    _html(args.workdir, config)
    _print_report(args.workdir)
    return 0


def _html(workdir: Path, config: object, *, again: bool = False) -> None:
    """The browsable report of an experiment that does not write one itself: every finished
    run of its run store (``again``: rewritten even when one is there)."""
    out = workdir / REPORT_DIR / HTML_DIR / "index.html"
    if jax.process_index() != 0 or getattr(config, "writes_html", False):
        return
    if out.is_file() and not again:
        return
    store = getattr(config, "runs", None) or workdir / RUNS_DIR
    try:
        path = write_html_report(workdir, store=store, title=getattr(config, "title", "Runs"))
    except ValueError as exc:  # no runs in the store: an experiment that keeps its own
        print(f"no HTML report: {exc}", flush=True)
        return
    print(f"wrote {path}", flush=True)


def _record(workdir: Path, config_path: str, argv: list[str]) -> None:
    """Writes what rebuilds this config (the file and the overrides) into the workdir."""
    if jax.process_index() != 0:
        return
    overrides = [a for a in argv if a.startswith("--config.")]
    # ``--config.FIELD VALUE`` spelled as two tokens: keep the value with its flag
    for i, a in enumerate(argv[:-1]):
        if a.startswith("--config.") and "=" not in a:
            overrides[overrides.index(a)] = f"{a}={argv[i + 1]}"
    write_json_atomic(
        workdir / EXPERIMENT_FILE,
        {"config": str(Path(config_path).resolve()), "overrides": overrides},
    )


def _print_report(workdir: Path) -> None:
    path = workdir / REPORT_DIR / "report.md"
    if jax.process_index() == 0 and path.is_file():
        print(f"\nwrote {path}", flush=True)


# ------------------------------------------------------------------------------ report


def _report(argv: list[str]) -> int:
    parser = _parser(
        "report",
        f"Reads WORKDIR/{EXPERIMENT_FILE} (written by jaxcf explain), rebuilds the config and "
        "evaluates the finished runs again; nothing is recomputed that is already there.",
    )
    parser.add_argument("workdir", type=Path, help="a workdir of jaxcf explain")
    parser.add_argument(
        "--html", action="store_true", help="write the browsable HTML report again too"
    )
    args = parser.parse_args(argv)
    record = args.workdir / EXPERIMENT_FILE
    if not record.is_file():
        parser.error(f"{args.workdir} holds no {EXPERIMENT_FILE}: run jaxcf explain into it first")
    saved = json.loads(record.read_text())
    overrides = [tuple(o[len("--config.") :].split("=", 1)) for o in saved["overrides"]]
    try:
        config = load_config(saved["config"], overrides)
    except (FileNotFoundError, AttributeError, ValueError, TypeError) as e:
        parser.error(f"cannot rebuild the experiment's config: {e}")
    report = getattr(config, "report", None)
    (report if callable(report) else config.run)(args.workdir)
    _html(args.workdir, config, again=args.html)
    _print_report(args.workdir)
    return 0


# ------------------------------------------------------------------------------ methods


def _methods(argv: list[str]) -> int:
    parser = _parser(
        "methods", "Each method's config type with its defaults, and the resources it needs."
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="methods to describe (all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in method_names()]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; registered: {', '.join(method_names())}")
    print(describe(*args.names))
    return 0


# ------------------------------------------------------------------------------ bench


def _bench(argv: list[str]) -> int:
    parser = _parser(
        "bench",
        "Benchmarks live in the checkout's benchmarks/ folder; each writes JSON and markdown "
        "naming the device to benchmarks/results/. Without NAME, lists them. `jaxcf bench "
        "suite` runs every family in one call (see `jaxcf bench suite --help`).",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the benchmark's module name")
    args = parser.parse_args(argv[:1])  # NAME or -h; what follows NAME is the benchmark's
    rest = argv[1:]
    try:
        package = importlib.import_module("benchmarks")
    except ImportError:
        parser.error("no benchmarks/ folder here: run jaxcf bench from the repository root")
    names = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in ("common",)
    )
    if args.name is None:
        for name in names:
            doc = (importlib.import_module(f"benchmarks.{name}").__doc__ or "").strip()
            print(f"{name:<20} {doc.splitlines()[0] if doc else ''}")
        return 0
    if args.name not in names:
        parser.error(f"no benchmark {args.name!r}; there are: {', '.join(names)}")
    module = importlib.import_module(f"benchmarks.{args.name}")
    return module.main(rest) or 0


# ------------------------------------------------------------------------------ export


def _export(argv: list[str]) -> int:
    parser = _parser(
        "export",
        "Classifiers get their density refitted and test accuracy measured again; AttGAN-like "
        "models their held-out numbers. Prints the content digest checked whenever the copy "
        "is loaded as bundled:<name>.",
    )
    parser.add_argument("checkpoint", type=Path, help="a trained model's checkpoint or workdir")
    parser.add_argument("--out", required=True, type=Path, help="where the compact copy goes")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    source = args.checkpoint
    if (source / checkpoint.CHECKPOINT_DIR).is_dir():
        source = source / checkpoint.CHECKPOINT_DIR
    kind = checkpoint.read_metadata(source).get("kind")
    export = export_attgan_compact if kind == ATTGAN_KIND else export_compact
    digest = export(source, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}; content sha256 {digest}")
    return 0


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
