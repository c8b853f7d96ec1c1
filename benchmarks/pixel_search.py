"""Throughput of batched DeDUCE and JSMA against the way the paper computed them.

    jaxcf bench pixel_search [--config.checkpoint=DIR] [--config.images=100]

For the DeDUCE protocol's pairs (``--config.images`` test images x 9 other targets) and each
method:

* **jaxcf**: the whole pair list through refillable slots that taper as the list drains
  (:func:`jaxcf.methods.solve_pool`), one XLA program; compile time (``lower().compile()``)
  is reported apart from steady-state time, and every timing ends in ``block_until_ready``.
* **jaxcf, no refill**: the same pairs in batches of ``slots`` with the plain batched while-loop
  (:func:`jaxcf.methods.solve`): every slot computes until its batch's slowest query finishes.
* **baseline "per batch"**: how the published code produced its tables: a host-side Python loop
  over iterations, one jitted step per iteration, on batches of 100 queries sharing one target,
  each batch running until its slowest query has finished.
* **baseline "per query"**: how the paper timed single counterfactuals: one query at a time,
  a host-side loop over iterations. Timed on a sample of queries; its total is the measured time
  per query-iteration times the pairs' actual iteration counts (every implementation runs the
  same per-query algorithm, so the counts are the same).

Also reported: the share of computed query-iterations spent on queries that had already
finished, for each strategy, and a batch-size sweep of the raw step (query-iterations per
second). Results go to ``<out>/pixel_search_<device>.{json,md}``; see :class:`Config` for
the settings.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.common import compile_timed, environment, write_results
from explain.deduce import protocol_pairs
from jaxcf.core import tree_where, validation
from jaxcf.data import load_mnist
from jaxcf.methods import DeDUCEConfig, JSMAConfig, deduce_search, jsma_search, solve, solve_pool
from jaxcf.methods._search import default_keys
from jaxcf.models import load_classifier

METHODS = ("deduce", "jsma")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench pixel_search``.

    Attributes:
      checkpoint: the classifier: a checkpoint directory or a bundled name.
      images: test images (x 9 targets).
      slots: jaxcf's refillable slots, and the batch of its no-refill schedule (queries).
      segment: search iterations between slot refills.
      per_query_sample: queries the one-at-a-time baseline is timed on.
      sweep: batch sizes of the raw step's sweep (queries), comma-separated.
      methods: the methods measured, comma-separated: deduce, jsma.
      out: folder the results are written to.
    """

    checkpoint: str = "bundled:demo_resnet_w32"
    images: int = 100
    slots: int = 128
    segment: int = 4
    per_query_sample: int = 20
    sweep: str = "1,16,64,128,256,512"
    methods: str = ",".join(METHODS)
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(self, 1, "images", "slots", "segment", "per_query_sample")
        common.check_sizes(self, "sweep")
        common.check_items(self, "methods", METHODS)


def make_search(name: str, classifier, density=None, **settings):
    """The search of method ``name`` (``deduce`` or ``jsma``) with its published settings,
    changed by ``settings`` (fields of its config)."""
    if name == "deduce":
        return deduce_search(classifier, density, DeDUCEConfig(**settings))
    if name == "jsma":
        return jsma_search(classifier, JSMAConfig(**settings))
    raise ValueError(f"no pixel search {name!r}; there are {', '.join(METHODS)}")


def _time(fn, *args, repeat: int = 1) -> float:
    """Seconds per call of an already-compiled ``fn`` (result blocked on)."""
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args)
        jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeat


def bench_jaxcf(search, x, t, keys, slots, segment):
    """Refill: one program over all pairs."""

    def fn(s, x, t, k):
        return solve_pool(s, x, t, k, slots=slots, segment=segment, with_stats=True)

    compiled, compile_s = compile_timed(fn, search, x, t, keys)
    start = time.perf_counter()
    result, stats = jax.block_until_ready(compiled(search, x, t, keys))
    seconds = time.perf_counter() - start
    computed = int(stats["slot_iterations"])
    return result, {"compile_seconds": compile_s, "seconds": seconds, "computed": computed}


def bench_no_refill(search, x, t, keys, slots):
    """Plain batched while-loop over consecutive batches of ``slots`` pairs (last one padded)."""
    n = len(x)
    pad = -n % slots
    xp = jnp.concatenate([x, jnp.repeat(x[-1:], pad, 0)])
    tp = jnp.concatenate([t, jnp.repeat(t[-1:], pad)])
    kp = jnp.concatenate([keys, jnp.repeat(keys[-1:], pad)])
    valid = jnp.arange(n + pad) < n
    b = slice(0, slots)
    compiled, compile_s = compile_timed(
        lambda s, x, t, k, v: solve(s, x, t, k, valid=v), search, xp[b], tp[b], kp[b], valid[b]
    )
    start = time.perf_counter()
    computed = 0
    for lo in range(0, n + pad, slots):
        b = slice(lo, lo + slots)
        r = compiled(search, xp[b], tp[b], kp[b], valid[b])
        jax.block_until_ready(r)
        computed += slots * (int(jnp.max(r.n_iter)) + 1)
    return {
        "compile_seconds": compile_s,
        "seconds": time.perf_counter() - start,
        "computed": computed,
    }


