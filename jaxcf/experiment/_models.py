"""The models an experiment needs, found or trained the same way by every experiment.

An experiment names each model it needs with a :class:`ModelSpec`: an existing checkpoint (a
training workdir, its ``checkpoint`` folder, or ``"bundled:<name>"`` for one shipped with the
package), or a training config that runs into ``<workdir>/models/<name>`` when that folder holds
no checkpoint yet (and is reused from then on). :func:`resolve_model` returns the loaded model
as a :class:`LoadedModel`, whatever its kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from jaxcf import assets
from jaxcf.experiment._train import train
from jaxcf.models import (
    load_agent,
    load_attgan,
    load_classifier,
    load_diffusion,
    load_generator,
    load_vae,
)
from jaxcf.models.checkpoint import CHECKPOINT_DIR

MODELS_DIR = "models"
"""The folder of an experiment's workdir that holds the models it trained."""

KINDS = ("classifier", "vae", "attgan", "diffusion", "generator", "agent")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Where a model an experiment needs comes from.

    Attributes:
      checkpoint: an existing model: a training workdir or its ``checkpoint`` folder, or
        ``"bundled:<name>"`` for one shipped with the package. Used as it is; never trained.
      train: a training config (:class:`~jaxcf.training.TrainConfig`,
        :class:`~jaxcf.training.VAETrainConfig`, ...; see :func:`jaxcf.experiment.train`) run
        into ``<workdir>/models/<name>`` when no ``checkpoint`` is given and that folder holds
        none yet. A model whose training needs more than its config (a generator needs the
        classifier it explains) is trained by the experiment's own trainer
        (:func:`ensure_trained`).
    """

    checkpoint: str | None = None
    train: Any = None

    def __post_init__(self):
        if self.checkpoint is None and self.train is None:
            raise ValueError("a ModelSpec needs a checkpoint or a training config")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            raise TypeError(f"ModelSpec.checkpoint must be a str, got {self.checkpoint!r}")
        if self.train is not None and not dataclasses.is_dataclass(self.train):
            raise TypeError(f"ModelSpec.train must be a config, got {type(self.train).__name__}")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready for an experiment.

    Attributes:
      name: the experiment's name for it (its folder under ``<workdir>/models``).
      kind: one of :data:`KINDS`.
      model: the model (a classifier in eval mode, or a pure pytree).
      metadata: its checkpoint's metadata.
      source: where it came from, as given (a bundled name stays a name).
      density: a classifier's class-conditional feature density, if it has one.
    """

    name: str
    kind: str
    model: Any
    metadata: dict[str, Any]
    source: str
    density: Any = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for a report: source, kind, architecture, data set, last scores."""
        meta = self.metadata
        out = {"source": self.source, "kind": self.kind, "dataset": meta.get("dataset")}
        for key in ("model", "test_accuracy"):
            if key in meta:
                out[key] = meta[key]
        if meta.get("history"):
            out["last_evaluation"] = meta["history"][-1]
        return out


def model_dir(workdir: str | Path, name: str) -> Path:
    """``<workdir>/models/<name>``: where an experiment trains the model it calls ``name``."""
    return Path(workdir) / MODELS_DIR / name


def checkpoint_path(spec: ModelSpec, workdir: str | Path, name: str) -> Path:
    """The checkpoint folder ``spec`` names (bundled names resolved), or the experiment's own
    ``<workdir>/models/<name>/checkpoint``."""
    if spec.checkpoint is not None:
        path = assets.resolve(spec.checkpoint)
        return path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    return model_dir(workdir, name) / CHECKPOINT_DIR


def ensure_trained(
    name: str,
    spec: ModelSpec,
    workdir: str | Path,
    *,
    trainer: Callable[[Path], Any] | None = None,
    progress: bool = True,
) -> Path:
    """The checkpoint folder of model ``name``, training it first when the experiment owns it
    and it is missing.

    Args:
      name, spec, workdir: the model, where it comes from, the experiment's workdir.
      trainer: trains the model into a given folder, for models whose training needs more than
        their config (a generator needs its classifier); default :func:`jaxcf.experiment.train`
        on ``spec.train``.
      progress: say what is being trained.

    Raises:
      FileNotFoundError: ``spec.checkpoint`` names no checkpoint, or the model is missing in a
        multi-process job (several processes would each train it: train it in one first).
    """
    path = checkpoint_path(spec, workdir, name)
    if path.exists():
        return path
    if spec.checkpoint is not None:
        raise FileNotFoundError(f"model {name!r}: no checkpoint at {spec.checkpoint}")
    if jax.process_count() > 1:
        raise FileNotFoundError(
            f"model {name!r}: no checkpoint at {path}; train it in one process first (several "
            "processes would each train one)"
        )
    where = path.parent
    if progress:
        print(f"no {name} at {where}: training one ({type(spec.train).__name__})", flush=True)
    if trainer is not None:
        trainer(where)
    else:
        summary = train(spec.train, where)
        if progress:
            print(f"{name}: {summary}", flush=True)
    return path


def load_model(kind: str, path: str | Path, **context: Any) -> tuple[Any, dict[str, Any], Any]:
    """Loads a checkpoint of a model family: ``(model, metadata, density)``.

    ``context`` passes what a family's loader checks against: ``image_shape``, ``dataset``,
    ``attribute_names`` (VAE, AttGAN); the ``classifier`` a generator was trained for; the
    ``teacher`` an agent was distilled from.

    Raises:
      ValueError: an unknown kind, or a checkpoint that does not fit (see each loader).
    """
    if kind == "classifier":
        model, density, meta = load_classifier(path)
        return model, meta, density
    if kind == "vae":
        return (*load_vae(path, **context), None)
    if kind == "attgan":
        return (*load_attgan(path, **context), None)
    if kind == "diffusion":
        return (*load_diffusion(path), None)
    if kind == "generator":
        return (*load_generator(path, **context), None)
    if kind == "agent":
        return (*load_agent(path, context["teacher"]), None)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def resolve_model(
    name: str,
    kind: str,
    spec: ModelSpec,
    workdir: str | Path,
    *,
    trainer: Callable[[Path], Any] | None = None,
    progress: bool = True,
    **context: Any,
) -> LoadedModel:
    """Finds (or trains, see :func:`ensure_trained`) and loads model ``name`` of ``kind``.

    A classifier trained on another data set than its training config names is refused.
    """
    path = ensure_trained(name, spec, workdir, trainer=trainer, progress=progress)
    source = spec.checkpoint if spec.checkpoint is not None else str(path)
    # A shipped model loads by its name, so that its content digest is checked.
    bundled = source.startswith(assets.PREFIX)
    model, meta, density = load_model(kind, source if bundled else path, **context)
    want = getattr(spec.train, "dataset", None)
    if spec.checkpoint is not None and want is not None and meta.get("dataset") != want:
        raise ValueError(
            f"model {name!r} at {spec.checkpoint} was trained on {meta.get('dataset')!r}, not "
            f"{want!r}"
        )
    loaded = LoadedModel(name, kind, model, meta, source, density)
    if progress and jax.process_index() == 0:
        described = _describe(loaded)
        print(f"{name}: {described} from {source}", flush=True)
    return loaded


def _describe(m: LoadedModel) -> str:
    meta = m.metadata
    if m.kind == "classifier":
        arch = (meta.get("model") or {}).get("kind", "classifier")
        return f"{arch} (test accuracy {meta.get('test_accuracy', float('nan')):.4f})"
    return m.kind
