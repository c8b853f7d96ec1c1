"""Amortised counterfactual generators end to end: train the classifier and its generator.

A :class:`GeneratorJob` names a data set, the classifier to explain (a
:class:`~jaxcf.training.TrainConfig`) and how to train the generator against it
(:class:`~jaxcf.training.counterfactual.GeneratorTrainConfig`). :func:`train_models` trains
whatever is missing under a workdir and loads the rest::

    <workdir>/classifier/checkpoint   the classifier (and its feature density)
    <workdir>/generator/checkpoint    the EMA generator, tied to that classifier by digest

Both trainings resume from their ``progress/`` folders after an interruption.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxcf import validation
from jaxcf.data import load_dataset
from jaxcf.training import TrainConfig, load_classifier, train_and_evaluate
from jaxcf.training.counterfactual import GeneratorTrainConfig, load_generator, train_generator

CLASSIFIER_DIR = "classifier"
GENERATOR_DIR = "generator"


@dataclasses.dataclass(frozen=True)
class GeneratorJob:
    """Attributes:
    dataset: a registered data set; the generator trains on its ``train`` split and validates
      on its ``test`` split.
    classifier: how to train the classifier to explain (its ``dataset`` must match).
    generator: how to train the generator.
    train_examples: train the generator on the first this many training inputs (``None``:
      all).
    """

    dataset: str
    classifier: TrainConfig
    generator: GeneratorTrainConfig
    train_examples: int | None = None

    def __post_init__(self):
        if self.classifier.dataset != self.dataset:
            raise ValueError(
                f"the classifier trains on {self.classifier.dataset!r}, the job explains "
                f"{self.dataset!r}"
            )
        if self.train_examples is not None:
            validation.at_least(self, 1, "train_examples")


def train_models(job: GeneratorJob, workdir: str | Path, *, mesh=None) -> tuple[Any, Any, dict]:
    """Trains (or loads) the classifier and the generator of ``job`` under ``workdir``.

    Returns:
      ``(classifier, generator, generator_metadata)``; the classifier in eval mode.
    """
    workdir = Path(workdir)
    clf_dir = workdir / CLASSIFIER_DIR
    if not (clf_dir / "checkpoint").exists():
        train_and_evaluate(job.classifier, clf_dir)
    classifier, _, clf_meta = load_classifier(clf_dir / "checkpoint")

    gen_dir = workdir / GENERATOR_DIR
    if not (gen_dir / "checkpoint").exists():
        train = load_dataset(job.dataset, "train")
        test = load_dataset(job.dataset, "test")
        n = len(train) if job.train_examples is None else job.train_examples
        train_generator(
            job.generator,
            classifier,
            train.inputs[:n],
            test.inputs,
            gen_dir,
            metadata={
                "dataset": job.dataset,
                "classifier_checkpoint": f"{CLASSIFIER_DIR}/checkpoint",
                "classifier_test_accuracy": clf_meta.get("test_accuracy"),
                "train_examples": int(n),
            },
            mesh=mesh,
            desc=f"generator on {job.dataset}",
        )
    generator, meta = load_generator(gen_dir, classifier=classifier)
    return classifier, generator, meta
