"""Counterfactual data augmentation (AIP section 4.6.2), per seed: the age classifier trained on
a seeded subset of the training faces, AIP counterfactuals of some of them towards the other age
class (the flipped ones labelled with that class) added, and a classifier trained again from the
same seed on both; test accuracy with and without, mean +/- standard deviation over the seeds.
Each seed's summary is kept under ``<workdir>/augment/seed_<s>`` and reused on a rerun."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from explain.aip.job import AIPJob, AugmentConfig
from explain.aip.published import PUBLISHED_AUGMENTATION
from jaxcf import runner
from jaxcf.core import to_jsonable, write_json_atomic
from jaxcf.data import load_dataset
from jaxcf.methods import MethodSpec, make
from jaxcf.training import ClassifierTask, TrainConfig, fit


def _train_on(config: TrainConfig, images, labels, test) -> tuple[Any, float]:
    task = ClassifierTask(config, test.inputs, test.labels)
    result = fit(task, (images, labels), config.loop_config(), desc=f"age classifier {len(images)}")
    model = result.modules["model"]
    model.eval()
    return model, float(result.history[-1]["test_accuracy"])


def finished_seeds(
    aug: AugmentConfig, workdir: Path, spec: MethodSpec, recorded: dict
) -> dict[int, dict]:
    """seed -> summary of the seeds already done in ``workdir``.

    Raises:
      ValueError: a finished seed was made by another AIP than ``recorded`` (``spec`` as
        JSON).
    """
    found = {}
    for s in aug.seeds:
        done = workdir / f"seed_{s}" / "summary.json"
        if done.exists():
            summary = json.loads(done.read_text())
            if _with_new_defaults(summary.get("method"), spec) != recorded:
                raise ValueError(
                    f"{done} was made with AIP {summary.get('method')}, not {recorded}; "
                    f"delete {done.parent} to rerun it"
                )
            found[s] = summary
    return found


def _with_new_defaults(method: Any, spec: MethodSpec) -> Any:
    """A recorded method with the config fields added since it was recorded at their defaults:
    a new field's default keeps the old behaviour, so such a record still stands."""
    if not isinstance(method, dict) or not isinstance(method.get("config"), dict):
        return method
    defaults = to_jsonable(dataclasses.asdict(type(spec.resolved_config())()))
    return {**method, "config": {**defaults, **method["config"]}}


def recorded_method(aug: AugmentConfig, aip: MethodSpec) -> tuple[MethodSpec, dict]:
    """The AIP whose counterfactuals are added (``aug.method``, else ``aip``) and its record as
    JSON (what each seed's summary holds)."""
    spec = aug.method or aip
    return spec, to_jsonable(dataclasses.asdict(spec))


def run_augmentation(job: AIPJob, attgan: Any, workdir: Path, aip: MethodSpec) -> dict[str, Any]:
    """The augmentation experiment; one ``seed_<s>/summary.json`` per seed (reused on rerun)."""
    aug = job.augment
    aip, recorded = recorded_method(aug, aip)
    finished = finished_seeds(aug, workdir, aip, recorded)
    train = load_dataset("celeba_young", "train")
    test = load_dataset("celeba_young", "test")
    seeds = []
    for s in aug.seeds:
        folder = workdir / f"seed_{s}"
        done = folder / "summary.json"
        if s in finished:
            seeds.append(finished[s])
            continue
        config = dataclasses.replace(job.age_classifier.train, seed=s, train_examples=aug.subset)
        pick = np.sort(np.random.default_rng(s).permutation(len(train.labels))[: aug.subset])
        xs, ys = train.inputs[pick], train.labels[pick]
        base, base_acc = _train_on(config, xs, ys, test)
        explainer = make(aip, classifier=base, attribute_model=attgan)
        flip = (1 - ys[: aug.augmented]).astype(np.int32)
        r = runner.run(
            explainer,
            xs[: aug.augmented],
            flip,
            folder / "aip",
            config=job.runner,
            seed=s,
            desc=f"aip augmentation seed {s}",
        )
        ok = r.success.astype(bool)
        x_aug = np.concatenate([xs, r.x_cf[ok].astype(xs.dtype)])
        y_aug = np.concatenate([ys, flip[ok].astype(ys.dtype)])
        _, aug_acc = _train_on(config, x_aug, y_aug, test)
        summary = {
            "seed": s,
            "method": recorded,
            "train_faces": int(len(xs)),
            "counterfactuals_added": int(ok.sum()),
            "accuracy_without": base_acc,
            "accuracy_with": aug_acc,
        }
        write_json_atomic(done, summary)
        seeds.append(summary)
    without = np.array([s["accuracy_without"] for s in seeds])
    with_ = np.array([s["accuracy_with"] for s in seeds])
    ddof = 1 if len(seeds) > 1 else 0
    return {
        "config": dataclasses.asdict(aug),
        "seeds": seeds,
        "accuracy_without": {"mean": float(without.mean()), "std": float(without.std(ddof=ddof))},
        "accuracy_with": {"mean": float(with_.mean()), "std": float(with_.std(ddof=ddof))},
        "gain": {
            "mean": float((with_ - without).mean()),
            "std": float((with_ - without).std(ddof=ddof)),
        },
        "published": PUBLISHED_AUGMENTATION,
    }
