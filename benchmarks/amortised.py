"""Counterfactuals per second: an amortised generator against per-query search (and DiCE).

    jaxcf bench amortised [--config.workdir=workdir] [--config.modalities=mnist,ecg,adult]
        [--config.batch=1000] [--config.wachter_queries=200]

For each modality, the trained models of ``<workdir>/generator_<modality>`` (``jaxcf train
train/configs/generator_<modality>.py --workdir workdir/generator_<modality>``; a modality
without them is skipped) explain the first ``--config.batch`` queries of a seeded permutation
of the test split towards the protocol's flip targets
(:func:`explain.amortised.flip_targets`), all in one process on the same device:

* **generator**: the explainer's forward pass over the whole batch as one jitted call
  (``jax.jit(...).lower(...).compile()`` timed apart as compilation); the steady state is the
  median of ``--config.repeats`` calls, each ended by ``jax.block_until_ready``.
* **generator via the runner**: :func:`jaxcf.runner.run` on the same batch, end to end
  (chunking, host transfers, chunk files and the record written to a temporary directory), on
  a second run once the first has compiled the runner's program.
* **Wachter**: the per-query Adam search with the explain config's settings
  (``explain/amortised/configs/generator_<modality>.py``) on the first
  ``--config.wachter_queries`` queries, all of them through refillable slots in one jitted
  program (:func:`jaxcf.methods.solve_pool`, compilation timed apart), one run.
* **Wachter, one query per call**: the same search run the way per-instance libraries (and
  the papers' baselines) run it: a Python loop calling the jitted search on one query at a
  time, on the first ``--config.loop_queries`` queries (the first call, which compiles, timed
  apart).
* **Wachter's search over the L1 weight** (``rounds > 0``, :mod:`jaxcf.methods._wachter`): the
  same loss and optimiser, searched the way the per-instance ``CounterFactual`` of alibi (the
  library of the amortised-generator paper's authors) does with its default budget
  (``LAMBDA_SEARCH``: 10 rounds of at most 1,000 steps, a round ending after 50 consecutive
  valid or invalid iterates), returning the closest valid iterate. Slots in one program on the
  first ``--config.lambda_queries`` queries, and one query per call on the first
  ``--config.lambda_loop_queries``. The first-valid rows above stop at the first iterate past
  the boundary, which is cheaper but no search for the closest counterfactual.
* **DiCE** (Adult only): :class:`jaxcf.peers.dice.DicePeer` (``random``, the explain config's
  counterfactuals per query and constraints) on the first ``--config.dice_queries`` queries;
  its setup is reported apart, its per-query wall times are summed.

Counterfactuals per second = counterfactuals / steady-state seconds; the ratios (generator /
peer) come from the same run. L1: mean absolute change per input element (encoded features
for Adult), over all counterfactuals. The issue's goal: the generator gives at least 100x more
counterfactuals per second than Wachter's search on the same CPU. Results go to
``<out>/amortised_<device>.{json,md}``; see :class:`Config` for the settings.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import (
    compile_timed,
    environment,
    measure_call,
    one_query_per_call,
    timed,
    write_results,
)
from explain.amortised import encoded_box, load_models
from jaxcf import peers, runner
from jaxcf.core import load_config, validation
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.experiment import flip_targets
from jaxcf.methods import GeneratorConfig, make, solve, solve_pool, wachter_search

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("mnist", "ecg", "ecg_ae", "adult")
# alibi CounterFactual's defaults: max_lam_steps, early_stop and max_iter (steps per round).
LAMBDA_SEARCH = dict(rounds=10, patience=50, max_iter=1000)


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench amortised``.

    Attributes:
      workdir: folder holding the trained ``generator_<modality>`` workdirs.
      modalities: the modalities measured, comma-separated: mnist, ecg, ecg_ae, adult.
      batch: queries the generator explains.
      repeats: timed generator calls (their median counts).
      wachter_queries: queries Wachter explains through the slots.
      slots: Wachter's refillable slots.
      dice_queries: queries DiCE explains (Adult).
      loop_queries: queries Wachter explains one at a time.
      lambda_queries: queries of the search over the weight.
      lambda_loop_queries: queries of the search over the weight explained one at a time.
      out: folder the results are written to.
    """

    workdir: str = "workdir"
    modalities: str = ",".join(MODALITIES)
    batch: int = 1000
    repeats: int = 5
    wachter_queries: int = 200
    slots: int = 32
    dice_queries: int = 50
    loop_queries: int = 50
    lambda_queries: int = 64
    lambda_loop_queries: int = 8
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(
            self,
            1,
            "batch",
            "repeats",
            "wachter_queries",
            "slots",
            "dice_queries",
            "loop_queries",
            "lambda_queries",
            "lambda_loop_queries",
        )
        common.check_items(self, "modalities", MODALITIES)


