"""Does DeDUCE (and JSMA) decide the same in bfloat16? Agreement with float32, and speed.

    jaxcf bench mixed_precision [--config.checkpoint=bundled:demo_resnet_w32] \
        [--config.images=50]

On the DeDUCE protocol's pairs (``--config.images`` test images of one set x 9 other targets,
the demo's 450 pairs by default), each method runs twice: with its classifier in float32 (the
default) and in bfloat16 (:func:`jaxcf.core.with_precision`: parameters and activations in
bfloat16, losses, thresholds, density and iterates in float32). Per pair it compares:

* **first step**: the pixel(s) each precision changes in its first update (``max_iter=1``), and
  whether the first iterate is identical (same pixels, same signs);
* **every step of the float32 path** (``--config.replay`` updates): from each float32 iterate of a
  pair still searching, whether the bfloat16 step makes the same update. One differing choice
  sends the two searches down different paths, so this is the per-decision agreement, apart
  from what the divergence of whole paths adds;
* **final counterfactual**: identical ``x_cf``, identical set of changed pixels (and their
  Jaccard overlap when they differ), same success, same iteration count;
* **L0**: bfloat16 minus float32 changed pixels, on the pairs both solved (mean, standard error,
  distribution);
* **validity under float32**: whether the bfloat16 counterfactuals reach the target
  (softmax >= the threshold) when the float32 network judges them.

Timing: each full run is one program over all pairs (slot refill + taper, as the runner
schedules a chunk), compiled apart (``lower().compile()``) and timed to
``block_until_ready``; the raw step is timed too (``--config.step_batch`` queries, 4 steps
inside a loop, best of 3), since the end-to-end time also moves with the iteration counts.
CPUs without native bfloat16 arithmetic emulate it, so bfloat16 may well be slower there.

Writes ``<out>/mixed_precision_<device>.{json,md}``, with the default this evidence supports:
float32 stays the default unless agreement is near total (every rate >= ``NEAR_TOTAL``). See
:class:`Config` for the settings.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.common import environment, write_results
from explain.deduce import protocol_pairs
from jaxcf.core import tree_where, validation
from jaxcf.data import load_mnist
from jaxcf.evaluation import metrics
from jaxcf.methods import DeDUCEConfig, JSMAConfig, make, solve, solve_pool
from jaxcf.methods._search import default_keys
from jaxcf.models import load_classifier

PRECISIONS = ("float32", "bfloat16")
NEAR_TOTAL = 0.99
"""Share of pairs on which every compared decision must agree for bfloat16 to become default."""

CONFIGS = {"deduce": DeDUCEConfig(), "jsma": JSMAConfig()}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench mixed_precision``.

    Attributes:
      checkpoint: the classifier: a checkpoint directory or a bundled name.
      images: test images (x 9 targets).
      seed: seed of the protocol's image draw.
      slots: refillable slots of the full runs (queries).
      segment: search iterations between slot refills.
      step_batch: queries of the raw step's timing.
      replay: float32 updates replayed.
      methods: the methods compared, comma-separated: deduce, jsma.
      out: folder the results are written to.
      arrays: also save per-pair outputs to this .npz file (None: not saved).
    """

    checkpoint: str = "bundled:demo_resnet_w32"
    images: int = 50
    seed: int = 0
    slots: int = 128
    segment: int = 4
    step_batch: int = 128
    replay: int = 40
    methods: str = "deduce,jsma"
    out: str = "benchmarks/results"
    arrays: str | None = None

    def __post_init__(self):
        validation.at_least(self, 1, "images", "slots", "segment", "step_batch", "replay")
        validation.at_least(self, 0, "seed")
        common.check_items(self, "methods", tuple(CONFIGS))


def _search(name: str, precision: str, config, model, density):
    return make(name, config, precision=precision, classifier=model, density=density).search


