"""What a progress bar that moves within a chunk costs, in steady-state throughput.

The runner's slot pool advanced in host-visible steps of about ``--config.progress_seconds``,
against the same pool advanced in one call per stage (no progress inside a chunk), and against
``solve_pool`` as one jitted program.

    jaxcf bench progress_overhead [--config.checkpoint=DIR] [--config.images=30] \
        [--config.repeats=2]

Every schedule computes the same counterfactuals (asserted). Compilation is excluded: each
schedule runs once to warm up before it is timed, and every timing ends in
``block_until_ready`` (the runner blocks on each chunk). Timed runs alternate between the
schedules and each schedule's fastest run counts, to damp the noise of a shared machine.
Results go to ``<out>/progress_overhead_<device>.{json,md}``; see :class:`Config` for the
settings.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import cpus, device_name, write_results
from explain.deduce import protocol_pairs
from jaxcf import runner
from jaxcf.core import validation
from jaxcf.data import load_mnist
from jaxcf.methods import DeDUCEConfig, make, solve_pool
from jaxcf.models import load_classifier
from jaxcf.runner import _progress

STEPPED = "runner, host-visible steps (progress within a chunk)"
ONE_CALL = "runner, one call per pool stage (no progress within a chunk)"
WHOLE = "solve_pool as one jitted program"


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench progress_overhead``.

    Attributes:
      checkpoint: the classifier: a checkpoint directory or a bundled name.
      images: test images (x 9 targets).
      slots: refillable slots of the pool (queries).
      progress_seconds: aimed-at seconds between progress updates of the stepped runner.
      repeats: timed runs of each schedule (its fastest counts).
      out: folder the results are written to.
    """

    checkpoint: str = "bundled:demo_resnet_w32"
    images: int = 30
    slots: int = 128
    progress_seconds: float = 2.0
    repeats: int = 2
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(self, 1, "images", "slots", "repeats")
        validation.positive(self, "progress_seconds")


def _runner_seconds(explainer, x, t, config) -> tuple[float, np.ndarray, int]:
    """Wall seconds of one runner call into a fresh directory, its counterfactuals and the
    number of progress updates it showed."""
    updates = []
    show = _progress.Progress.show

    def counting(self, done, solved):
        updates.append(done)
        show(self, done, solved)

    _progress.Progress.show = counting
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            res = runner.run(explainer, x, t, tmp, config=config, progress=False)
            seconds = time.perf_counter() - start
    finally:
        _progress.Progress.show = show
    return seconds, res.x_cf, len(updates)


def run(config: Config) -> dict:
    """Times the three schedules on the protocol's pairs (seconds; see the module docstring);
    writes and returns the results."""
    model, density, meta = load_classifier(config.checkpoint)
    test = load_mnist("test")
    index, target, _ = protocol_pairs(test.labels, 1, config.images, seed=0)
    x, t = test.images[index], target
    explainer = make("deduce", DeDUCEConfig(), classifier=model, density=density)
    schedules = _schedules(explainer, x, t, config)
    print(f"{len(x)} pairs; warming up (compiling) each schedule...", flush=True)
    warm = _warm_up(schedules)
    timed, updates = _alternate(schedules, config.repeats)
    best = {name: min(v) for name, v in timed.items()}
    base = best[ONE_CALL]
    results = {
        "device": device_name(),
        "device_count": jax.device_count(),
        "cpus": cpus(),
        "jax": jax.__version__,
        "classifier": {"model": meta["model"], "test_accuracy": meta["test_accuracy"]},
        "pairs": len(x),
        "slots": config.slots,
        "progress_seconds": config.progress_seconds,
        "schedules": {
            name: {
                "first_run_seconds_incl_compile": warm[name],
                "steady_state_seconds": timed[name],
                "best_seconds": best[name],
                "progress_updates": updates[name],
                "throughput_vs_one_call_per_stage": base / best[name],
            }
            for name in schedules
        },
    }
    results["overhead_of_progress"] = best[STEPPED] / base - 1
    write_results(Path(config.out), "progress_overhead", results, _markdown(results))
    print(_markdown(results))
    return results


def _schedules(explainer, x, t, config: Config) -> dict:
    """Each schedule by name: a function running all pairs once, returning its wall seconds,
    its counterfactuals and the progress updates it showed."""
    n = len(x)
    stepped = runner.RunnerConfig(
        chunk_size=n, slots=config.slots, progress_seconds=config.progress_seconds
    )
    one_call = runner.RunnerConfig(chunk_size=n, slots=config.slots, progress_seconds=1e9)
    xs, ts = explainer.check(x, t)
    program = jax.jit(solve_pool, static_argnames=("slots", "segment"))

    def whole_program():
        start = time.perf_counter()
        out = jax.block_until_ready(
            program(explainer.search, xs, ts, slots=config.slots, segment=4)
        )
        return time.perf_counter() - start, np.asarray(out.x_cf), 0

    return {
        STEPPED: lambda: _runner_seconds(explainer, x, t, stepped),
        ONE_CALL: lambda: _runner_seconds(explainer, x, t, one_call),
        WHOLE: whole_program,
    }


def _warm_up(schedules: dict) -> dict:
    """Runs each schedule once (compiling it); its seconds, by name. Asserts that all give
    the same counterfactuals."""
    reference = None
    warm = {}
    for name, fn in schedules.items():
        seconds, x_cf, _ = fn()
        warm[name] = seconds
        if reference is None:
            reference = x_cf
        assert np.array_equal(x_cf, reference), f"{name}: other counterfactuals"
    return warm


def _alternate(schedules: dict, repeats: int) -> tuple[dict, dict]:
    """``repeats`` rounds of timed runs, the schedules alternating: each one's seconds per
    run, and the progress updates of its last run, by name."""
    timed = {name: [] for name in schedules}
    updates = {}
    for r in range(repeats):
        for name, fn in schedules.items():
            seconds, _, shown = fn()
            timed[name].append(seconds)
            updates[name] = shown
            print(f"  run {r + 1}: {name}: {seconds:.1f} s, {shown} progress updates", flush=True)
    return timed, updates


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _markdown(r) -> str:
    lines = [
        f"# Progress within a chunk: overhead on {r['device']} ({r['cpus']} host CPUs)\n",
        f"DeDUCE on {r['pairs']} protocol pairs, classifier {r['classifier']['model']['kind']} "
        f"(width {r['classifier']['model'].get('base_width')}), {r['slots']} slots, progress "
        f"every ~{r['progress_seconds']} s; jax {r['jax']}. Steady state: each schedule warmed "
        "up (compiled) first, the fastest of the timed runs shown; all schedules give identical "
        "counterfactuals.\n",
        "| schedule | first run s (incl. compile) | steady-state s | progress updates | "
        "throughput vs one call per stage |",
        "| :--- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in r["schedules"].items():
        lines.append(
            f"| {name} | {s['first_run_seconds_incl_compile']:.1f} | {s['best_seconds']:.1f} | "
            f"{s['progress_updates']} | {s['throughput_vs_one_call_per_stage']:.3f} |"
        )
    lines.append(
        f"\nThroughput cost of moving the bar within a chunk: "
        f"{100 * r['overhead_of_progress']:+.1f}% (goal: at most +5%)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
