"""The generator job: the classifier to explain and the generator trained against it.

A :class:`GeneratorJob` names a data set, the classifier to explain (a
:class:`~jaxcf.training.TrainConfig`) and how to train the generator against it
(:class:`~jaxcf.training.GeneratorTrainConfig`). :func:`train_models` trains
whatever is missing under a workdir (the experiment skeleton's model folders) and loads the
rest; :func:`load_models` loads them, training only when asked::

    <workdir>/models/classifier/checkpoint   the classifier (and its feature density)
    <workdir>/models/generator/checkpoint    the EMA generator, tied to that classifier by digest

Both trainings resume from their ``progress/`` folders after an interruption.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxcf.core import validation
from jaxcf.data import load_dataset
from jaxcf.experiment import ModelSpec, checkpoint_path, load_model, resolve_model
from jaxcf.training import GeneratorTrainConfig, TrainConfig, train_generator

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

    def train(self, workdir: str | Path) -> str:
        """Trains whatever of the classifier and generator is missing under ``workdir`` (see
        :func:`train_models`); returns a one-line summary."""
        _, _, meta = train_models(self, workdir)
        last = meta["history"][-1]
        return (
            f"generator: validation validity {last['val_validity']:.4f}, L1 {last['val_l1']:.4f}; "
            f"saved {checkpoint_path(ModelSpec(train=self.generator), workdir, GENERATOR_DIR)}"
        )


def train_models(
    job: GeneratorJob, workdir: str | Path, *, mesh=None, generator_dir: str = GENERATOR_DIR
) -> tuple[Any, Any, dict]:
    """Trains (or loads) the classifier and the generator of ``job`` under ``workdir``
    (``<workdir>/models/classifier`` and ``<workdir>/models/<generator_dir>``; several jobs
    sharing one classifier keep their generators in folders of their own).

    Returns:
      ``(classifier, generator, generator_metadata)``; the classifier in eval mode.
    """
    clf = resolve_model(CLASSIFIER_DIR, "classifier", ModelSpec(train=job.classifier), workdir)

    def train(where: Path) -> None:
        data = load_dataset(job.dataset, "train")
        test = load_dataset(job.dataset, "test")
        n = len(data) if job.train_examples is None else job.train_examples
        train_generator(
            job.generator,
            clf.model,
            data.inputs[:n],
            test.inputs,
            where,
            metadata={
                "dataset": job.dataset,
                "classifier_checkpoint": str(clf.source),
                "classifier_test_accuracy": clf.metadata.get("test_accuracy"),
                "train_examples": int(n),
            },
            mesh=mesh,
            desc=f"generator on {job.dataset}",
        )

    gen = resolve_model(
        generator_dir,
        "generator",
        ModelSpec(train=job.generator),
        workdir,
        trainer=train,
        classifier=clf.model,
    )
    return clf.model, gen.model, gen.metadata


def load_models(
    job: GeneratorJob,
    workdir: str | Path,
    *,
    train: bool = False,
    generator_dir: str = GENERATOR_DIR,
) -> tuple[Any, Any, dict, dict]:
    """``(classifier, generator, generator_metadata, classifier_metadata)`` of ``job`` under
    ``workdir`` (the generator in ``models/<generator_dir>``); trains what is missing when
    ``train`` (see :func:`train_models`).

    Raises:
      FileNotFoundError: a checkpoint is missing and ``train`` is False.
    """
    missing = [
        str(checkpoint_path(ModelSpec(train=c), workdir, name))
        for name, c in ((CLASSIFIER_DIR, job.classifier), (generator_dir, job.generator))
        if not checkpoint_path(ModelSpec(train=c), workdir, name).exists()
    ]
    if missing and not train:
        raise FileNotFoundError(
            f"no trained model at {', '.join(missing)}: train it first with "
            f"`jaxcf train <train config> --workdir {workdir}` (or set "
            "ExplainConfig.train_missing)"
        )
    classifier, generator, meta = train_models(job, workdir, generator_dir=generator_dir)
    clf_meta = load_model(
        "classifier", checkpoint_path(ModelSpec(train=job.classifier), workdir, CLASSIFIER_DIR)
    )[1]
    return classifier, generator, meta, clf_meta
