"""Counterfactuals per second and denoiser calls of the one-step guided sampler and the rollout.

The one-step guided sampler against the DiME-style rollout, each batched and as a per-query
loop.

    jaxcf bench diffusion [--config.workdir=workdir/guided_mnist] [--config.batch=32]
        [--config.rollout_batch=8]

The diffusion model and classifier of the guided experiment's ``--config.workdir`` (``jaxcf
explain explain/guided/configs/guided_mnist.py`` trains them into its ``models/``) explain the
first queries of the guided protocol (``--config.config``: same start
step, respacing, guidance scale and distance term, first attempt only, no retries) towards its
flip targets, all in one process:

* **batched**: the explainer on the whole batch as one jitted call; compilation
  (``jax.jit(...).lower(...).compile()``) timed apart; the steady state is the median of
  ``--config.repeats`` calls (one for the rollout), each ended by ``jax.block_until_ready``;
* **per-query loop**: the same jitted explainer called on one query at a time in a Python
  loop over ``--config.loop_queries`` queries (compiled once before the clock starts), the
  way the papers' code runs.

Reported per sampler: counterfactuals per second, denoiser calls per counterfactual, and the
flip rate of the batch. Results go to ``<out>/diffusion_<device>.{json,md}``; see
:class:`Config` for the settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import environment, measure_call, one_query_per_call, write_results
from jaxcf.core import load_config, validation
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.experiment import flip_targets, model_dir
from jaxcf.methods import make
from jaxcf.models import load_classifier, load_diffusion

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench diffusion``.

    Attributes:
      workdir: the guided experiment's workdir (models in ``models/diffusion`` and
        ``models/classifier``).
      config: the guided protocol's config file, whose samplers' settings are measured.
      batch: queries of the one-step sampler's batched call.
      rollout_batch: queries of the rollout's batched call.
      loop_queries: queries of the per-query loop (at most the batch).
      repeats: timed batched calls of the one-step sampler (their median counts).
      out: folder the results are written to.
    """

    workdir: str = "workdir/guided_mnist"
    config: str = str(ROOT / "explain/guided/configs/guided_mnist.py")
    batch: int = 32
    rollout_batch: int = 8
    loop_queries: int = 8
    repeats: int = 3
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(self, 1, "batch", "rollout_batch", "loop_queries", "repeats")


def one_attempt(config):
    """``config`` without its schedule of retried guidance scales: one attempt, so that the
    denoiser calls per counterfactual are fixed whether or not a query flips."""
    return dataclasses.replace(config, schedule=())


def _call(e, x, t, k):
    return e(x, t, k)


def bench_batched(explainer, x, t, repeats: int) -> dict:
    xs, ts = explainer.check(x, t)
    keys = jax.random.split(jax.random.key(0), len(x))
    result, timing = measure_call(_call, explainer, xs, ts, keys, repeats=repeats)
    return {
        "counterfactuals": len(x),
        "compile_seconds": timing["compile_seconds"],
        "seconds": timing["seconds"],
        "repeats_seconds": timing["repeats_seconds"],
        "counterfactuals_per_second": len(x) / timing["seconds"],
        "flip_rate": float(np.mean(np.asarray(result.success))),
        "denoiser_calls_per_cf": explainer.denoiser_calls,
    }


def bench_loop(explainer, x, t) -> dict:
    xs, ts = explainer.check(x, t)
    keys = jax.random.split(jax.random.key(0), len(x))
    first, seconds = one_query_per_call(jax.jit(_call), explainer, xs, ts, keys)
    return {
        "counterfactuals": len(x),
        "first_call_seconds": first,
        "seconds": seconds,
        "counterfactuals_per_second": len(x) / seconds,
    }


