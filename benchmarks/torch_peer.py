"""jaxcf end to end against a PyTorch peer running the published DeDUCE and JSMA loops.

    jaxcf bench torch_peer [--config.checkpoint=bundled:demo_resnet_w32] [--config.images=100]
        [--config.methods=deduce,jsma] [--config.quick=True]

Both sides explain the DeDUCE protocol's pairs (``--config.images`` test images x 9 other
targets; 100 images are one full protocol set, 900 pairs) on the same network, in the same
process and on the same CPU:

* **jaxcf**: :func:`jaxcf.runner.run` as the protocol calls it (per-query targets, chunks of
  1,024 rows, refillable slots, results written to disk). Compilation is measured apart: a
  warm-up run on the first ``--config.warmup_images`` images compiles the runner's programs, and
  every span JAX spends tracing, lowering or compiling (its ``/jax/core/compile/*`` monitoring
  events, overlaps merged) is summed; the timed run on all pairs follows, and whatever it
  still compiles is reported and left out of its steady-state time.
* **PyTorch peer**: :func:`jaxcf.peers.torch_pixels.run_published` on the exported weights
  (:mod:`jaxcf.peers.torch_export`), the published schedule: pairs grouped by target, batches
  of at most ``--config.batch_size`` sharing one target, a host loop of eager forward/backward
  passes until a batch's slowest query has finished. ``torch.set_num_threads`` is set to every
  CPU this process may use (JAX's CPU backend uses them all by default). One step is run first
  to warm up PyTorch's kernels (reported apart).

* **One step, both sides**: the cost of one computed query-step apart from either schedule:
  jaxcf's step jitted in a loop of the runner's ``segment`` steps, and the peer's eager step, on
  the peer's first batch (pairs sharing one target), plus jaxcf's step at the runner's slot
  count; medians of ``--config.step_reps`` timings.

The process's ``XLA_FLAGS`` are recorded with the results (they choose, among other things,
which library XLA's CPU backend runs convolutions with).

Reported per method: seconds, pairs per second and the ratio, and agreement between the two
(pairs with bitwise identical ``x_cf``, same iteration counts, success rates, mean L0). Results
go to ``<out>/torch_peer_<device>.{json,md}`` (``--config.quick=True``:
``torch_peer_<device>_quick``, a smoke test on 2 images with ``max_iter`` 60). See
:class:`Config` for the settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import cpus, device_name
from explain.deduce import protocol_pairs
from jaxcf import runner
from jaxcf.core import explain_compiler_options, to_jsonable, validation
from jaxcf.data import load_mnist
from jaxcf.evaluation import metrics
from jaxcf.methods import DeDUCEConfig, JSMAConfig, make
from jaxcf.methods._search import default_keys
from jaxcf.models import load_classifier

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_SPANS: list[tuple[float, float]] = []
METHODS = ("deduce", "jsma")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench torch_peer``.

    Attributes:
      checkpoint: the classifier: a checkpoint directory or a bundled name.
      images: test images (x 9 targets).
      warmup_images: test images (x 9 targets) of jaxcf's warm-up run.
      batch_size: peer's batch, one target (pairs).
      methods: the methods compared, comma-separated: deduce, jsma.
      max_iter: override of the methods' max_iter (smoke tests); None keeps theirs.
      step_reps: timings of one step (of ``segment`` steps for jaxcf) per side, median kept.
      quick: 2 images, max_iter 60 (a smoke test, written to ``*_quick`` files).
      out: folder the results are written to.
    """

    checkpoint: str = "bundled:demo_resnet_w32"
    images: int = 100
    warmup_images: int = 5
    batch_size: int = 100
    methods: str = ",".join(METHODS)
    max_iter: int | None = None
    step_reps: int = 7
    quick: bool = False
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(self, 1, "images", "warmup_images", "batch_size", "step_reps")
        if self.max_iter is not None:
            validation.at_least(self, 1, "max_iter")
        common.check_items(self, "methods", METHODS)


