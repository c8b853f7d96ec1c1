"""Does DeDUCE (and JSMA) decide the same in bfloat16? Agreement with float32, and speed.

    jaxcf bench mixed_precision [--config.checkpoint=bundled:demo_resnet_w32] \
        [--config.images=10]

On the DeDUCE protocol's pairs (``--config.images`` test images of one set x 9 other targets),
each method runs three times: with its classifier in float32 (the default); in bfloat16 as
``precision="bfloat16"`` runs it (:func:`jaxcf.core.with_precision`: parameters and activations
in bfloat16, losses, thresholds, density and iterates in float32, and a query solved only when
the float32 network confirms the candidate); and in bfloat16 with the bfloat16 network deciding
too (``bfloat16_unchecked``: the wrapper without its float32 reference, as ``precision=
"bfloat16"`` ran before the float32 check). Per pair it compares each bfloat16 run with float32:

* **first step**: the pixel(s) each precision changes in its first update (``max_iter=1``), and
  whether the first iterate is identical (same pixels, same signs);
* **every step of the float32 path** (``--config.replay`` updates): from each float32 iterate of a
  pair still searching, whether the bfloat16 step makes the same update. One differing choice
  sends the two searches down different paths, so this is the per-decision agreement, apart
  from what the divergence of whole paths adds;
* **final counterfactual**: same success, identical ``x_cf``, identical set of changed pixels
  (and their Jaccard overlap when they differ), same iteration count;
* **false successes**: counterfactuals reported solved that the float32 network puts below the
  threshold (softmax < ``threshold``); the checked run must have none (the run fails after
  writing its results if it has any);
* **L0**: bfloat16 minus float32 changed pixels, on the pairs both solved (mean, standard error,
  distribution).

Timing: each full run is one program over all pairs (slot refill + taper, as the runner
schedules a chunk), compiled apart (``lower().compile()``) and timed to
``block_until_ready``: steady-state seconds per counterfactual. The checked and unchecked
bfloat16 runs differ only by the float32 check, so their ratio is its cost (with the extra
iterations of the queries whose candidate float32 rejected). The raw step is timed too
(``--config.step_batch`` queries, 4 steps inside a loop, best of 3), since the end-to-end time
also moves with the iteration counts. CPUs without native bfloat16 arithmetic emulate it, so
bfloat16 may well be slower there.

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
"""The compute dtypes whose steps are compared (the raw step is the same checked or not)."""
VARIANTS = ("float32", "bfloat16", "bfloat16_unchecked")
"""The full runs: float32, bfloat16 with float32 deciding (``precision="bfloat16"``), and
bfloat16 deciding itself."""
NEAR_TOTAL = 0.99
"""Share of pairs on which every compared decision must agree for bfloat16 to become default."""

CONFIGS = {"deduce": DeDUCEConfig(), "jsma": JSMAConfig()}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench mixed_precision``.

    Attributes:
      checkpoint: the classifier: a checkpoint directory or a bundled name.
      images: test images (x 9 targets); 10 keeps the run near 10 minutes on 2 CPU cores.
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
    images: int = 10
    seed: int = 0
    slots: int = 32
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


def _search(name: str, variant: str, config, model, density):
    """The method's search for one of :data:`VARIANTS`."""
    precision = "float32" if variant == "float32" else "bfloat16"
    search = make(name, config, precision=precision, classifier=model, density=density).search
    if variant == "bfloat16_unchecked":  # no float32 reference: bfloat16 decides success too
        search = search.replace(classifier=search.classifier.replace(reference=None))
    return search


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


def first_step_agreement(x, first: dict) -> dict:
    """Whether both precisions' first update changes the same pixels (and signs)."""
    c1 = {p: _changed(x, first[p]) for p in PRECISIONS}
    moved = c1["float32"].any(1) | c1["bfloat16"].any(1)
    return {
        "same_pixels": float(np.mean(np.all(c1["float32"] == c1["bfloat16"], axis=1))),
        "same_iterate": float(np.mean(np.all(first["float32"] == first["bfloat16"], (1, 2, 3)))),
        "pairs_moved": int(moved.sum()),
    }


