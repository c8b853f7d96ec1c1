"""The classifier-guided diffusion protocol: counterfactuals of test images from a trained DDPM
and a classifier, the one-step (DVCE-style) and rollout (DiME-style) samplers side by side,
against an unguided sample from the same start step.

For ``queries`` test images (a seeded permutation) and targets drawn uniformly among the other
classes (:func:`jaxcf.experiment.flip_targets`), the protocol runs

* ``guided`` — the config's sampler (one-step by default) on every query, through the runner;
* ``rollout`` — the DiME-style sampler on the first ``rollout_queries`` queries (its cost grows
  with the square of the steps);
* ``unguided`` — the same start (query noised to ``t0`` with the same keys) denoised without
  guidance, on every query: the baseline a counterfactual should beat on closeness;

and reports per method: flip rate (target probability >= the threshold), L1 and L2 to the query
(intensity units summed over pixels), denoiser calls per counterfactual (retries included),
seconds per counterfactual (steady state: the runner's timing of its chunks after the first,
which compiled), and an
FID-style distance between the counterfactuals and real test images of their target classes
computed on the classifier's penultimate features (no Inception weights offline; the real set
is drawn to match the target classes' counts). Figures: query / counterfactual / difference
grids per method, and samples of the model.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcf import experiment, report, runner
from jaxcf.core import Retry, to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.data import load_dataset
from jaxcf.evaluation import distribution, metrics
from jaxcf.experiment import ModelSpec, flip_targets, resolve_model, steady_timing
from jaxcf.methods import GuidedDiffusionConfig, make

__all__ = ["GuidedExplainConfig", "run_guided_protocol"]


@dataclasses.dataclass(frozen=True)
class GuidedExplainConfig:
    """Attributes:
    classifier: the classifier to explain (trained into ``<workdir>/models/classifier`` when
      it names no checkpoint and that folder holds none).
    diffusion: the diffusion model (likewise ``<workdir>/models/diffusion``; about 80 minutes of
      training on 2 CPU cores for the MNIST DDPM).
    guided: the main sampler's config.
    rollout: the DiME-style sampler's config (``None``: skip it).
    queries: test images explained.
    rollout_queries: how many of them the rollout sampler explains.
    seed: query order and target seed.
    runner: chunking of the runs.
    title: the report's heading.
    """

    classifier: ModelSpec
    diffusion: ModelSpec
    guided: GuidedDiffusionConfig = GuidedDiffusionConfig()
    rollout: GuidedDiffusionConfig | None = None
    queries: int = 200
    rollout_queries: int = 50
    seed: int = 0
    runner: runner.RunnerConfig = runner.RunnerConfig(chunk_size=50)
    title: str = "Classifier-guided diffusion counterfactuals"

    def __post_init__(self):
        if self.queries < 1 or self.rollout_queries < 0:
            raise ValueError("queries must be >= 1 and rollout_queries >= 0")
        if self.rollout is not None and self.rollout.clean_estimate != "rollout":
            raise ValueError("GuidedExplainConfig.rollout must use clean_estimate='rollout'")

    def run(self, workdir: str | Path) -> dict[str, Any]:
        """Runs the protocol into ``workdir`` (see :func:`run_guided_protocol`)."""
        return run_guided_protocol(self, workdir)


def _calls(results, per_attempt: int) -> np.ndarray:
    """Denoiser calls per counterfactual: the attempts a retried query ran, each costing
    ``per_attempt`` calls."""
    attempts = results.extras.get("attempt")
    return per_attempt * (1 if attempts is None else np.asarray(attempts) + 1)


def _fid(classifier, x_cf: np.ndarray, target: np.ndarray, test, seed: int) -> float:
    """FID-style distance on the classifier's features: counterfactuals against real test
    images drawn (seeded, with replacement where a class runs short) to the same class counts."""
    rng = np.random.default_rng(seed)
    picks = []
    for c, n in zip(*np.unique(target, return_counts=True), strict=True):
        pool = np.nonzero(test.labels == c)[0]
        picks.append(rng.choice(pool, size=n, replace=n > len(pool)))
    real = test.inputs[np.concatenate(picks)]
    feats = jax.jit(lambda m, a: m.features(a))
    return distribution.frechet_distance(
        np.asarray(feats(classifier, x_cf)), np.asarray(feats(classifier, real))
    )


def _row(name, classifier, x, x_cf, target, success, calls, seconds, test, seed) -> dict:
    l1 = metrics.l1(x, x_cf)
    return {
        "method": name,
        "n": int(len(x)),
        "flip_rate": float(np.mean(success)),
        "l1": float(np.mean(l1)),
        "l1_flipped": float(np.mean(l1[success])) if success.any() else None,
        "l2": float(np.mean(metrics.l2(x, x_cf))),
        "denoiser_calls": float(np.mean(calls)),
        "seconds_per_cf": seconds / len(x),
        "fid_classifier_features": _fid(classifier, x_cf, target, test, seed)
        if len(x) >= 2
        else None,
    }


def _run(label: str, explainer, x, t, workdir: Path, config: GuidedExplainConfig):
    """The runner's results (a finished run in the run store is reused) and its steady-state
    seconds for all of them (chunks after the first, which compiled, scaled to every
    counterfactual)."""
    results = experiment.run_explainer(
        label, explainer, x, t, workdir, config=config.runner, seed=config.seed
    )
    return results, steady_timing(results)["seconds_per_cf"] * len(x)


def run_guided_protocol(config: GuidedExplainConfig, workdir: str | Path) -> dict[str, Any]:
    """Runs the protocol; writes ``<workdir>/report/report.{md,json}`` and figures; returns
    the report's dict."""
    workdir = Path(workdir)
    out = workdir / experiment.REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    diffusion = resolve_model("diffusion", "diffusion", config.diffusion, workdir)
    model, dmeta = diffusion.model, diffusion.metadata
    clf = resolve_model("classifier", "classifier", config.classifier, workdir)
    classifier, cmeta = clf.model, clf.metadata
    test = load_dataset(dmeta["dataset"], "test")
    order = np.random.default_rng(config.seed).permutation(len(test.inputs))[: config.queries]
    x = np.asarray(test.inputs[order], np.float32)
    pred = metrics.predict(classifier, x)
    target = flip_targets(pred, test.num_classes, config.seed)

    guided = make("guided_diffusion", config.guided, classifier=classifier, diffusion=model)
    inner = guided.explainer if isinstance(guided, Retry) else guided
    res, seconds = _run("guided", guided, x, target, workdir, config)
    rows = {
        "guided": _row(
            "guided (" + config.guided.clean_estimate.replace("_", "-") + ")",
            classifier,
            x,
            res.x_cf,
            target,
            np.asarray(res.success),
            _calls(res, inner.denoiser_calls),
            seconds,
            test,
            config.seed,
        )
    }
    cfs = {"guided": res.x_cf}

    # Unguided: the same start step, keys and sampler, no guidance (keys as the runner's).
    keys = runner.query_keys(config.seed, len(x))
    if isinstance(guided, Retry):  # attempt 0 folds its index in
        keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 0)
    unguided = jax.jit(lambda e, a, k: e.unguided(a, k))
    xs = jax.numpy.asarray(x)
    jax.block_until_ready(unguided(inner, xs, keys))  # compiles; the next call is timed
    start = time.perf_counter()
    x_un = np.asarray(jax.block_until_ready(unguided(inner, xs, keys)))
    seconds_un = time.perf_counter() - start
    flipped_un = metrics.predict(classifier, x_un) == target
    rows["unguided"] = _row(
        "unguided, same start",
        classifier,
        x,
        x_un,
        target,
        flipped_un,
        np.full(len(x), inner.first + 1),
        seconds_un,
        test,
        config.seed,
    )
    cfs["unguided"] = x_un

    if config.rollout is not None and config.rollout_queries:
        k = min(config.rollout_queries, len(x))
        roll = make("guided_diffusion", config.rollout, classifier=classifier, diffusion=model)
        inner_r = roll.explainer if isinstance(roll, Retry) else roll
        res_r, seconds_r = _run("rollout", roll, x[:k], target[:k], workdir, config)
        rows["rollout"] = _row(
            "rollout (DiME-style)",
            classifier,
            x[:k],
            res_r.x_cf,
            target[:k],
            np.asarray(res_r.success),
            _calls(res_r, inner_r.denoiser_calls),
            seconds_r,
            test,
            config.seed,
        )
        # The one-step sampler on the same queries, for a like-for-like flip-rate comparison.
        rows["guided_on_rollout_queries"] = _row(
            rows["guided"]["method"] + f", first {k}",
            classifier,
            x[:k],
            res.x_cf[:k],
            target[:k],
            np.asarray(res.success)[:k],
            _calls(res, inner.denoiser_calls)[:k],
            seconds * k / len(x),
            test,
            config.seed,
        )
        cfs["rollout"] = res_r.x_cf

    doc = {
        "title": config.title,
        "device": jax.devices()[0].platform,
        "dataset": dmeta["dataset"],
        "queries": int(len(x)),
        "classifier": {"model": cmeta.get("model"), "test_accuracy": cmeta.get("test_accuracy")},
        "diffusion": {
            "unet": dmeta["configs"]["unet"],
            "schedule": dmeta["schedule"],
            "train_steps": dmeta["history"][-1]["step"],
            "val_loss": dmeta["history"][-1]["val_loss"],
        },
        "guided_config": dataclasses.asdict(config.guided),
        "rollout_config": None if config.rollout is None else dataclasses.asdict(config.rollout),
        "start_index": int(inner.first),
        "rows": rows,
    }
    write_json_atomic(out / "report.json", to_jsonable(doc))
    write_text_atomic(out / "report.md", _markdown(doc))
    _figures(out, x, target, cfs, classifier)
    return doc