def _on_span(event: str, start: float, end: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _SPANS.append((start, end))


jax.monitoring.register_event_time_span_listener(_on_span)


@contextmanager
def compile_clock():
    """Yields a dict whose ``"seconds"`` is, on exit, the wall time JAX spent tracing, lowering
    and compiling inside the block (nested spans counted once)."""
    out, first = {}, len(_SPANS)
    yield out
    total, end = 0.0, -np.inf
    for lo, hi in sorted(_SPANS[first:]):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    out["seconds"] = total


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_jaxcf(explainer, x, t, warmup: int, rconfig: runner.RunnerConfig) -> tuple:
    """Warm-up run on the first ``warmup`` pairs, then the timed run on all; fresh out dirs."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with compile_clock() as cold:
            runner.run(
                explainer,
                x[:warmup],
                t[:warmup],
                Path(tmp) / "warm",
                config=rconfig,
                progress=False,
            )
        warm_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with compile_clock() as late:
            res = runner.run(explainer, x, t, Path(tmp) / "timed", config=rconfig, progress=False)
        wall = time.perf_counter() - start
        out = {f: np.array(getattr(res, f)) for f in ("x", "x_cf", "success", "n_iter", "score")}
    return out, {
        "compile_seconds": cold["seconds"],
        "warmup_pairs": warmup,
        "warmup_seconds": warm_seconds,
        "wall_seconds": wall,
        "compile_seconds_in_timed_run": late["seconds"],
        "seconds": wall - late["seconds"],
    }


def bench_torch(name, net, dens, x, t, config, batch_size: int) -> tuple:
    from jaxcf.peers import torch_pixels

    # Warm-up: one step on one batch (thread pools, oneDNN primitives), reported apart.
    idx = torch_pixels.published_batches(t, batch_size)[0]
    one = dataclasses.replace(config, max_iter=1)
    start = time.perf_counter()
    torch_pixels.run_published(name, net, x[idx], t[idx], one, density=dens)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    peer = torch_pixels.run_published(name, net, x, t, config, density=dens, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return peer, {
        "warmup_seconds": warm,
        "seconds": seconds,
        "batches": peer.batches,
        "batch_size": batch_size,
        "computed_query_iterations": peer.computed,
    }


def _median_ms(fn, reps: int) -> float:
    """Median milliseconds of ``fn()`` over ``reps`` calls, after one unmeasured call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def step_costs(name, explainer, net, dens, x, t, config, batch_size: int, rconfig, reps: int):
    """Milliseconds per computed query-step, apart from either schedule: jaxcf's step (jitted in
    a loop of ``rconfig.segment`` steps, as the runner's pool runs it) and the peer's eager step
    on the peer's first batch, and jaxcf's at the runner's slot count."""
    import torch

    from jaxcf.peers import torch_pixels

    search = explainer.search
    segment = rconfig.segment

    def jaxcf_ms(idx) -> float:
        xb, tb = jax.numpy.asarray(x[idx]), jax.numpy.asarray(t[idx])
        state = search.init(xb, tb, default_keys(len(idx)))
        loop = jax.jit(
            lambda s, st, tb: jax.lax.fori_loop(0, segment, lambda _, st: s.step(st, tb)[2], st),
            compiler_options=explain_compiler_options(),
        )
        ms = _median_ms(lambda: jax.block_until_ready(loop(search, state, tb)), reps)
        return ms / segment / len(idx)

    idx = torch_pixels.published_batches(t, batch_size)[0]
    xb, tb = torch.from_numpy(x[idx].copy()), torch.from_numpy(t[idx].astype(np.int64))
    box = tuple(float(v) for v in (config.domain or net.domain))
    flat = (len(idx), xb[0].numel())
    if name == "deduce":
        step = torch_pixels.deduce_step(net, dens, config, tb, box)
        state = torch_pixels.DeDUCEState(
            xb, torch.zeros(flat, dtype=torch.int32), torch.zeros(flat)
        )
    else:
        step = torch_pixels.jsma_step(net, config, tb, box)
        state = torch_pixels.JSMAState(xb, torch.zeros(flat, dtype=torch.bool))
    torch_ms = _median_ms(lambda: step(state), reps) / len(idx)
    slots = min(rconfig.slots or len(x), len(x))
    return {
        "batch": len(idx),
        "jaxcf_ms_per_query_step": jaxcf_ms(idx),
        "torch_ms_per_query_step": torch_ms,
        "slots": slots,
        "jaxcf_ms_per_query_step_at_slots": jaxcf_ms(np.arange(slots)),
    }


def agreement(ours: dict, peer, atol: float = 1e-6) -> dict:
    """How far the two sides' counterfactuals agree, pair by pair."""
    n = len(peer.x_cf)
    same_x = np.all(ours["x_cf"].reshape(n, -1) == peer.x_cf.reshape(n, -1), axis=1)
    l0_ours = metrics.l0(ours["x"], ours["x_cf"], atol)
    l0_peer = metrics.l0(ours["x"], peer.x_cf, atol)
    s_ours, s_peer = ours["success"].astype(bool), peer.success
    both = s_ours & s_peer
    differ = np.flatnonzero(~same_x)
    return {
        "identical_x_cf": float(same_x.mean()),
        "same_n_iter": float(np.mean(ours["n_iter"] == peer.n_iter)),
        "same_success": float(np.mean(s_ours == s_peer)),
        "success_rate": {"jaxcf": float(s_ours.mean()), "torch": float(s_peer.mean())},
        "mean_l0_own_successes": {
            "jaxcf": float(l0_ours[s_ours].mean()) if s_ours.any() else None,
            "torch": float(l0_peer[s_peer].mean()) if s_peer.any() else None,
        },
        "mean_l0_both_solved": {
            "pairs": int(both.sum()),
            "jaxcf": float(l0_ours[both].mean()) if both.any() else None,
            "torch": float(l0_peer[both].mean()) if both.any() else None,
        },
        "max_abs_score_difference": float(np.max(np.abs(ours["score"] - peer.score))),
        "differing_pairs": differ.tolist(),
        "first_divergence": [
            {
                "pair": int(i),
                "jaxcf_n_iter": int(ours["n_iter"][i]),
                "torch_n_iter": int(peer.n_iter[i]),
            }
            for i in differ[:10]
        ],
    }


def run(config: Config) -> dict:
    """Times jaxcf and the PyTorch peer on the protocol's pairs (seconds, pairs per second)
    and compares their counterfactuals; writes and returns the results."""
    if config.quick:
        config = dataclasses.replace(
            config, images=2, warmup_images=1, max_iter=config.max_iter or 60
        )

    import torch

    from jaxcf.peers.torch_export import export_classifier, export_density, parameter_count

    threads = cpus()
    torch.set_num_threads(threads)
    model, density, meta = load_classifier(config.checkpoint)
    net, dens = export_classifier(model), export_density(density)
    test = load_mnist("test", dataset=meta["dataset"])
    index, target, _ = protocol_pairs(test.labels, 1, config.images, seed=0)
    x = np.asarray(test.images[index], np.float32)
    rconfig = runner.RunnerConfig()  # the protocol's default
    device = device_name()
    results = {
        "device": device,
        "cpu": cpu_model(),
        "cpus": threads,
        "torch_threads": torch.get_num_threads(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compiler_options": explain_compiler_options(),
        "torch": torch.__version__,
        "classifier": {
            "checkpoint": config.checkpoint,
            "model": meta["model"],
            "test_accuracy": meta["test_accuracy"],
            "exported_values": parameter_count(net),
        },
        "pairs": len(x),
        "images": config.images,
        "runner": to_jsonable(dataclasses.asdict(rconfig)),
        "methods": {},
    }
    for name in common.items(config.methods):
        method = {"deduce": DeDUCEConfig(), "jsma": JSMAConfig()}[name]
        if config.max_iter is not None:
            method = dataclasses.replace(method, max_iter=config.max_iter)
        explainer = make(name, method, classifier=model, density=density)
        print(f"[{name}] jaxcf: runner.run on {len(x)} pairs...", flush=True)
        ours, jx = bench_jaxcf(explainer, x, target, 9 * config.warmup_images, rconfig)
        print(f"[{name}] jaxcf {jx['seconds']:.1f} s; PyTorch peer...", flush=True)
        peer, tp = bench_torch(name, net, dens, x, target, method, config.batch_size)
        print(f"[{name}] one step of each side...", flush=True)
        steps = step_costs(
            name,
            explainer,
            net,
            dens,
            x,
            target,
            method,
            config.batch_size,
            rconfig,
            config.step_reps,
        )
        results["methods"][name] = _method_results(method, len(x), ours, jx, peer, tp)
        results["methods"][name]["step"] = steps
        print(_markdown_method(name, results["methods"][name]), flush=True)
    _write(Path(config.out), device, config.quick, results)
    return results


def _method_results(method, pairs: int, ours: dict, jx: dict, peer, tp: dict) -> dict:
    """One method's entry: both sides' timings (seconds), their ratio and the agreement."""
    # Query-iterations the algorithm needs (updates plus each pair's final check), the same
    # on both sides where they agree: the rest of the peer's are spent on finished pairs.
    useful = int(np.sum(ours["n_iter"] + 1))
    jx["useful_query_iterations"] = useful
    jx["ms_per_useful_query_iteration"] = 1e3 * jx["seconds"] / useful
    tp["wasted_share"] = 1 - int(np.sum(peer.n_iter + 1)) / peer.computed
    tp["ms_per_computed_query_iteration"] = 1e3 * tp["seconds"] / peer.computed
    return {
        "config": dataclasses.asdict(method),
        "jaxcf": {**jx, "pairs_per_second": pairs / jx["seconds"]},
        "torch": {**tp, "pairs_per_second": pairs / tp["seconds"]},
        "torch_over_jaxcf": tp["seconds"] / jx["seconds"],
        "torch_over_jaxcf_with_compile": tp["seconds"] / (jx["seconds"] + jx["compile_seconds"]),
        "mean_iterations": float(np.mean(ours["n_iter"])),
        "agreement": agreement(ours, peer),
    }


def _write(out: Path, device: str, quick: bool, results: dict) -> None:
    """``<out>/torch_peer_<device>[_quick].{json,md}``."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"torch_peer_{device.replace(' ', '_')}" + ("_quick" if quick else "")
    (out / f"{stem}.json").write_text(json.dumps(to_jsonable(results), indent=2) + "\n")
    (out / f"{stem}.md").write_text(_markdown(results))
    print(f"wrote {out / stem}.{{json,md}}", flush=True)


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _markdown_method(name: str, m: dict) -> str:
    j, t, a = m["jaxcf"], m["torch"], m["agreement"]
    l0o, l0b = a["mean_l0_own_successes"], a["mean_l0_both_solved"]

    def f(v):
        return "—" if v is None else f"{v:.2f}"

    return "\n".join(
        [
            f"### {name}: {m['mean_iterations']:.1f} mean iterations\n",
            "| implementation | compile s | warm-up s | steady-state s | pairs/s | x jaxcf time |",
            "| :--- | ---: | ---: | ---: | ---: | ---: |",
            f"| jaxcf: `runner.run` (per-query targets, slot pool) | {j['compile_seconds']:.1f} | "
            f"{j['warmup_seconds']:.1f} | {j['seconds']:.1f} | {j['pairs_per_second']:.2f} | "
            "1.00 |",
            f"| PyTorch peer: published loop ({t['batches']} batches sharing a target, each until "
            f"its slowest pair) | — | {t['warmup_seconds']:.1f} | {t['seconds']:.1f} | "
            f"{t['pairs_per_second']:.2f} | {m['torch_over_jaxcf']:.2f} |",
            "",
            f"jaxcf's timed run compiled for {j['compile_seconds_in_timed_run']:.2f} s (left out); "
            f"its warm-up (compile included) ran {j['warmup_pairs']} pairs. Counting jaxcf's "
            f"compilation, the peer takes {m['torch_over_jaxcf_with_compile']:.2f}x jaxcf's time. "
            f"The peer spent {t['wasted_share'] * 100:.1f}% of its "
            f"{t['computed_query_iterations']} query-iterations on pairs already finished. Per "
            f"query-iteration the peer's eager step costs "
            f"{t['ms_per_computed_query_iteration']:.2f} ms; jaxcf spends "
            f"{j['ms_per_useful_query_iteration']:.2f} ms per query-iteration the pairs need "
            "(idle slots and host steps included).\n",
            *_markdown_step(m.get("step")),
            "| agreement | value |",
            "| :--- | ---: |",
            f"| pairs with bitwise identical x_cf | {a['identical_x_cf'] * 100:.1f}% |",
            f"| pairs with the same iteration count | {a['same_n_iter'] * 100:.1f}% |",
            f"| success rate, jaxcf / torch | {a['success_rate']['jaxcf'] * 100:.1f}% / "
            f"{a['success_rate']['torch'] * 100:.1f}% |",
            f"| mean L0 over own successes, jaxcf / torch | {f(l0o['jaxcf'])} / "
            f"{f(l0o['torch'])} |",
            f"| mean L0 on the {l0b['pairs']} pairs both solved, jaxcf / torch | "
            f"{f(l0b['jaxcf'])} / {f(l0b['torch'])} |",
            f"| largest target-probability difference | {a['max_abs_score_difference']:.1e} |",
            "",
        ]
    )


def _flags(flags: str | None) -> str:
    return f"; `XLA_FLAGS={flags}`" if flags else ""


def _markdown_step(s: dict | None) -> list[str]:
    if s is None:
        return []
    return [
        f"One step apart from either schedule, on the peer's first batch ({s['batch']} pairs, one "
        f"target): jaxcf {s['jaxcf_ms_per_query_step']:.2f} ms per computed query-step, the peer "
        f"{s['torch_ms_per_query_step']:.2f} ms "
        f"({s['torch_ms_per_query_step'] / s['jaxcf_ms_per_query_step']:.2f}x jaxcf's); jaxcf at "
        f"its {s['slots']} slots: {s['jaxcf_ms_per_query_step_at_slots']:.2f} ms.\n",
    ]


def _markdown(r: dict) -> str:
    clf = r["classifier"]
    head = (
        f"# jaxcf against a PyTorch peer of the published loops, on {r['device']} "
        f"({r['cpu']}, {r['cpus']} CPUs)\n\n"
        f"{r['pairs']} pairs of the DeDUCE protocol ({r['images']} MNIST test images x 9 other "
        f"targets) on `{clf['checkpoint']}` ({clf['model']['kind']}, width "
        f"{clf['model'].get('base_width')}, spectral norm c = {clf['model'].get('coeff')}, test "
        f"accuracy {clf['test_accuracy']:.4f}), both sides in one process on the same CPU: jax "
        f"{r['jax']} (XLA's CPU backend on all cores{_flags(r.get('xla_flags'))}), torch "
        f"{r['torch']} with "
        f"`torch.set_num_threads({r['torch_threads']})`, every core. jaxcf runs as the protocol "
        f"does (`jaxcf.runner.run`, chunks of {r['runner']['chunk_size']}, "
        f"{r['runner']['slots']} refillable slots, results written to disk); the peer runs the "
        "published schedule on the same weights exported to PyTorch (pairs grouped by target, "
        "eager forward/backward passes of a whole batch until its slowest pair finishes). "
        "Steady-state times exclude jaxcf's compilation and both sides' warm-up, reported "
        "apart.\n\n"
    )
    return head + "\n".join(_markdown_method(k, v) for k, v in r["methods"].items())


if __name__ == "__main__":
    main()