def valid_under_float32(model, x_cf, target, threshold: float) -> np.ndarray:
    """``[N]`` bool: the float32 network gives the target class softmax >= ``threshold``."""
    probs = np.asarray(jax.nn.softmax(metrics.outputs(model, x_cf), axis=-1))
    return probs[np.arange(len(target)), target] >= threshold


def compare(x, target, f32: dict, b16: dict, model, threshold: float) -> dict:
    """Agreement of one bfloat16 run's results with float32's on one method's pairs (see the
    module docstring)."""
    c = {"float32": _changed(x, f32["x_cf"]), "bfloat16": _changed(x, b16["x_cf"])}
    same_set = np.all(c["float32"] == c["bfloat16"], axis=1)
    inter = np.sum(c["float32"] & c["bfloat16"], axis=1)
    union = np.sum(c["float32"] | c["bfloat16"], axis=1)
    jaccard = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    both = f32["success"] & b16["success"]
    l0 = {p: c[p].sum(1) for p in c}
    valid32 = valid_under_float32(model, b16["x_cf"], target, threshold)
    false = b16["success"] & ~valid32
    return {
        "same_success": float(np.mean(f32["success"] == b16["success"])),
        "same_x_cf": float(np.mean(np.all(f32["x_cf"] == b16["x_cf"], axis=(1, 2, 3)))),
        "same_pixel_set": float(np.mean(same_set)),
        "jaccard_when_sets_differ": float(jaccard[~same_set].mean()) if (~same_set).any() else None,
        "same_n_iter": float(np.mean(f32["n_iter"] == b16["n_iter"])),
        "success_rate": {
            "float32": float(f32["success"].mean()),
            "bfloat16": float(b16["success"].mean()),
        },
        "solved_by_float32_only": int(np.sum(f32["success"] & ~b16["success"])),
        "solved_by_bfloat16_only": int(np.sum(~f32["success"] & b16["success"])),
        "false_successes": int(false.sum()),
        "false_success_share": float(false.sum() / max(b16["success"].sum(), 1)),
        "l0": {
            "mean_on_both_solved": {
                p: float(l0[p][both].mean()) if both.any() else None for p in l0
            },
            "bfloat16_minus_float32": _spread((l0["bfloat16"] - l0["float32"])[both]),
        },
        "n_iter_bfloat16_minus_float32": _spread(
            (b16["n_iter"].astype(np.int64) - f32["n_iter"])[both]
        ),
    }


def near_total(entry: dict) -> bool:
    """Every decision of ``precision="bfloat16"`` agrees on at least :data:`NEAR_TOTAL` of the
    pairs, and none of its successes is false under float32."""
    final = entry["final"]["bfloat16"]
    rates = (entry["first_step"]["same_pixels"], final["same_pixel_set"], final["same_success"])
    return min(rates) >= NEAR_TOTAL and final["false_successes"] == 0


def run(config: Config) -> dict:
    """Compares bfloat16 with float32 for every method of ``config`` (agreement shares, false
    successes, seconds per counterfactual); writes and returns the results.

    Raises:
      AssertionError: after writing, if a run of ``precision="bfloat16"`` reported a success
        the float32 network rejects.
    """
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
        searches = {v: _search(name, v, CONFIGS[name], model, density) for v in VARIANTS}
        x, t = searches["float32"].check(test.images[index], target)
        results["methods"][name], outputs = compare_method(name, searches, x, t, model, config)
        print(_markdown_method(name, results["methods"][name]), flush=True)
        arrays.update({f"{name}/{k}": v for k, v in outputs.items()})
    if config.arrays:
        np.savez_compressed(config.arrays, **arrays)
    results["bfloat16_default"] = all(m["near_total"] for m in results["methods"].values())
    stem = write_results(Path(config.out), "mixed_precision", results, _markdown(results))
    print(f"wrote {stem}.json and .md")
    false = {n: m["final"]["bfloat16"]["false_successes"] for n, m in results["methods"].items()}
    assert not any(false.values()), f"bfloat16 successes float32 rejects: {false}"
    return results


