"""The protocol's four models: loaded, or trained into ``<workdir>/models`` where missing
(:func:`load_models`), what the report says of each, and the jitted calls of them (encode,
reconstruct) applied to images in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from explain.aip.job import AIPJob
from jaxcf.evaluation.metrics import chunked
from jaxcf.experiment import LoadedModel, checkpoint_path, resolve_model

# The experiment's name for each model (its folder under <workdir>/models) and its family.
_MODELS = (
    ("classifier", "classifier", "classifier"),
    ("age_classifier", "classifier_young", "classifier"),
    ("vae", "vae", "vae"),
    ("attgan", "attgan", "attgan"),
)


def _info(m: LoadedModel) -> dict[str, Any]:
    """What the report says about a model: where it came from and how well it does."""
    if m.kind == "classifier":
        return {
            "dir": m.source,
            "test_accuracy": m.metadata["test_accuracy"],
            "model": m.metadata.get("model"),
            "dataset": m.metadata.get("dataset"),
        }
    return {"dir": m.source, "last_evaluation": (m.metadata.get("history") or [{}])[-1]}


def load_models(job: AIPJob, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The four models (trained into ``<workdir>/models`` first where missing):
    ``(models, info)``.

    Raises:
      FileNotFoundError: a checkpoint the job names is not there (checked before anything is
        trained).
      ValueError: a named model was trained on other data or images.
    """
    for field, _, _ in _MODELS:
        given = getattr(job, field).checkpoint
        if given is not None and not checkpoint_path(getattr(job, field), workdir, field).exists():
            raise FileNotFoundError(f"AIPJob.{field}: no checkpoint in {given}")
    shape = tuple(job.classifier.train.model.input_shape)
    loaded = {}
    for field, name, kind in _MODELS:
        context = {} if kind == "classifier" else {"image_shape": shape, "dataset": "celeba"}
        loaded[field] = resolve_model(name, kind, getattr(job, field), workdir, **context)
    models = {
        "classifier": loaded["classifier"].model,
        "age": loaded["age_classifier"].model,
        "vae": loaded["vae"].model,
        "attribute_model": loaded["attgan"].model,
    }
    info = {name: _info(loaded[field]) for field, name, _ in _MODELS}
    return models, info


# ----------------------------------------------------------------------------- batched calls


@jax.jit
def encode(model, x):
    """``model.encode(x [B, H, W, C]) -> [B, k]`` codes, compiled once per model and shape."""
    return model.encode(x)


@jax.jit
def reconstruct(model, x):
    """``[B, H, W, C]`` reconstructions of ``x [B, H, W, C]``, compiled once per model and shape."""
    return model.reconstruct(x)  # VAEModel and AttributeModel: decode(encode(x)) (own attributes)


def apply_batched(fn, model, x: np.ndarray, batch: int = 100) -> np.ndarray:
    """``fn(model, x)`` over ``x [N, ...]`` (as float32) ``batch`` rows at a time, as one array."""
    return chunked(lambda xb: fn(model, xb), batch, np.asarray(x, np.float32))