def bench_host_loop(search, x, t, keys, batch_size):
    """The published code's schedule: host loop over iterations, batches sharing one target."""
    step = jax.jit(lambda s, st, t: s.step(st, t))
    max_iter = search.max_iter
    order = np.lexsort((np.arange(len(t)), np.asarray(t)))  # group pairs by target
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    b = slice(0, batch_size)
    st0 = search.init(x[b], t[b], keys[b])
    compile_s = _time(step.lower(search, st0, t[b]).compile, repeat=1)
    start = time.perf_counter()
    computed, iters = 0, np.zeros(len(x), np.int64)
    for idx in batches:
        xb, tb = x[idx], t[idx]
        st = search.init(xb, tb, keys[idx])
        n_iter = np.full(len(idx), -1)
        for i in range(max_iter + 1):
            _, reached, new = step(search, st, tb)
            reached = np.asarray(reached)  # the host reads the outcome every iteration
            computed += len(idx)
            n_iter[reached & (n_iter < 0)] = i
            if np.all(n_iter >= 0) or i == max_iter:
                break
            st = tree_where(jnp.asarray(n_iter < 0), new, st)
        iters[idx] = np.where(n_iter < 0, max_iter, n_iter)
    return {
        "compile_seconds": compile_s,
        "seconds": time.perf_counter() - start,
        "computed": computed,
        "n_iter": iters,
    }


def bench_per_query(search, x, t, keys, sample):
    """One query at a time, host loop over iterations; returns seconds per query-iteration."""
    step = jax.jit(lambda s, st, t: s.step(st, t))
    step(search, search.init(x[:1], t[:1], keys[:1]), t[:1])  # compile
    total_s, total_it = 0.0, 0
    for i in sample:
        q = slice(i, i + 1)
        st = search.init(x[q], t[q], keys[q])
        start = time.perf_counter()
        for it in range(search.max_iter + 1):
            _, reached, new = step(search, st, t[q])
            total_it += 1
            if bool(reached[0]) or it == search.max_iter:
                break
            st = new
        total_s += time.perf_counter() - start
    return total_s / total_it