def compare_method(name: str, searches: dict, x, t, model, config: Config) -> tuple[dict, dict]:
    """One method in every variant: its result entry, and its per-pair outputs by ``x``,
    ``target``, ``<precision>/first`` and ``<variant>/<result field>``."""
    first, full, timing = {}, {}, {}
    for p in PRECISIONS:
        print(f"[{name} {p}] first step...", flush=True)
        first[p] = run_first_step(searches[p], x, t)
        print(f"[{name} {p}] raw step...", flush=True)
        timing[p] = {"step": time_step(searches[p], x, t, config.step_batch)}
    timing["bfloat16_unchecked"] = {"step": timing["bfloat16"]["step"]}  # the same step
    for v in VARIANTS:
        print(f"[{name} {v}] all pairs...", flush=True)
        full[v], seconds = run_full(searches[v], x, t, config.slots, config.segment)
        timing[v].update(
            seconds,
            mean_iterations=float(full[v]["n_iter"].mean()),
            seconds_per_counterfactual=seconds["seconds"] / len(x),
            counterfactuals_per_second=len(x) / seconds["seconds"],
        )
        print(f"[{name} {v}] {timing[v]}", flush=True)
    print(f"[{name}] replaying {config.replay} float32 updates in bfloat16...", flush=True)
    path = replay(searches["float32"], searches["bfloat16"], x, t, config.replay)
    threshold = CONFIGS[name].threshold
    xs, ts = np.asarray(x), np.asarray(t)
    valid32 = valid_under_float32(model, full["float32"]["x_cf"], ts, threshold)
    entry = {
        "config": dataclasses.asdict(CONFIGS[name]),
        "first_step": first_step_agreement(xs, first),
        "float32_path": path,
        "float32_successes_valid": bool(np.all(valid32[full["float32"]["success"]])),
        "final": {
            v: compare(xs, ts, full["float32"], full[v], model, threshold) for v in VARIANTS[1:]
        },
        "timing": timing,
        "check_cost": timing["bfloat16"]["seconds"] / timing["bfloat16_unchecked"]["seconds"],
    }
    entry["near_total"] = near_total(entry)
    outputs = {"x": xs, "target": ts}
    for p in PRECISIONS:
        outputs[f"{p}/first"] = first[p]
    for v in VARIANTS:
        outputs.update({f"{v}/{k}": a for k, a in full[v].items()})
    return entry, outputs


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _l0_line(label: str, f: dict) -> str:
    d, l0 = f["l0"]["bfloat16_minus_float32"], f["l0"]["mean_on_both_solved"]
    if not d["n"]:
        return f"{label}: no pair solved by both."
    q = d["quantiles"]
    return (
        f"{label}, L0 on the {d['n']} pairs both solved: float32 {l0['float32']:.2f}, bfloat16 "
        f"{l0['bfloat16']:.2f}; bfloat16 - float32 per pair {d['mean']:+.2f} ± "
        f"{d['stderr'] or 0:.2f} (s.e.), sd {d['std'] or 0:.2f}, equal on "
        f"{_pct(d['zero_share'])}, lower on {_pct(d['negative_share'])}, higher on "
        f"{_pct(d['positive_share'])}; 5/50/95% quantiles "
        + "/".join(f"{q[k]:+.0f}" for k in ("0.05", "0.5", "0.95"))
        + f", range [{q['0.0']:+.0f}, {q['1.0']:+.0f}]."
    )


