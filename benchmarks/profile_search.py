"""Where a DeDUCE search's time goes: the network against everything else, and the best slot count.

    jaxcf bench profile_search --config.checkpoint=workdir/paper/models/classifier/checkpoint \
        --config.images=500

Three measurements, each compiled first (compile time reported apart) and timed to
``block_until_ready``:

* **Ceiling**: a square float32 matrix product (default precision, as the network's
  convolutions run) and the same in bfloat16: the FLOP/s this device reaches on dense work.
* **Step anatomy**, per batch size B: one DeDUCE update (``search.step``) against the network
  alone (features, head and the input gradient of one logit: one forward and one backward pass,
  the work a step cannot avoid). FLOPs are XLA's own count (``cost_analysis``) of each lowered
  program; "outside the network" is ``1 - network time / step time`` (pixel selection, momentum,
  the density's log-probabilities and their gradient, the clip).
* **Slot sweep**: the protocol's pairs (``--config.images`` test images x 9 targets) through
  :func:`jaxcf.methods.solve_pool` with several slot counts: end-to-end seconds and the share of
  computed query-iterations wasted on finished queries or empty slots.

Results go to ``<out>/profile_search_<device>.{json,md}``; see :class:`Config` for the settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.common import ceiling, environment, lowered_flops, seconds_per_call, write_results
from benchmarks.pixel_search import bench_jaxcf
from explain.deduce import protocol_pairs
from jaxcf.core import validation
from jaxcf.data import load_mnist
from jaxcf.methods import DeDUCEConfig, deduce_search
from jaxcf.methods._search import default_keys
from jaxcf.models import load_classifier


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench profile_search``.

    Attributes:
      checkpoint: the classifier: a checkpoint directory or a bundled name.
      images: test images (x 9 targets).
      batches: batch sizes of the step anatomy (queries), comma-separated.
      slots: slot counts of the slot sweep, comma-separated.
      segment: search iterations between slot refills.
      matmul: ceiling's matrix size (rows = columns).
      out: folder the results are written to.
    """

    checkpoint: str = "bundled:demo_resnet_w32"
    images: int = 100
    batches: str = "64,256,1024,2048,4096"
    slots: str = "256,512,1024,2048,4500"
    segment: int = 4
    matmul: int = 8192
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(self, 1, "images", "segment", "matmul")
        common.check_sizes(self, "batches")
        common.check_sizes(self, "slots")


def step_anatomy(search, x, t, batch: int) -> dict:
    """Times one update and the network's forward + input gradient on ``batch`` queries."""
    reps = -(-batch // len(x))
    xb, tb = jnp.concatenate([x] * reps)[:batch], jnp.concatenate([t] * reps)[:batch]
    state = search.init(xb, tb, default_keys(batch))

    def network(s, x):
        return jax.grad(lambda x: jnp.sum(s.classifier.head(s.classifier.features(x))[:, 0]))(x)

    step_flops, step, step_compile = lowered_flops(
        lambda s, st, t: s.step(st, t)[2], search, state, tb
    )
    net_flops, net, _ = lowered_flops(network, search, xb)
    step_s = seconds_per_call(step, search, state, tb)
    net_s = seconds_per_call(net, search, xb)
    return {
        "batch": batch,
        "step_compile_seconds": step_compile,
        "step_ms": step_s * 1e3,
        "network_ms": net_s * 1e3,
        "outside_network_share": 1 - net_s / step_s,
        "network_gflop_per_query": net_flops / batch / 1e9,
        "step_gflop_per_query": step_flops / batch / 1e9,
        "network_tflops": net_flops / net_s / 1e12,
        "step_tflops": step_flops / step_s / 1e12,
        "query_iterations_per_second": batch / step_s,
    }


def run(config: Config) -> dict:
    """The ceiling, the step anatomy per batch size and the slot sweep (seconds, FLOP/s);
    writes and returns them."""
    model, density, meta = load_classifier(config.checkpoint)
    test = load_mnist("test")
    index, target, _ = protocol_pairs(test.labels, 1, config.images, seed=0)
    search = deduce_search(model, density, DeDUCEConfig())
    x, t = search.check(test.images[index], target)
    keys = default_keys(len(x))
    results = {
        **environment(),
        "classifier": {"model": meta["model"], "test_accuracy": meta["test_accuracy"]},
        "pairs": len(x),
        "ceiling": ceiling(config.matmul),
        "steps": [],
        "slots": [],
    }
    print(f"ceiling: {results['ceiling']}", flush=True)
    for b in common.sizes(config.batches):
        results["steps"].append(row := step_anatomy(search, x, t, b))
        print(f"step: {row}", flush=True)
    for slots in common.sizes(config.slots):
        result, timing = bench_jaxcf(search, x, t, keys, min(slots, len(x)), config.segment)
        useful = int(np.asarray(result.n_iter).sum()) + len(x)
        row = {"slots": slots, **timing, "wasted_share": 1 - useful / timing["computed"]}
        row["counterfactuals_per_second"] = len(x) / timing["seconds"]
        results["slots"].append(row)
        print(f"slots: {row}", flush=True)
    stem = write_results(Path(config.out), "profile_search", results, _markdown(results))
    print(f"wrote {stem}.json and .md")
    return results


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _markdown(r: dict) -> str:
    c = r["ceiling"]
    lines = [
        f"# Where DeDUCE's time goes ({r['device']}, {r['pairs']} pairs)",
        "",
        f"Classifier: {r['classifier']['model']['kind']} of width "
        f"{r['classifier']['model'].get('base_width')}, test accuracy "
        f"{r['classifier']['test_accuracy']:.4f}. JAX {r['jax']}. Ceiling ({c['n']}^2 matrix "
        f"product): {c['float32_tflops']:.1f} TFLOP/s float32, "
        f"{c['bfloat16_tflops']:.1f} bfloat16.",
        "",
        "| batch | step ms | network ms | outside network | GFLOP/query (network / step) "
        "| TFLOP/s (network / step) | query-iterations/s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in r["steps"]:
        lines.append(
            f"| {s['batch']} | {s['step_ms']:.2f} | {s['network_ms']:.2f} "
            f"| {s['outside_network_share']:.0%} | {s['network_gflop_per_query']:.3f} / "
            f"{s['step_gflop_per_query']:.3f} | {s['network_tflops']:.1f} / "
            f"{s['step_tflops']:.1f} | {s['query_iterations_per_second']:,.0f} |"
        )
    lines += [
        "",
        "| slots | compile s | search s | wasted | counterfactuals/s |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in r["slots"]:
        lines.append(
            f"| {s['slots']} | {s['compile_seconds']:.1f} | {s['seconds']:.2f} "
            f"| {s['wasted_share']:.0%} | {s['counterfactuals_per_second']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
