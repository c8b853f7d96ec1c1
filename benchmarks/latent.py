"""Counterfactuals per second of the latent searches, batched against a per-query loop.

    python -m benchmarks.latent [--vae workdir/revise_mnist/vae]
                                [--classifier bundled:demo_resnet_w32]
                                [--attgan bundled:attgan_celeba]
                                [--face-classifier workdir/aip_celeba/classifier]
                                [--iterations 100] [--batch 64] [--face-batch 16]
                                [--loop-queries 8] [--repeats 3] [--out benchmarks/results]

* ``revise`` (REVISE, per-query Adam) through the MNIST VAE of ``train/configs/vae_mnist.py``
  (``explain/deduce/configs/revise_mnist.py`` trains it) explaining the network that protocol
  explains
  (the bundled width-32 ResNet-18; any classifier checkpoint works), on MNIST test digits;
* ``aip`` (AIP, plain decaying steps as published) through the AttGAN-like model (the shipped
  one by default) explaining the CelebA gender CNN (``explain/aip/configs/aip_celeba.py`` trains
  it, about 4 minutes), on held-out faces (skipped, and said so, while it is not trained).

Every query runs exactly ``--iterations`` updates (the stopping threshold is set to 1, which a
softmax does not reach), so both ways do the same work and the ratio is the batching's alone:

* **batched**: the explainer on the whole batch as one jitted call; compilation
  (``jax.jit(...).lower(...).compile()``) timed apart; steady state the median of
  ``--repeats`` calls, each ended by ``jax.block_until_ready``;
* **per-query loop**: the same jitted explainer called on one query at a time in a Python loop
  (compiled before the clock starts), as the papers' code runs.

Results go to ``<out>/latent_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import (
    compile_timed,
    environment,
    one_query_per_call,
    timed,
    write_results,
)
from jaxcf import assets
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.methods import AIPConfig, REVISEConfig, make
from jaxcf.models import load_attgan, load_classifier, load_vae


def _call(e, x, t, k):
    return e(x, t, k)


def bench(explainer, x, t, repeats: int, loop_queries: int) -> dict:
    """Batched (compile apart, median of ``repeats``) and per-query-loop throughput."""
    xs, ts = explainer.check(x, t)
    keys = jax.random.split(jax.random.key(0), len(x))
    compiled, compile_s = compile_timed(_call, explainer, xs, ts, keys)
    result, _ = timed(compiled, explainer, xs, ts, keys)  # first call, untimed
    times = [timed(compiled, explainer, xs, ts, keys)[1] for _ in range(repeats)]
    seconds = float(np.median(times))
    k = min(loop_queries, len(x))
    first, loop_s = one_query_per_call(jax.jit(_call), explainer, xs[:k], ts[:k], keys[:k])
    batched = len(x) / seconds
    loop = k / loop_s
    return {
        "batch": len(x),
        "compile_seconds": compile_s,
        "seconds": seconds,
        "repeats_seconds": times,
        "counterfactuals_per_second": batched,
        "iterations": int(np.max(np.asarray(result.n_iter))),
        "loop_queries": k,
        "loop_first_call_seconds": first,
        "loop_seconds": loop_s,
        "loop_counterfactuals_per_second": loop,
        "batched_over_loop": batched / loop,
    }


def _revise(args) -> dict | None:
    if not (args.vae / "checkpoint").exists():
        print(f"no VAE in {args.vae}: train it with train/configs/vae_mnist.py", flush=True)
        return None
    classifier, _, cmeta = load_classifier(args.classifier)
    vae, vmeta = load_vae(args.vae, image_shape=tuple(cmeta["model"]["input_shape"]))
    test = load_dataset(cmeta["dataset"], "test")
    x = np.asarray(test.inputs[: args.batch], np.float32)
    t = ((metrics.predict(classifier, x) + 1) % test.num_classes).astype(np.int32)
    config = REVISEConfig(threshold=1.0, max_iter=args.iterations)
    print(f"[revise] {len(x)} digits x {args.iterations} iterations...", flush=True)
    out = bench(
        make("revise", config, classifier=classifier, vae=vae),
        x,
        t,
        args.repeats,
        args.loop_queries,
    )
    return {
        **out,
        "data": cmeta["dataset"],
        "models": {
            "vae": str(args.vae),
            "latent_dim": vmeta["latent_dim"],
            "classifier": str(args.classifier),
        },
        "config": dataclasses.asdict(config),
    }


def _aip(args) -> dict | None:
    folders = [args.face_classifier]
    if not args.attgan.startswith(assets.PREFIX):
        folders.append(Path(args.attgan))
    missing = [p for p in folders if not (p / "checkpoint").exists()]
    if missing:
        print(f"no checkpoint in {', '.join(map(str, missing))}: aip skipped", flush=True)
        return None
    classifier, _, cmeta = load_classifier(args.face_classifier / "checkpoint")
    model, ameta = load_attgan(args.attgan, image_shape=tuple(cmeta["model"]["input_shape"]))
    test = load_dataset("celeba", "test")
    x = np.asarray(test.inputs[: args.face_batch], np.float32)
    t = (1 - metrics.predict(classifier, x)).astype(np.int32)
    # A fixed amount of work: no query reaches the target, and none stops when its updates
    # round to nothing.
    config = AIPConfig(threshold=1.0, max_iter=args.iterations, stop_when_stalled=False)
    print(f"[aip] {len(x)} faces x {args.iterations} iterations...", flush=True)
    out = bench(
        make("aip", config, classifier=classifier, attribute_model=model),
        x,
        t,
        args.repeats,
        args.loop_queries,
    )
    return {
        **out,
        "data": "celeba",
        "models": {
            "attgan": str(args.attgan),
            "latent_dim": ameta["latent_dim"],
            "classifier": str(args.face_classifier),
        },
        "config": dataclasses.asdict(config),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, default=Path("workdir/revise_mnist/vae"))
    parser.add_argument(
        "--classifier", default="bundled:demo_resnet_w32", help="checkpoint dir or bundled name"
    )
    parser.add_argument(
        "--attgan", default="bundled:attgan_celeba", help="AttGAN workdir or bundled name"
    )
    parser.add_argument(
        "--face-classifier", type=Path, default=Path("workdir/aip_celeba/classifier")
    )
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--face-batch", type=int, default=16)
    parser.add_argument("--loop-queries", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    methods = {name: fn(args) for name, fn in (("revise", _revise), ("aip", _aip))}
    results = {**environment(), "methods": {k: v for k, v in methods.items() if v}}
    if not results["methods"]:
        raise SystemExit("nothing to benchmark: no trained models found (see --help)")
    write_results(args.out, "latent", results, _markdown(results))
    print(_markdown(results))


def _markdown(r: dict) -> str:
    lines = [
        f"# Latent searches on {r['device']} ({r['host']['cpus']} host CPUs, jax {r['jax']})\n",
        "Every query runs the same fixed number of updates (no early stop), so batched and "
        "looped do the same work. Steady state: compilation timed apart, every timing ended by "
        "`jax.block_until_ready`; batched = the median of the repeats of one jitted call over "
        "the batch; loop = the same jitted explainer on one query per call.\n",
        "| method | data | code | iterations | batch | compile s | batched CF/s | loop CF/s | "
        "batched / loop |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in r["methods"].items():
        lines.append(
            f"| {name} | {m['data']} | {m['models']['latent_dim']} | {m['iterations']} | "
            f"{m['batch']} | {m['compile_seconds']:.1f} | "
            f"{m['counterfactuals_per_second']:.2f} | "
            f"{m['loop_counterfactuals_per_second']:.2f} | {m['batched_over_loop']:.1f}x |"
        )
    missing = [k for k in ("revise", "aip") if k not in r["methods"]]
    if missing:
        lines.append(f"\nNot measured (models not trained when this ran): {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