def _markdown_method(name: str, m: dict) -> str:
    first, path, tm = m["first_step"], m["float32_path"], m["timing"]
    checked, unchecked = m["final"]["bfloat16"], m["final"]["bfloat16_unchecked"]

    def row(label: str, key: str) -> str:
        return f"| {label} | {_pct(checked[key])} | {_pct(unchecked[key])} |"

    lines = [
        f"### {name}\n",
        f"First update changes the same pixel(s) in both precisions on "
        f"{_pct(first['same_pixels'])} of the pairs (identical first iterate: "
        f"{_pct(first['same_iterate'])}); from each float32 iterate of the first "
        f"{path['steps']} updates ({path['decisions']} decisions) the bfloat16 step makes the "
        f"same update {_pct(path['same_update'])} of the time.",
        "",
        "| per pair, against float32 | bfloat16 (float32 decides) | bfloat16 deciding |",
        "| :--- | ---: | ---: |",
        row("same success", "same_success"),
        "| successes float32 puts below the threshold (false successes) | "
        f"{checked['false_successes']} ({_pct(checked['false_success_share'])}) | "
        f"{unchecked['false_successes']} ({_pct(unchecked['false_success_share'])}) |",
        row("identical set of changed pixels at the end", "same_pixel_set"),
        row("identical counterfactual", "same_x_cf"),
        row("same iteration count", "same_n_iter"),
        "",
        f"Success: float32 {_pct(checked['success_rate']['float32'])}, bfloat16 (float32 "
        f"decides) {_pct(checked['success_rate']['bfloat16'])} "
        f"({checked['solved_by_float32_only']} pairs solved by float32 only, "
        f"{checked['solved_by_bfloat16_only']} by bfloat16 only), bfloat16 deciding "
        f"{_pct(unchecked['success_rate']['bfloat16'])}.",
        "",
        _l0_line("bfloat16 (float32 decides)", checked),
        "",
        _l0_line("bfloat16 deciding", unchecked),
        "",
        "| run | compile s | steady-state s (all pairs) | ms per counterfactual | mean "
        f"iterations | step ms ({tm['float32']['step']['batch']} queries) |",
        "| :--- | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "float32": "float32",
        "bfloat16": "bfloat16, float32 decides",
        "bfloat16_unchecked": "bfloat16 deciding",
    }
    for v in VARIANTS:
        t = tm[v]
        lines.append(
            f"| {labels[v]} | {t['compile_seconds']:.1f} | {t['seconds']:.1f} | "
            f"{1e3 * t['seconds_per_counterfactual']:.0f} | {t['mean_iterations']:.1f} | "
            f"{t['step']['step_ms']:.1f} |"
        )
    lines += [
        "",
        f"The float32 check costs {100 * (m['check_cost'] - 1):+.1f}% end to end (bfloat16 "
        "with float32 deciding against bfloat16 deciding).",
    ]
    return "\n".join(lines) + "\n"


def _markdown(r: dict) -> str:
    verdict = (
        "Agreement is near total: bfloat16 could become the default."
        if r["bfloat16_default"]
        else (
            f"Agreement is not near total (some decision agrees on fewer than "
            f"{100 * r['near_total']:.0f}% of the pairs): **float32 stays the default**; "
            'bfloat16 remains an option (`precision="bfloat16"`), whose successes are float32 '
            "successes."
        )
    )
    head = (
        f"# Mixed precision on the DeDUCE protocol ({r['device']})\n\n"
        f"{r['pairs']} pairs ({r['images']} MNIST test images x 9 other targets, seed "
        f"{r['seed']}), classifier `{r['classifier']['checkpoint']}` (test accuracy "
        f"{r['classifier']['test_accuracy']:.4f}); {r['host']['cpus']} CPUs, jax {r['jax']}; "
        f"{r['slots']} slots refilled every {r['segment']} iterations. Each method runs with its "
        'classifier in float32, in bfloat16 as `precision="bfloat16"` runs it (parameters '
        "and activations in bfloat16; losses, softmax threshold, density and iterates in "
        "float32; a query solved only when the float32 network confirms its candidate), and in "
        "bfloat16 deciding success itself (no float32 check), with the published "
        "configuration. Generated by `python -m benchmarks.mixed_precision`."
        f"\n\n{verdict}\n\n"
    )
    return head + "\n".join(_markdown_method(n, m) for n, m in r["methods"].items())


if __name__ == "__main__":
    main()
