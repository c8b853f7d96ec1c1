"""Running the suite: the ceiling, then every family's batch sweep within the time budget, the
record written after every measurement."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import jax

from benchmarks import common
from benchmarks.suite import _families as families_lib
from benchmarks.suite._config import FAMILIES, PRESETS, Config, Preset
from benchmarks.suite._report import markdown, rate_text
from jaxcf.core import to_jsonable, write_json_atomic, write_text_atomic

# Rates derived from a family's fixed work per query: the work's name -> the rate's name.
_RATES = {
    "steps": "query_steps_per_second",
    "denoiser_calls": "denoiser_calls_per_second",
}


class Stopped(Exception):
    """The process was asked to stop (SIGTERM) part-way: what was measured is kept."""


def default_preset() -> str:
    """``cpu`` on a CPU, ``paper`` on an accelerator."""
    return "cpu" if jax.devices()[0].platform == "cpu" else "paper"


def results_stem(out: Path, preset: str) -> Path:
    """``<out>/suite_<device>``, with ``_<preset>`` added when the preset is not the device's
    default (``suite_cpu`` for the CPU preset on a CPU, ``suite_gpu_<kind>`` for the paper
    preset on a GPU, ``suite_cpu_quick`` for the quick one)."""
    suffix = "" if preset == default_preset() else f"_{preset}"
    return out / f"suite_{common.device_name().replace(' ', '_')}{suffix}"


class _Record:
    """The results as they grow, written (JSON and markdown, each atomically) on every save."""

    def __init__(self, stem: Path, results: dict) -> None:
        self.stem, self.results = stem, results

    def save(self) -> None:
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.stem.with_suffix(".json"), to_jsonable(self.results))
        write_text_atomic(self.stem.with_suffix(".md"), markdown(self.results))


def run(config: Config) -> dict:
    """Runs the suite as ``config`` says; writes ``<out>/suite_<device>[_<preset>].{json,md}``
    after every measurement and returns the results."""
    start = time.perf_counter()
    preset = PRESETS[config.preset or default_preset()]
    budget = preset.budget_s if config.budget_s is None else config.budget_s
    deadline = start + budget
    names = config.family_names()
    results = {
        **common.environment(),
        "preset": preset.name,
        "preset_settings": dataclasses.asdict(preset),
        "budget_seconds": budget,
        "families_requested": list(names),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "complete": False,
        "ceiling": None,
        "families": {},
    }
    record = _Record(results_stem(Path(config.out), preset.name), results)
    print(
        f"[suite] {results['device']} ({results['host']['cpus']} host CPUs), preset "
        f"{preset.name}, {len(names)} families, budget {budget:.0f} s; writing "
        f"{record.stem}.json",
        flush=True,
    )
    try:
        results["ceiling"] = common.ceiling(preset.matmul, min_seconds=min(preset.min_seconds, 0.5))
        c = results["ceiling"]
        print(
            f"[ceiling] {c['n']}^2 matrix product: {c['float32_tflops']:.2f} TFLOP/s float32, "
            f"{c['bfloat16_tflops']:.2f} bfloat16",
            flush=True,
        )
        record.save()
        cache = families_lib.Cache()
        for i, name in enumerate(names):
            share = (deadline - time.perf_counter()) / (len(names) - i)
            _run_family(name, preset, cache, record, time.perf_counter() + share, deadline, start)
        results["complete"] = True
    except (Stopped, KeyboardInterrupt) as exc:
        results["stopped"] = f"stopped part-way ({exc or type(exc).__name__})"
        print(f"[suite] stopped part-way; keeping what was measured in {record.stem}.json")
        raise
    finally:
        results["total_seconds"] = time.perf_counter() - start
        record.save()
    print(f"[suite] done in {results['total_seconds']:.0f} s: {record.stem}.json and .md")
    return results


def _run_family(name, preset: Preset, cache, record: _Record, family_deadline, deadline, start):
    """One family: build its models, then measure its batches while the budget lasts."""
    batches = list(preset.batches(name))
    rec = record.results["families"][name] = {
        "batches": batches,
        "measurements": [],
        "skipped": [],
    }
    if time.perf_counter() >= deadline:
        rec["skipped"] = [{"batch": b, "reason": "the suite's budget was spent"} for b in batches]
        print(f"[{name}] skipped: the suite's budget was spent", flush=True)
        record.save()
        return
    begun = time.perf_counter()
    try:
        family = families_lib.build(name, preset, cache)
    except Exception as exc:  # one family's failure must not cost the others' results
        rec["error"] = _error(exc)
        print(f"[{name}] could not be built: {rec['error']}", flush=True)
        record.save()
        return
    rec.update(
        method=family.method,
        description=family.description,
        work=family.work,
        models=family.models,
        setup_seconds=time.perf_counter() - begun,
    )
    print(f"[{name}] built in {rec['setup_seconds']:.1f} s: {family.description}", flush=True)
    record.save()
    previous = None
    for j, batch in enumerate(batches):
        now = time.perf_counter()
        if previous is not None:
            predicted = _predicted_seconds(previous, batch, preset)
            if now + predicted > min(family_deadline, deadline):
                reason = (
                    f"budget: predicted {predicted:.0f} s, past the family's share "
                    f"(t = {now - start:.0f} s)"
                )
                rec["skipped"] += [{"batch": b, "reason": reason} for b in batches[j:]]
                print(f"[{name}] batch {batch} and larger skipped ({reason})", flush=True)
                break
        program = None
        try:
            program = family.make(batch)
            _, timing = common.measure_call(
                program.fn,
                *program.args,
                repeats=preset.repeats,
                min_seconds=preset.min_seconds,
                max_seconds=preset.max_seconds or float("inf"),
                count_flops=True,
                while_trips=program.while_trips,
                compiler_options=dict(preset.compiler_options),
            )
        except (Stopped, KeyboardInterrupt):
            raise
        except Exception as exc:  # out of memory, say: keep the smaller batches' results
            error = _error(exc)
            rec["skipped"] += [{"batch": batch, "reason": "error", "error": error}]
            rec["skipped"] += [
                {"batch": b, "reason": f"after the error at batch {batch}"}
                for b in batches[j + 1 :]
            ]
            print(f"[{name}] batch {batch} failed: {error}", flush=True)
            break
        finally:
            program = None  # free the batch's arrays before the next one
        row = _measurement(batch, timing, family.work, record.results["ceiling"])
        rec["measurements"].append(row)
        rec["seconds"] = time.perf_counter() - begun
        record.save()
        print(f"[{name}] {_progress(row)} [t = {time.perf_counter() - start:.0f} s]", flush=True)
        previous = row
    rec["seconds"] = time.perf_counter() - begun
    record.save()


def _predicted_seconds(previous: dict, batch: int, preset: Preset) -> float:
    """What measuring ``batch`` should take, from the previous (smaller) batch: its compile
    time, and calls whose time grows with the batch (warm-up plus the timed ones)."""
    call = previous["seconds"] * batch / previous["batch"]
    timed = max(preset.repeats * call, min(preset.min_seconds, 20 * call))
    timed = max(call, min(timed, preset.max_seconds or float("inf")))
    return 1.2 * previous["compile_seconds"] + call + timed


def _measurement(batch: int, timing: dict, work: dict, ceiling: dict) -> dict:
    seconds, flops = timing["seconds"], timing["flops"]
    row = {
        "batch": batch,
        **{k: timing[k] for k in ("compile_seconds", "first_call_seconds", "seconds")},
        "repeats_seconds": timing["repeats_seconds"],
        "counterfactuals_per_second": batch / seconds,
    }
    for key, rate in _RATES.items():
        if key in work:
            row[rate] = batch * work[key] / seconds
    tflops = flops / seconds / 1e12
    row.update(
        flops=flops,
        flops_per_counterfactual=flops / batch,
        achieved_tflops=tflops,
        share_of_f32_matmul=tflops / ceiling["float32_tflops"],
        share_of_bf16_matmul=tflops / ceiling["bfloat16_tflops"],
        flops_exact=timing["flops_exact"],
        flops_xla_program=timing["flops_xla_program"],
        flops_compiled=timing["flops_compiled"],
        loops=[
            {"kind": lp["kind"], "trips": lp["trips"], "body_flops": lp["body_flops"]}
            for lp in timing["loops"]
        ],
    )
    return row


def _progress(row: dict) -> str:
    rates = ", ".join(
        f"{rate_text(row[rate])} {rate.removesuffix('_per_second').replace('_', ' ')}/s"
        for rate in _RATES.values()
        if rate in row
    )
    return (
        f"batch {row['batch']}: compile {row['compile_seconds']:.1f} s, "
        f"{row['seconds']:.4g} s/call, {rate_text(row['counterfactuals_per_second'])} CF/s"
        + (f", {rates}" if rates else "")
        + f", {row['achieved_tflops']:.3g} TFLOP/s ({100 * row['share_of_f32_matmul']:.0f}% "
        "of the float32 matrix product)"
    )


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 1000 else text[:1000] + " ..."


# ------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.suite`` / ``jaxcf bench suite``; returns the exit status."""
    started_as_module = Path(sys.argv[0]).name == "__main__.py"
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite" if started_as_module else "jaxcf bench suite",
        description="Every family's throughput at the papers' model sizes, in one call: "
        "compile time apart, steady state, achieved FLOP/s against a matrix-product ceiling "
        "measured in the same run. Writes <out>/suite_<device>[_<preset>].{json,md} after "
        "every measurement.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="sizes: paper (default on an accelerator), cpu (default on a CPU), quick (toy)",
    )
    group.add_argument("--cpu", action="store_true", help="the cpu preset")
    group.add_argument("--quick", action="store_true", help="the quick preset (toy sizes)")
    parser.add_argument(
        "--families", default="", help=f"comma-separated subset of: {', '.join(FAMILIES)}"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="seconds the run may take; sweeps are cut to fit (default: the preset's, "
        + ", ".join(f"{p.name} {p.budget_s:.0f}" for p in PRESETS.values())
        + ")",
    )
    parser.add_argument("--out", default=Config.out, help="results folder (default %(default)s)")
    parser.add_argument(
        "--list", action="store_true", help="list the families and each preset's batch sweeps"
    )
    args = parser.parse_args(argv)
    if args.list:
        for name in FAMILIES:
            sweeps = "; ".join(f"{p}: {list(PRESETS[p].batches(name))}" for p in PRESETS)
            print(f"{name:<18} {sweeps}")
        return 0
    preset = "cpu" if args.cpu else "quick" if args.quick else args.preset or ""
    try:
        config = Config(preset=preset, families=args.families, budget_s=args.budget_s, out=args.out)
    except ValueError as exc:
        parser.error(str(exc))
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        run(config)
    except (Stopped, KeyboardInterrupt):
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _stop(signum, frame):
    raise Stopped(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