def step_sweep(search, x, t, sizes):
    out = []
    for b in sizes:
        reps = -(-b // len(x))
        xb = jnp.concatenate([x] * reps)[:b]
        tb = jnp.concatenate([t] * reps)[:b]
        st = search.init(xb, tb, default_keys(b))
        compiled, compile_s = compile_timed(lambda s, st, t: s.step(st, t)[2], search, st, tb)
        seconds = _time(compiled, search, st, tb, repeat=max(3, 256 // b))
        out.append(
            {
                "batch": b,
                "compile_seconds": compile_s,
                "step_ms": seconds * 1e3,
                "query_iterations_per_second": b / seconds,
            }
        )
    return out


def run(config: Config) -> dict:
    """Measures every method of ``config`` on the protocol's pairs; writes and returns the
    results (seconds, counterfactuals and query-iterations per second)."""
    model, density, meta = load_classifier(config.checkpoint)
    test = load_mnist("test")
    index, target, _ = protocol_pairs(test.labels, 1, config.images, seed=0)
    results = {
        **environment(),
        "classifier": {"model": meta["model"], "test_accuracy": meta["test_accuracy"]},
        "pairs": len(index),
        "slots": config.slots,
        "segment": config.segment,
        "methods": {},
    }
    rng = np.random.default_rng(0)
    for name in common.items(config.methods):
        search = make_search(name, model, density)
        x, t = search.check(test.images[index], target)
        results["methods"][name] = bench_method(name, search, x, t, config, rng)
        print(_markdown_method(name, results["methods"][name]), flush=True)
    stem = write_results(Path(config.out), "pixel_search", results, _markdown(results))
    print(f"wrote {stem}.json and .md")
    return results


def bench_method(name, search, x, t, config: Config, rng) -> dict:
    """One method's pairs through every schedule, and the step's batch-size sweep."""
    keys = default_keys(len(x))  # deterministic searches: the keys are never read
    print(f"[{name}] jaxcf (refill)...", flush=True)
    result, ours = bench_jaxcf(search, x, t, keys, config.slots, config.segment)
    n_iter = np.asarray(result.n_iter)
    useful = int(n_iter.sum() + len(n_iter))  # updates plus each query's final check
    print(f"[{name}] jaxcf without refill...", flush=True)
    plain = bench_no_refill(search, x, t, keys, config.slots)
    print(f"[{name}] baseline: host loop over batches of 100 sharing a target...", flush=True)
    host = bench_host_loop(search, x, t, keys, 100)
    # Same algorithm, so the same iterations on a CPU. A GPU's convolutions depend on the
    # batch's size and make-up (cuDNN picks kernels per shape), so a near-tie between
    # pixels can go the other way: count those pairs rather than assert none.
    host_iter = host.pop("n_iter")
    differ = int(np.sum(host_iter != n_iter))
    if differ:
        print(f"[{name}] {differ} of {len(x)} pairs took other iteration counts per batch")
    print(f"[{name}] baseline: one query at a time...", flush=True)
    sample = rng.choice(len(x), size=min(config.per_query_sample, len(x)), replace=False)
    per_it = bench_per_query(search, x, t, keys, sample)
    per_query_total = per_it * useful
    print(f"[{name}] step batch-size sweep...", flush=True)
    sweep = step_sweep(search, x, t, common.sizes(config.sweep))
    return {
        "config": dataclasses.asdict(search.config),
        "success_rate": float(np.mean(np.asarray(result.success))),
        "mean_iterations": float(n_iter.mean()),
        "useful_query_iterations": useful,
        "pairs_with_other_iterations_per_batch": differ,
        "jaxcf": _schedule(ours, len(x), useful),
        "jaxcf_no_refill": _schedule(plain, len(x), useful),
        "baseline_per_batch": _schedule(host, len(x), useful),
        "baseline_per_query": {
            "seconds_per_query_iteration": per_it,
            "sampled_queries": len(sample),
            "seconds": per_query_total,
            "counterfactuals_per_second": len(x) / per_query_total,
        },
        "speedup_vs_per_batch": host["seconds"] / ours["seconds"],
        "speedup_vs_per_query": per_query_total / ours["seconds"],
        "speedup_vs_no_refill": plain["seconds"] / ours["seconds"],
        "step_sweep": sweep,
    }


def _schedule(timing: dict, pairs: int, useful: int) -> dict:
    """A schedule's timing with its counterfactuals per second and its share of computed
    query-iterations spent on finished queries or empty slots."""
    return {
        **timing,
        "counterfactuals_per_second": pairs / timing["seconds"],
        "wasted_share": 1 - useful / timing["computed"],
    }


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _markdown_method(name, m):
    rows = [
        ("jaxcf: slot refill + taper, one program", m["jaxcf"]),
        ("jaxcf: batched while-loop, no refill", m["jaxcf_no_refill"]),
        ("baseline: host loop, batches of 100 sharing a target", m["baseline_per_batch"]),
        ("baseline: one query at a time, host loop", m["baseline_per_query"]),
    ]
    ours = m["jaxcf"]["seconds"]
    lines = [
        f"### {name}: {m['success_rate'] * 100:.1f}% success, "
        f"{m['mean_iterations']:.1f} mean iterations\n",
        "| schedule | compile s | steady-state s | CF/s | x jaxcf time | wasted query-iters |",
        "| :--- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, r in rows:
        compile_s = f"{r['compile_seconds']:.1f}" if "compile_seconds" in r else "—"
        wasted = f"{r['wasted_share'] * 100:.1f}%" if "wasted_share" in r else "0.0%"
        cfs = r["counterfactuals_per_second"]
        lines.append(
            f"| {label} | {compile_s} | {r['seconds']:.1f} | {cfs:.2f} | "
            f"{r['seconds'] / ours:.2f} | {wasted} |"
        )
    lines += ["", "| step batch | step ms | query-iterations/s |", "| ---: | ---: | ---: |"]
    lines += [
        f"| {s['batch']} | {s['step_ms']:.1f} | {s['query_iterations_per_second']:.0f} |"
        for s in m["step_sweep"]
    ]
    return "\n".join(lines) + "\n"


def _markdown(results):
    clf = results["classifier"]
    head = (
        f"# Pixel-search throughput on {results['device']} ({results['device_count']} device(s), "
        f"{results['host']['cpus']} host CPUs)\n\n"
        f"{results['pairs']} pairs of the DeDUCE protocol, classifier {clf['model']['kind']} "
        f"(width {clf['model'].get('base_width')}, test accuracy "
        f"{clf['test_accuracy']:.4f}); slots {results['slots']}, refill every "
        f"{results['segment']} iterations; jax {results['jax']}. Steady-state times exclude "
        "compilation (reported apart); the per-query baseline is timed on a sample and scaled by "
        "the pairs' iteration counts.\n\n"
    )
    return head + "\n".join(_markdown_method(k, v) for k, v in results["methods"].items())


if __name__ == "__main__":
    main()