def mean_l1(x_cf, x) -> float:
    """Mean absolute change per input element, over all counterfactuals."""
    return float(np.mean(metrics.l1(x, x_cf))) / int(np.prod(np.shape(x)[1:]))


def bench_generator(explainer, x, target, repeats: int) -> tuple[dict, np.ndarray]:
    """Timings, and the counterfactuals."""
    xs, ts = explainer.check(x, target)
    keys = jax.random.split(jax.random.key(0), len(x))

    def fn(e, x, t, k):
        return e(x, t, k)

    result, timing = measure_call(fn, explainer, xs, ts, keys, repeats=repeats)
    return {
        "counterfactuals": len(x),
        **timing,
        "counterfactuals_per_second": len(x) / timing["seconds"],
        "success_rate": float(np.mean(np.asarray(result.success))),
        "l1": mean_l1(result.x_cf, x),
    }, np.asarray(result.x_cf)


def bench_runner(explainer, x, target) -> dict:
    cfg = runner.RunnerConfig(chunk_size=len(x))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        runner.run(explainer, x, target, Path(tmp) / "warm", config=cfg, progress=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        runner.run(explainer, x, target, Path(tmp) / "timed", config=cfg, progress=False)
        seconds = time.perf_counter() - start
    return {
        "counterfactuals": len(x),
        "first_run_seconds": first,
        "seconds": seconds,
        "counterfactuals_per_second": len(x) / seconds,
    }


def bench_wachter(classifier, config, x, target, slots: int) -> tuple[dict, np.ndarray]:
    """Timings, and the counterfactuals."""
    search = wachter_search(classifier, config)
    xs, ts = search.check(x, target)
    keys = jax.random.split(jax.random.key(0), len(x))
    slots = min(slots, len(x))

    def fn(s, x, t, k):
        return solve_pool(s, x, t, k, slots=slots, segment=4)

    compiled, compile_s = compile_timed(fn, search, xs, ts, keys)
    result, seconds = timed(compiled, search, xs, ts, keys)
    n_iter = np.asarray(result.n_iter)
    steps = int(n_iter.sum() + len(n_iter))  # updates plus each query's final check
    return {
        "counterfactuals": len(x),
        "config": dataclasses.asdict(config),
        "slots": slots,
        "compile_seconds": compile_s,
        "seconds": seconds,
        "counterfactuals_per_second": len(x) / seconds,
        "success_rate": float(np.mean(np.asarray(result.success))),
        "l1": mean_l1(result.x_cf, x),
        "mean_iterations": float(n_iter.mean()),
        "seconds_per_query_step": seconds / steps,
    }, np.asarray(result.x_cf)


def bench_wachter_loop(classifier, config, x, target) -> dict:
    """Wachter the way per-instance libraries run it: one query per call, in a Python loop
    over the queries (each call one jitted search of a batch of one, compiled once before the
    clock starts)."""
    search = wachter_search(classifier, config)
    xs, ts = search.check(x, target)
    keys = jax.random.split(jax.random.key(0), len(x))
    fn = jax.jit(lambda s, x, t, k: solve(s, x, t, k))
    compile_s, seconds = one_query_per_call(fn, search, xs, ts, keys)
    return {
        "counterfactuals": len(x),
        "config": dataclasses.asdict(config),
        "first_call_seconds": compile_s,
        "seconds": seconds,
        "counterfactuals_per_second": len(x) / seconds,
    }


def bench_dice(classifier, generator, train, x, target, method: str, num_cfs: int) -> dict:
    from jaxcf.peers.dice import DicePeer
    from jaxcf.tabular import Constraints

    transform = generator.transform
    constraints = Constraints(**(generator.config.constraints or {}))
    table = transform.decode(train.inputs)
    peer = DicePeer(
        classifier, transform, (table, train.labels), method=method, constraints=constraints
    )
    result = peer.explain(transform.decode(x), [int(t) for t in target], total_CFs=num_cfs, seed=0)
    seconds = float(result.seconds.sum())
    n = len(x) * num_cfs
    return {
        "counterfactuals": n,
        "method": method,
        "num_cfs": num_cfs,
        "setup_seconds": result.setup_seconds,
        "seconds": seconds,
        "counterfactuals_per_second": n / seconds,
        "found": int(result.found.sum()),
    }


def gen_rate_of(out: dict) -> float:
    return out["generator"]["counterfactuals_per_second"]


def bench_modality(name: str, config: Config) -> dict | None:
    workdir = Path(config.workdir) / f"generator_{name}"
    explain = load_config(ROOT / "explain" / "amortised" / "configs" / f"generator_{name}.py")
    job = explain.resolved_job()
    try:
        classifier, generator, gen_meta, clf_meta = load_models(job, workdir)
    except FileNotFoundError as exc:
        print(f"[{name}] skipped: {exc}", flush=True)
        return None
    train = load_dataset(job.dataset, "train")
    test = load_dataset(job.dataset, "test")
    n = min(config.batch, len(test))
    order = np.random.default_rng(0).permutation(len(test))[:n]
    x = np.asarray(test.inputs[order], np.float32)
    pred = metrics.predict(classifier, x)
    target = flip_targets(pred, test.num_classes, 1)
    explainer = make("generator", GeneratorConfig(), classifier=classifier, generator=generator)
    out = {
        "dataset": job.dataset,
        "classifier": {"model": clf_meta.get("model"), "test_accuracy": clf_meta["test_accuracy"]},
        "generator_model": gen_meta.get("configs", {}).get("generator"),
    }
    print(f"[{name}] generator, one jitted pass over {n} queries...", flush=True)
    out["generator"], gen_x_cf = bench_generator(explainer, x, target, config.repeats)
    print(f"[{name}] generator via the runner...", flush=True)
    out["generator_runner"] = bench_runner(explainer, x, target)
    wachter = explain.wachter
    if getattr(generator, "transform", None) is not None:
        wachter = encoded_box(wachter, train.inputs, x)
    runs = {  # key: (config, queries through slots, queries one per call)
        "wachter": (wachter, config.wachter_queries, config.loop_queries),
        "wachter_lambda": (
            dataclasses.replace(wachter, **LAMBDA_SEARCH),
            config.lambda_queries,
            config.lambda_loop_queries,
        ),
    }
    peer_x_cf = {}
    for key, (method, k, k_loop) in runs.items():
        k = min(k, n)
        k_loop = min(k_loop, k)
        print(f"[{name}] {key}: {k} queries through slots, {k_loop} one per call...", flush=True)
        out[key], peer_x_cf[key] = bench_wachter(
            classifier, method, x[:k], target[:k], config.slots
        )
        out[f"{key}_loop"] = bench_wachter_loop(classifier, method, x[:k_loop], target[:k_loop])
        for kk in (key, f"{key}_loop"):
            out[f"speedup_vs_{kk}"] = gen_rate_of(out) / out[kk]["counterfactuals_per_second"]
    transform = getattr(generator, "transform", None)
    if transform is not None:  # tabular: what the rows decode to is what a user gets
        for key, x_cf in (("generator", gen_x_cf), *peer_x_cf.items()):
            valid = transform.encode(transform.decode(x_cf))
            out[key]["valid_after_projection"] = float(
                np.mean(metrics.validity(classifier, valid, target[: len(x_cf)]))
            )
    gen_rate = gen_rate_of(out)
    # What one generator counterfactual costs in Wachter steps: Wachter would have to take
    # 100 times as many steps per query for the generator to be 100x faster.
    out["generator_cost_in_wachter_steps"] = (1.0 / gen_rate) / out["wachter"][
        "seconds_per_query_step"
    ]
    if "dice" in explain.peers and not peers.available("dice"):
        print(f"[{name}] {peers.missing_message('dice')}", flush=True)
    elif "dice" in explain.peers:
        k = min(config.dice_queries, n)
        print(f"[{name}] DiCE on {k} queries...", flush=True)
        out["dice"] = bench_dice(
            classifier, generator, train, x[:k], target[:k], explain.dice_method, explain.num_cfs
        )
        out["speedup_vs_dice"] = gen_rate / out["dice"]["counterfactuals_per_second"]
    print(_markdown_modality(name, out), flush=True)
    return out


def run(config: Config) -> dict:
    """Each trained modality's generator against its peers (counterfactuals per second);
    writes and returns the results."""
    results = {**environment(), "batch": config.batch, "modalities": {}}
    for name in common.items(config.modalities):
        out = bench_modality(name, config)
        if out is not None:
            results["modalities"][name] = out
    if not results["modalities"]:
        raise SystemExit("no trained models found: nothing measured")
    stem = write_results(Path(config.out), "amortised", results, _markdown(results))
    print(f"wrote {stem}.json and .md")
    return results


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _rate(r: dict) -> str:
    return f"{r['counterfactuals_per_second']:,.1f}"


def _success(r: dict) -> str:
    text = f"{100 * r['success_rate']:.1f}%"
    if "valid_after_projection" in r:
        text += f" ({100 * r['valid_after_projection']:.1f}% projected)"
    return text


def _markdown_modality(name: str, m: dict) -> str:
    gen, run, w = m["generator"], m["generator_runner"], m["wachter"]
    dash = "\u2014"

    def row(label, r, compile_text, speedup, success=dash, l1=dash):
        speedup = dash if speedup is None else f"**{speedup:,.0f}x**"
        return (
            f"| {label} | {r['counterfactuals']} | {compile_text} | {r['seconds']:.4g} | "
            f"{_rate(r)} | {speedup} | {success} | {l1} |"
        )

    def searched(label, key, r):
        return row(
            f"{label} ({r['mean_iterations']:.0f} iterations on average)",
            r,
            f"{r['compile_seconds']:.2f}",
            m[f"speedup_vs_{key}"],
            _success(r),
            f"{r['l1']:.4f}",
        )

    def looped(label, key):
        r = m[key]
        return row(label, r, f"({r['first_call_seconds']:.2f} first call)", m[f"speedup_vs_{key}"])

    lines = [
        f"### {name} ({m['dataset']}; classifier {m['classifier']['model']['kind']}, test "
        f"accuracy {m['classifier']['test_accuracy']:.4f})\n",
        "| method | counterfactuals | compile s | steady-state s | CF/s | generator speed-up |"
        " success | L1 / element |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        row(
            "generator: one jitted pass",
            gen,
            f"{gen['compile_seconds']:.2f}",
            1,
            _success(gen),
            f"{gen['l1']:.4f}",
        ),
        row(
            "generator: runner, end to end",
            run,
            f"({run['first_run_seconds']:.2f} first run)",
            None,
        ),
        searched("Wachter, first valid iterate: slots, one program", "wachter", w),
        looped("Wachter, first valid iterate: one query per call", "wachter_loop"),
    ]
    if "wachter_lambda" in m:
        wl = m["wachter_lambda"]
        lines += [
            searched(
                "Wachter, search over the L1 weight: slots, one program", "wachter_lambda", wl
            ),
            looped("Wachter, search over the L1 weight: one query per call", "wachter_lambda_loop"),
        ]
    if "dice" in m:
        d = m["dice"]
        lines.append(
            row(
                f"DiCE {d['method']} ({d['num_cfs']} per query)",
                d,
                f"({d['setup_seconds']:.2f} setup)",
                m["speedup_vs_dice"],
                f"{d['found']} found",
            )
        )
    cost = m["generator_cost_in_wachter_steps"]
    lines.append(
        f"\nOne generator counterfactual costs as much as {cost:.2f} Wachter steps "
        f"({1e3 * w['seconds_per_query_step']:.3g} ms per query and step in the slots, final "
        f"check included). Stopping at the first valid iterate, Wachter took "
        f"{w['mean_iterations'] + 1:.1f} steps per query"
    )
    if "wachter_lambda" in m:
        lines[-1] += (
            f"; searching for the closest one with alibi's budget, "
            f"{m['wachter_lambda']['mean_iterations'] + 1:,.0f}"
        )
    lines[-1] += "."
    return "\n".join(lines) + "\n"