def _figures(out: Path, x, target, cfs: dict[str, np.ndarray], classifier) -> None:
    n = min(8, len(x))
    originals = x[:n]
    methods = {k: np.asarray(v[:n]) for k, v in cfs.items() if len(v) >= n}
    report.counterfactual_grid(
        out / "guided_grid.png",
        originals,
        methods,
        target[:n],
        pred=metrics.predict(classifier, originals),
        n=n,
    )


def _fmt(v, spec: str) -> str:
    return "\u2014" if v is None else format(v, spec)


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"# {doc['title']} ({doc['dataset']}, {doc['queries']} queries, {doc['device']})\n",
        f"Classifier test accuracy {doc['classifier']['test_accuracy']:.4f}; diffusion model "
        f"trained {doc['diffusion']['train_steps']} steps (held-out noise loss "
        f"{doc['diffusion']['val_loss']:.4f}); start index {doc['start_index']} of the "
        f"{doc['guided_config']['num_steps']}-step respaced schedule "
        f"(t0 = {doc['guided_config']['start']:.0%} of the process).\n",
        "| method | queries | flip rate | L1 | L1 (flipped) | L2 | denoiser calls / CF | "
        "s / CF | FID-style (classifier features) |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["rows"].values():
        lines.append(
            f"| {r['method']} | {r['n']} | {100 * r['flip_rate']:.1f}% | {r['l1']:.2f} | "
            f"{_fmt(r['l1_flipped'], '.2f')} | {r['l2']:.2f} | {r['denoiser_calls']:.1f} | "
            f"{r['seconds_per_cf']:.3f} | {_fmt(r['fid_classifier_features'], '.2f')} |"
        )
    lines.append(
        "\nFlip: the classifier gives the target class probability >= the threshold (the "
        "unguided row: predicts the target). L1 / L2: summed over the 784 pixels, intensities "
        "in [0, 1]. Denoiser calls include retried attempts. FID-style: the Fréchet distance of "
        "Gaussians fitted to the classifier's penultimate features of the counterfactuals and "
        "of real test images of the target classes (same class counts); Inception features are "
        "not available offline, so it is comparable only within this table. It pools all "
        "classes: a set with the targets' class mix scores low even when no image is in its own "
        "pair's target class, which is why the unguided row (still the queries' classes, whose "
        "mix is about as uniform as the targets') scores lowest; compare it between the guided "
        "rows only."
    )
    return "\n".join(lines) + "\n"
