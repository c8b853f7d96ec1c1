"""What every saved generative model shares: a workdir whose ``checkpoint/`` folder holds the
weights and metadata naming the model's kind, its config, the image shape and the data set.
The loaders (:func:`jaxcf.models.load_vae`, :func:`jaxcf.models.load_attgan`)
open a checkpoint through :func:`open_checkpoint` and refuse a model that does not fit the
caller through :func:`check_fits`, so both say the same things in the same words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxcf.models import checkpoint
from jaxcf.models.checkpoint import CHECKPOINT_DIR


def open_checkpoint(
    directory: str | Path, *, kind: str, entry: str, from_dict: Callable[[dict], Any], label: str
) -> tuple[Path, dict[str, Any], Any]:
    """``(checkpoint folder, metadata, config)`` of a model saved with ``meta["kind"] == kind``
    and its config under ``meta["configs"][entry]``; ``directory`` is the workdir or its
    ``checkpoint`` folder; ``label`` names the model in errors (e.g. ``"VAE"``).

    Raises:
      FileNotFoundError: no checkpoint there.
      ValueError: another kind of checkpoint, or a config ``from_dict`` cannot read.
    """
    directory = Path(directory)
    if (directory / CHECKPOINT_DIR).is_dir():
        directory = directory / CHECKPOINT_DIR
    meta = checkpoint.read_metadata(directory)
    stored = meta.get("configs", {}).get(entry)
    if meta.get("kind") != kind or stored is None:
        raise ValueError(
            f"{directory} is not {_article(label)} {label} checkpoint (kind "
            f"{meta.get('kind')!r}, entries {sorted(meta.get('entries', {}))})"
        )
    try:
        config = from_dict(stored)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{directory} holds an unreadable {label} config {stored}: {e}") from e
    return directory, meta, config


def check_fits(
    directory: Path,
    meta: dict[str, Any],
    input_shape: tuple[int, ...],
    *,
    image_shape: Any = None,
    dataset: str | None = None,
    label: str,
) -> None:
    """Refuses metadata whose image shape disagrees with the config's ``input_shape``, and a
    model of other images than ``image_shape`` or trained on another ``dataset`` than asked
    for (``None``: not checked)."""
    if tuple(meta.get("image_shape", ())) != tuple(input_shape):
        raise ValueError(
            f"{directory}: metadata image_shape {meta.get('image_shape')} does not match the "
            f"{label} config's input_shape {tuple(input_shape)}"
        )
    if image_shape is not None and tuple(image_shape) != tuple(input_shape):
        raise ValueError(
            f"{directory} holds {_article(label)} {label} of {tuple(input_shape)} images, not "
            f"{tuple(image_shape)}"
        )
    if dataset is not None and meta.get("dataset") != dataset:
        raise ValueError(
            f"{directory} holds {_article(label)} {label} trained on {meta.get('dataset')!r}, "
            f"not {dataset!r}"
        )


def _article(label: str) -> str:
    return "an" if label[:1] in "AEIOU" else "a"
