"""Counterfactuals per second of the latent searches, batched against a per-query loop.

    jaxcf bench latent [--config.vae=workdir/revise_mnist/models/vae]
        [--config.face_classifier=workdir/aip_celeba/models/classifier] [--config.iterations=100]

* ``revise`` (REVISE, per-query Adam) through the MNIST VAE of ``train/configs/vae_mnist.py``
  (``explain/deduce/configs/revise_mnist.py`` trains it) explaining the network that protocol
  explains
  (the bundled width-32 ResNet-18; any classifier checkpoint works), on MNIST test digits;
* ``aip`` (AIP, plain decaying steps as published) through the AttGAN-like model (the shipped
  one by default) explaining the CelebA gender CNN (``explain/aip/configs/aip_celeba.py`` trains
  it, about 4 minutes), on held-out faces (skipped, and said so, while it is not trained).

Every query runs exactly ``--config.iterations`` updates (the stopping threshold is set to 1,
which a softmax does not reach), so both ways do the same work and the ratio is the batching's
alone:

* **batched**: the explainer on the whole batch as one jitted call; compilation
  (``jax.jit(...).lower(...).compile()``) timed apart; steady state the median of
  ``--config.repeats`` calls, each ended by ``jax.block_until_ready``;
* **per-query loop**: the same jitted explainer called on one query at a time in a Python loop
  (compiled before the clock starts), as the papers' code runs.

Results go to ``<out>/latent_<device>.{json,md}``; see :class:`Config` for the settings.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import environment, measure_call, one_query_per_call, write_results
from jaxcf import assets
from jaxcf.core import validation
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.methods import AIPConfig, REVISEConfig, make
from jaxcf.models import load_attgan, load_classifier, load_vae


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench latent``.

    Attributes:
      vae: REVISE's MNIST VAE: a training workdir (with ``checkpoint/``).
      classifier: the classifier REVISE explains: checkpoint dir or bundled name.
      attgan: AIP's attribute model: AttGAN workdir or bundled name.
      face_classifier: the CelebA classifier AIP explains: a training workdir (with
        ``checkpoint/``).
      iterations: updates every query runs.
      batch: MNIST queries of REVISE's batched call.
      face_batch: CelebA queries of AIP's batched call.
      loop_queries: queries of the per-query loop.
      repeats: timed batched calls (their median counts).
      out: folder the results are written to.
    """

    vae: str = "workdir/revise_mnist/models/vae"
    classifier: str = "bundled:demo_resnet_w32"
    attgan: str = "bundled:attgan_celeba"
    face_classifier: str = "workdir/aip_celeba/models/classifier"
    iterations: int = 100
    batch: int = 64
    face_batch: int = 16
    loop_queries: int = 8
    repeats: int = 3
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(self, 1, "iterations", "batch", "face_batch", "loop_queries", "repeats")


def _call(e, x, t, k):
    return e(x, t, k)


def bench(explainer, x, t, repeats: int, loop_queries: int) -> dict:
    """Batched (compile apart, median of ``repeats``) and per-query-loop throughput."""
    xs, ts = explainer.check(x, t)
    keys = jax.random.split(jax.random.key(0), len(x))
    result, timing = measure_call(_call, explainer, xs, ts, keys, repeats=repeats)
    k = min(loop_queries, len(x))
    first, loop_s = one_query_per_call(jax.jit(_call), explainer, xs[:k], ts[:k], keys[:k])
    batched = len(x) / timing["seconds"]
    loop = k / loop_s
    return {
        "batch": len(x),
        "compile_seconds": timing["compile_seconds"],
        "seconds": timing["seconds"],
        "repeats_seconds": timing["repeats_seconds"],
        "counterfactuals_per_second": batched,
        "iterations": int(np.max(np.asarray(result.n_iter))),
        "loop_queries": k,
        "loop_first_call_seconds": first,
        "loop_seconds": loop_s,
        "loop_counterfactuals_per_second": loop,
        "batched_over_loop": batched / loop,
    }


def _revise(config: Config) -> dict | None:
    vae_dir = Path(config.vae)
    if not (vae_dir / "checkpoint").exists():
        print(f"no VAE in {vae_dir}: train it with train/configs/vae_mnist.py", flush=True)
        return None
    classifier, _, cmeta = load_classifier(config.classifier)
    vae, vmeta = load_vae(vae_dir, image_shape=tuple(cmeta["model"]["input_shape"]))
    test = load_dataset(cmeta["dataset"], "test")
    x = np.asarray(test.inputs[: config.batch], np.float32)
    t = ((metrics.predict(classifier, x) + 1) % test.num_classes).astype(np.int32)
    method = REVISEConfig(threshold=1.0, max_iter=config.iterations)
    print(f"[revise] {len(x)} digits x {config.iterations} iterations...", flush=True)
    out = bench(
        make("revise", method, classifier=classifier, vae=vae),
        x,
        t,
        config.repeats,
        config.loop_queries,
    )
    return {
        **out,
        "data": cmeta["dataset"],
        "models": {
            "vae": str(vae_dir),
            "latent_dim": vmeta["latent_dim"],
            "classifier": str(config.classifier),
        },
        "config": dataclasses.asdict(method),
    }


def _aip(config: Config) -> dict | None:
    face_classifier = Path(config.face_classifier)
    folders = [face_classifier]
    if not config.attgan.startswith(assets.PREFIX):
        folders.append(Path(config.attgan))
    missing = [p for p in folders if not (p / "checkpoint").exists()]
    if missing:
        print(f"no checkpoint in {', '.join(map(str, missing))}: aip skipped", flush=True)
        return None
    classifier, _, cmeta = load_classifier(face_classifier / "checkpoint")
    model, ameta = load_attgan(config.attgan, image_shape=tuple(cmeta["model"]["input_shape"]))
    test = load_dataset("celeba", "test")
    x = np.asarray(test.inputs[: config.face_batch], np.float32)
    t = (1 - metrics.predict(classifier, x)).astype(np.int32)
    # A fixed amount of work: no query reaches the target, and none stops when its updates
    # round to nothing.
    method = AIPConfig(threshold=1.0, max_iter=config.iterations, stop_when_stalled=False)
    print(f"[aip] {len(x)} faces x {config.iterations} iterations...", flush=True)
    out = bench(
        make("aip", method, classifier=classifier, attribute_model=model),
        x,
        t,
        config.repeats,
        config.loop_queries,
    )
    return {
        **out,
        "data": "celeba",
        "models": {
            "attgan": str(config.attgan),
            "latent_dim": ameta["latent_dim"],
            "classifier": str(face_classifier),
        },
        "config": dataclasses.asdict(method),
    }


def run(config: Config) -> dict:
    """Batched against per-query-loop throughput (counterfactuals per second) of each latent
    search whose models are trained; writes and returns the results."""
    methods = {name: fn(config) for name, fn in (("revise", _revise), ("aip", _aip))}
    results = {**environment(), "methods": {k: v for k, v in methods.items() if v}}
    if not results["methods"]:
        raise SystemExit("nothing to benchmark: no trained models found (see --help)")
    write_results(Path(config.out), "latent", results, _markdown(results))
    print(_markdown(results))
    return results


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


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