def run(config: Config) -> dict:
    """Both samplers, batched and one query per call (counterfactuals per second, denoiser
    calls per counterfactual); writes and returns the results."""
    protocol = load_config(config.config)
    workdir = Path(config.workdir)
    model, dmeta = load_diffusion(model_dir(workdir, "diffusion"))
    classifier, _, _ = load_classifier(model_dir(workdir, "classifier") / "checkpoint")
    test = load_dataset(dmeta["dataset"], "test")
    order = np.random.default_rng(protocol.seed).permutation(len(test.inputs))
    x = np.asarray(test.inputs[order[: config.batch]], np.float32)
    t = flip_targets(metrics.predict(classifier, x), test.num_classes, protocol.seed)
    results = {**environment(), "dataset": dmeta["dataset"], "samplers": {}}
    for name, cfg, batch, repeats in (
        ("one-step", protocol.guided, config.batch, config.repeats),
        ("rollout", protocol.rollout, config.rollout_batch, 1),
    ):
        cfg = one_attempt(cfg)
        explainer = make("guided_diffusion", cfg, classifier=classifier, diffusion=model)
        out = {"config": dataclasses.asdict(cfg)}
        out.update(bench_sampler(name, explainer, x[:batch], t[:batch], repeats, config))
        results["samplers"][name] = out
    one, roll = results["samplers"]["one-step"], results["samplers"]["rollout"]
    results["calls_ratio"] = (
        roll["batched"]["denoiser_calls_per_cf"] / one["batched"]["denoiser_calls_per_cf"]
    )
    results["speedup_one_step_over_rollout"] = (
        one["batched"]["counterfactuals_per_second"] / roll["batched"]["counterfactuals_per_second"]
    )
    write_results(Path(config.out), "diffusion", results, _markdown(results))
    print(_markdown(results))
    return results


def bench_sampler(name: str, explainer, x, t, repeats: int, config: Config) -> dict:
    """One sampler on the batch ``x``, ``t`` and one query per call on its first
    ``config.loop_queries`` queries."""
    print(f"[{name}] batched, {len(x)} queries...", flush=True)
    out = {"batched": bench_batched(explainer, x, t, repeats)}
    k = min(config.loop_queries, len(x))
    print(f"[{name}] one query per call, {k} queries...", flush=True)
    out["loop"] = bench_loop(explainer, x[:k], t[:k])
    out["batched_over_loop"] = (
        out["batched"]["counterfactuals_per_second"] / out["loop"]["counterfactuals_per_second"]
    )
    return out


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _markdown(r: dict) -> str:
    lines = [
        f"# Guided diffusion samplers on {r['device']} ({r['host']['cpus']} host CPUs, jax "
        f"{r['jax']})\n",
        f"{r['dataset']}; the guided protocol's settings (first attempt only). Steady state: "
        "compilation timed apart, every timing ended by `jax.block_until_ready`; batched = the "
        "median of the repeats of one jitted call over the batch; loop = one query per call.\n",
        "| sampler | denoiser calls / CF | batch | compile s | batched CF/s | loop CF/s | "
        "batched / loop | flip rate (batch) |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in r["samplers"].items():
        b, lp = s["batched"], s["loop"]
        lines.append(
            f"| {name} | {b['denoiser_calls_per_cf']:,} | {b['counterfactuals']} | "
            f"{b['compile_seconds']:.1f} | {b['counterfactuals_per_second']:.2f} | "
            f"{lp['counterfactuals_per_second']:.2f} | {s['batched_over_loop']:.1f}x | "
            f"{100 * b['flip_rate']:.0f}% |"
        )
    lines.append(
        f"\nThe one-step sampler spends {r['calls_ratio']:.0f}x fewer denoiser calls per "
        f"counterfactual than the rollout and runs {r['speedup_one_step_over_rollout']:.0f}x "
        "more counterfactuals per second (batched): each of its calls also backpropagates "
        "through the denoiser and the classifier, a rollout call does not. On 2 CPU cores a "
        "batch barely beats one query per call (the convolutions already fill both cores). The "
        "flip-rate comparison at scale, with retries, is in the guided protocol's report "
        "(docs/results/guided_mnist.md)."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