def _changed(x: np.ndarray, x_cf: np.ndarray) -> np.ndarray:
    """``[N, D]`` bool: pixels changed (as :func:`jaxcf.evaluation.metrics.l0` counts them)."""
    d = np.abs(x_cf.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    return d > 1e-6


def run_full(search, x, t, slots: int, segment: int) -> tuple[dict, dict]:
    """All pairs through refillable slots, one program; results and timings."""
    keys = default_keys(len(x))

    def fn(s, x, t, k):
        return solve_pool(s, x, t, k, slots=slots, segment=segment)

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(search, x, t, keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    result = jax.block_until_ready(compiled(search, x, t, keys))
    seconds = time.perf_counter() - start
    out = {k: np.asarray(getattr(result, k)) for k in ("x_cf", "success", "n_iter", "score")}
    return out, {"compile_seconds": compile_s, "seconds": seconds}


def run_first_step(search, x, t) -> np.ndarray:
    """The first iterate of every pair (one update, ``max_iter=1``), as one batch."""
    one = search.replace(config=dataclasses.replace(search.config, max_iter=1))
    return np.asarray(jax.jit(solve)(one, x, t).x_cf)


def replay(s32, s16, x, t, steps: int) -> dict:
    """Follows the float32 path for ``steps`` updates; at each, whether the bfloat16 step from
    the same state gives the same next iterate, for the pairs not yet at their target."""

    @jax.jit
    def both(s32, s16, state, t):
        _, reached, new32 = s32.step(state, t)
        _, _, new16 = s16.step(state, t)
        same = jnp.all((new32.x == new16.x).reshape(len(t), -1), axis=1)
        return reached, same, new32

    state = s32.init(x, t, default_keys(len(x)))
    done = np.zeros(len(x), bool)
    agree, active = [], []
    for _ in range(steps):
        reached, same, new = both(s32, s16, state, t)
        done |= np.asarray(reached)
        live = ~done
        active.append(int(live.sum()))
        agree.append(int(np.sum(np.asarray(same) & live)))
        state = tree_where(jnp.asarray(live), new, state)
    return {
        "steps": steps,
        "decisions": int(sum(active)),
        "same_update": sum(agree) / max(sum(active), 1),
        "same_update_by_step": [a / n if n else None for a, n in zip(agree, active, strict=True)],
        "active_by_step": active,
    }


def time_step(search, x, t, batch: int, steps: int = 4) -> dict:
    """Seconds per query-iteration of the raw step on ``batch`` queries (in a loop, as the
    searches run it), best of 3 after compilation."""
    reps = -(-batch // len(x))
    xb, tb = jnp.concatenate([x] * reps)[:batch], jnp.concatenate([t] * reps)[:batch]
    state = search.init(xb, tb, default_keys(batch))

    def fn(s, st, t):
        return jax.lax.fori_loop(0, steps, lambda _, st: s.step(st, t)[2], st)

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(search, state, tb).compile()
    compile_s = time.perf_counter() - start
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(compiled(search, state, tb))
        best = min(best, time.perf_counter() - start)
    return {
        "batch": batch,
        "compile_seconds": compile_s,
        "step_ms": best / steps * 1e3,
        "query_iterations_per_second": batch * steps / best,
    }


def _spread(d: np.ndarray) -> dict:
    """Mean, standard error and distribution of integer differences."""
    if len(d) == 0:
        return {"n": 0}
    values, counts = np.unique(d, return_counts=True)
    return {
        "n": len(d),
        "mean": float(d.mean()),
        "stderr": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None,
        "std": float(d.std(ddof=1)) if len(d) > 1 else None,
        "zero_share": float(np.mean(d == 0)),
        "negative_share": float(np.mean(d < 0)),
        "positive_share": float(np.mean(d > 0)),
        "quantiles": {
            str(q): float(np.quantile(d, q)) for q in (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
        },
        "histogram": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
    }


def compare(x, target, first, full, model, threshold: float, path: dict) -> dict:
    """Agreement of bfloat16 with float32 on one method's pairs (see the module docstring)."""
    f32, b16 = full["float32"], full["bfloat16"]
    c1 = {p: _changed(x, first[p]) for p in PRECISIONS}
    moved = c1["float32"].any(1) | c1["bfloat16"].any(1)
    c = {p: _changed(x, full[p]["x_cf"]) for p in PRECISIONS}
    same_set = np.all(c["float32"] == c["bfloat16"], axis=1)
    inter = np.sum(c["float32"] & c["bfloat16"], axis=1)
    union = np.sum(c["float32"] | c["bfloat16"], axis=1)
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    both = f32["success"] & b16["success"]
    l0 = {p: c[p].sum(1) for p in PRECISIONS}
    probs = np.asarray(jax.nn.softmax(metrics.outputs(model, b16["x_cf"]), axis=-1))
    valid32 = probs[np.arange(len(target)), target] >= threshold
    return {
        "pairs": len(x),
        "first_step": {
            "same_pixels": float(np.mean(np.all(c1["float32"] == c1["bfloat16"], axis=1))),
            "same_iterate": float(
                np.mean(np.all(first["float32"] == first["bfloat16"], (1, 2, 3)))
            ),
            "pairs_moved": int(moved.sum()),
        },
        "float32_path": path,
        "final": {
            "same_x_cf": float(np.mean(np.all(f32["x_cf"] == b16["x_cf"], axis=(1, 2, 3)))),
            "same_pixel_set": float(np.mean(same_set)),
            "jaccard_when_sets_differ": (
                float(jaccard[~same_set].mean()) if (~same_set).any() else None
            ),
            "same_success": float(np.mean(f32["success"] == b16["success"])),
            "same_n_iter": float(np.mean(f32["n_iter"] == b16["n_iter"])),
            "success_rate": {p: float(full[p]["success"].mean()) for p in PRECISIONS},
            "solved_by_float32_only": int(np.sum(f32["success"] & ~b16["success"])),
            "solved_by_bfloat16_only": int(np.sum(~f32["success"] & b16["success"])),
            "bfloat16_success_valid_under_float32": float(valid32[b16["success"]].mean())
            if b16["success"].any()
            else None,
        },
        "l0": {
            "mean_on_both_solved": {p: float(l0[p][both].mean()) for p in PRECISIONS},
            "bfloat16_minus_float32": _spread((l0["bfloat16"] - l0["float32"])[both]),
        },
        "n_iter_bfloat16_minus_float32": _spread(
            (b16["n_iter"].astype(np.int64) - f32["n_iter"])[both]
        ),
    }


def near_total(agreement: dict) -> bool:
    """Every decision agrees on at least :data:`NEAR_TOTAL` of the pairs."""
    rates = (
        agreement["first_step"]["same_pixels"],
        agreement["final"]["same_pixel_set"],
        agreement["final"]["same_success"],
    )
    return min(rates) >= NEAR_TOTAL


def run(config: Config) -> dict:
    """Compares bfloat16 with float32 for every method of ``config`` (agreement shares, seconds,
    query-iterations per second); writes and returns the results."""
    model, density, meta = load_classifier(config.checkpoint)
    test = load_mnist("test", dataset=meta["dataset"])
    index, target, _ = protocol_pairs(test.labels, 1, config.images, seed=config.seed)
    results = {
        **environment(),
        "classifier": {
            "checkpoint": config.checkpoint,
            "model": meta["model"],
            "test_accuracy": meta["test_accuracy"],
        },
        "pairs": len(index),
        "images": config.images,
        "seed": config.seed,
        "slots": config.slots,
        "segment": config.segment,
        "near_total": NEAR_TOTAL,
        "methods": {},
    }
    arrays = {}
    for name in common.items(config.methods):
        searches = {p: _search(name, p, CONFIGS[name], model, density) for p in PRECISIONS}
        x, t = searches["float32"].check(test.images[index], target)
        results["methods"][name], outputs = compare_method(name, searches, x, t, model, config)
        print(_markdown_method(name, results["methods"][name]), flush=True)
        arrays.update({f"{name}/{k}": v for k, v in outputs.items()})
    if config.arrays:
        np.savez_compressed(config.arrays, **arrays)
    results["bfloat16_default"] = all(m["near_total"] for m in results["methods"].values())
    stem = write_results(Path(config.out), "mixed_precision", results, _markdown(results))
    print(f"wrote {stem}.json and .md")
    return results


def compare_method(name: str, searches: dict, x, t, model, config: Config) -> tuple[dict, dict]:
    """One method in both precisions: its result entry, and its per-pair outputs by
    ``x``, ``target``, ``<precision>/first`` and ``<precision>/<result field>``."""
    first, full, timing = {}, {}, {}
    for p in PRECISIONS:
        print(f"[{name} {p}] first step...", flush=True)
        first[p] = run_first_step(searches[p], x, t)
        print(f"[{name} {p}] raw step...", flush=True)
        step = time_step(searches[p], x, t, config.step_batch)
        print(f"[{name} {p}] all pairs...", flush=True)
        full[p], timing[p] = run_full(searches[p], x, t, config.slots, config.segment)
        timing[p].update(
            step=step,
            mean_iterations=float(full[p]["n_iter"].mean()),
            counterfactuals_per_second=len(x) / timing[p]["seconds"],
        )
        print(f"[{name} {p}] {timing[p]}", flush=True)
    print(f"[{name}] replaying {config.replay} float32 updates in bfloat16...", flush=True)
    path = replay(searches["float32"], searches["bfloat16"], x, t, config.replay)
    threshold = CONFIGS[name].threshold
    agreement = compare(np.asarray(x), np.asarray(t), first, full, model, threshold, path)
    entry = {
        "config": dataclasses.asdict(CONFIGS[name]),
        "agreement": agreement,
        "near_total": near_total(agreement),
        "timing": timing,
    }
    outputs = {"x": np.asarray(x), "target": np.asarray(t)}
    for p in PRECISIONS:
        outputs[f"{p}/first"] = first[p]
        outputs.update({f"{p}/{k}": v for k, v in full[p].items()})
    return entry, outputs


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _markdown_method(name: str, m: dict) -> str:
    a, tm = m["agreement"], m["timing"]
    first, final, l0 = a["first_step"], a["final"], a["l0"]
    d = l0["bfloat16_minus_float32"]
    lines = [
        f"### {name}\n",
        "| decision (bfloat16 vs float32, per pair) | agreement |",
        "| :--- | ---: |",
        f"| first update changes the same pixel(s) | {_pct(first['same_pixels'])} |",
        f"| first iterate identical (pixel and sign) | {_pct(first['same_iterate'])} |",
        f"| same update from each float32 iterate (first {a['float32_path']['steps']} updates, "
        f"{a['float32_path']['decisions']} decisions) | {_pct(a['float32_path']['same_update'])} |",
        f"| same success | {_pct(final['same_success'])} |",
        f"| identical set of changed pixels at the end | {_pct(final['same_pixel_set'])} |",
        f"| identical counterfactual | {_pct(final['same_x_cf'])} |",
        f"| same iteration count | {_pct(final['same_n_iter'])} |",
        "",
        f"Success: float32 {_pct(final['success_rate']['float32'])}, bfloat16 "
        f"{_pct(final['success_rate']['bfloat16'])} ({final['solved_by_float32_only']} pairs "
        f"solved by float32 only, {final['solved_by_bfloat16_only']} by bfloat16 only); "
        f"{_pct(final['bfloat16_success_valid_under_float32'])} of bfloat16's successes also "
        "reach the threshold under the float32 network. Where the pixel sets differ they "
        f"overlap by {final['jaccard_when_sets_differ'] or 0:.2f} (Jaccard).",
        "",
    ]
    if d["n"]:
        q = d["quantiles"]
        lines += [
            f"L0 on the {d['n']} pairs both solved: float32 "
            f"{l0['mean_on_both_solved']['float32']:.2f}, bfloat16 "
            f"{l0['mean_on_both_solved']['bfloat16']:.2f}; bfloat16 - float32 per pair "
            f"{d['mean']:+.2f} ± {d['stderr'] or 0:.2f} (s.e.), sd {d['std'] or 0:.2f}, equal on "
            f"{_pct(d['zero_share'])}, lower on {_pct(d['negative_share'])}, higher on "
            f"{_pct(d['positive_share'])}; 5/25/50/75/95% quantiles "
            + "/".join(f"{q[k]:+.0f}" for k in ("0.05", "0.25", "0.5", "0.75", "0.95"))
            + f", range [{q['0.0']:+.0f}, {q['1.0']:+.0f}].",
            "",
        ]
    lines += [
        "| precision | compile s | steady-state s (all pairs) | CF/s | mean iterations | "
        f"step ms ({tm['float32']['step']['batch']} queries) | query-iterations/s |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in PRECISIONS:
        t = tm[p]
        lines.append(
            f"| {p} | {t['compile_seconds']:.1f} | {t['seconds']:.1f} | "
            f"{t['counterfactuals_per_second']:.2f} | {t['mean_iterations']:.1f} | "
            f"{t['step']['step_ms']:.1f} | {t['step']['query_iterations_per_second']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _markdown(r: dict) -> str:
    verdict = (
        "Agreement is near total: bfloat16 could become the default."
        if r["bfloat16_default"]
        else (
            f"Agreement is not near total (some decision agrees on fewer than "
            f"{100 * r['near_total']:.0f}% of the pairs): **float32 stays the default**; "
            'bfloat16 remains an option (`precision="bfloat16"`).'
        )
    )
    head = (
        f"# Mixed precision on the DeDUCE protocol ({r['device']})\n\n"
        f"{r['pairs']} pairs ({r['images']} MNIST test images x 9 other targets, seed "
        f"{r['seed']}), classifier `{r['classifier']['checkpoint']}` (test accuracy "
        f"{r['classifier']['test_accuracy']:.4f}); {r['host']['cpus']} CPUs, jax {r['jax']}. "
        "Each method runs with its classifier in float32 and in bfloat16 (parameters and "
        "activations in bfloat16; losses, softmax threshold, density and iterates in float32), "
        "with the published configuration. Generated by `python -m benchmarks.mixed_precision`."
        f"\n\n{verdict}\n\n"
    )
    return head + "\n".join(_markdown_method(n, m) for n, m in r["methods"].items())


if __name__ == "__main__":
    main()