def _markdown(results: dict) -> str:
    head = (
        f"# Amortised generator throughput on {results['device']} "
        f"({results['device_count']} device(s), {results['host']['cpus']} host CPUs, jax "
        f"{results['jax']})\n\n"
        "Counterfactuals per second, steady state (compilation timed apart, every timing ended "
        "by `jax.block_until_ready`); the generator's speed-up is its CF/s over the peer's, "
        "from the same run. The generator explains the whole batch in one jitted call (median "
        "of the repeats); the runner row adds chunking, host transfers and writing the record. "
        "Wachter runs the explain config's loss and optimiser, either stopping at the first "
        "iterate that reaches the target, or searching over the weight of its L1 term for the "
        "closest valid iterate with the default budget of the per-instance `CounterFactual` of "
        "alibi, the library of the amortised-generator paper's authors (10 rounds of at most "
        "1,000 steps, a round ending after 50 consecutive valid or invalid iterates); each "
        "through refillable slots in one program and one query per call. DiCE's time is its "
        "per-query wall time, setup excluded. Success: the method's own criterion (target "
        "class probability >= 0.5); for Adult in parentheses the share still valid once the "
        "rows are projected to valid rows (decode -> encode), what a user reads. L1: mean "
        "absolute change per input element (Adult: of the encoding). Goal: the generator >= "
        "100x Wachter's CF/s on the same CPU.\n\n"
    )
    return head + "\n".join(_markdown_modality(k, v) for k, v in results["modalities"].items())


if __name__ == "__main__":
    main()
