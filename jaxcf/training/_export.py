"""Compact copies of trained models, small enough to ship inside the package.

A compact copy rounds every floating-point weight and state value to bfloat16 precision (8
significant bits) and keeps them as float32 (so the model runs unchanged and the checkpoint's
compressor halves their size). For a classifier (:func:`export_compact`) it refits the
class-conditional feature density on the rounded network's features in float64 and re-measures
test accuracy; for an AttGAN-like model (:func:`export_attgan_compact`) it re-measures the
held-out reconstruction, attribute and attribute-flip numbers. The rounded network *is* the
shipped model: its numbers and every counterfactual it gives are measured on it.

:func:`content_digest` hashes the arrays themselves (not the files, whose metadata carry
timestamps), so a rebuild from the same training config on the same machine can be checked
bit for bit against the shipped copy.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from tqdm.auto import tqdm

from jaxcf.core import as_pytree
from jaxcf.data import load_dataset
from jaxcf.models import (
    DIGEST_FILE,
    AttributeModel,
    checkpoint,
    content_digest,
    fit_gaussians,
    load_attgan_modules,
    load_classifier,
)
from jaxcf.training._attgan import held_out_scores
from jaxcf.training._classification import accuracy, extract_features


def round_to_bfloat16(model: nnx.Module) -> None:
    """Rounds every floating-point leaf of ``model``'s state to bfloat16 precision, in place."""
    state = nnx.state(model)

    def rnd(a):
        if jnp.issubdtype(a.dtype, jnp.floating):
            return a.astype(jnp.bfloat16).astype(a.dtype)
        return a

    nnx.update(model, jax.tree.map(rnd, state))


def export_compact(source: str | Path, destination: str | Path, *, overwrite: bool = False) -> str:
    """Writes a compact copy of the classifier checkpoint ``source`` to ``destination``.

    Returns the content digest, also written to ``destination/content.sha256``.
    """
    model, _, meta = load_classifier(source)
    round_to_bfloat16(model)
    model.eval()
    train = load_dataset(meta["dataset"], "train")
    test = load_dataset(meta["dataset"], "test")
    n = meta["train_examples"]
    density = fit_gaussians(
        extract_features(model, train.inputs[:n]),
        train.labels[:n],
        num_classes=model.config.num_classes,
    )
    keep = {k: v for k, v in meta.items() if k not in checkpoint.RESERVED_KEYS}
    keep.update(
        test_accuracy=accuracy(model, test.inputs, test.labels),
        density={"kind": "gaussian", "jitter": density.jitter},
        compact={
            "rounding": "bfloat16 precision, stored as float32",
            "source_test_accuracy": meta["test_accuracy"],
        },
    )
    return _write(destination, model, keep, {"density": density.to_arrays()}, overwrite, density)


def export_attgan_compact(
    source: str | Path, destination: str | Path, *, overwrite: bool = False
) -> str:
    """Writes a compact copy of the AttGAN-like model saved by
    :func:`~jaxcf.training.train_attgan` at ``source`` (its workdir or checkpoint) to
    ``destination``: generator and discriminator rounded alike, the evaluation's held-out
    numbers measured again on every test face, before and after rounding, into its metadata.

    Returns the content digest, also written to ``destination/content.sha256``.
    """
    modules, meta = load_attgan_modules(source)
    generator, discriminator = modules["generator"], modules["discriminator"]
    names = tuple(meta["attribute_names"])
    train = load_dataset(meta["dataset"], "train")
    test = load_dataset(meta["dataset"], "test")
    flips = tuple(meta["train_config"]["flip_attributes"])  # those its evaluations scored

    def scores() -> dict[str, float]:
        config = generator.config
        model = AttributeModel(as_pytree(generator), as_pytree(discriminator), config, names)
        return held_out_scores(
            model,
            test.inputs,
            test.attributes,
            train.inputs.mean(0),
            train.attributes.mean(0),
            flips,
        )

    # Each pass scores every test face in one jitted call (tens of seconds on 2 cores), so the
    # bar moves per pass.
    with tqdm(total=2, desc="held-out scores, full then rounded", unit="pass") as bar:
        before = scores()
        bar.update()
        for module in modules.values():
            round_to_bfloat16(module)
        after = scores()
        bar.update()
    keep = {k: v for k, v in meta.items() if k not in checkpoint.RESERVED_KEYS}
    keep.update(
        test_scores=after,
        compact={
            "rounding": "bfloat16 precision, stored as float32",
            "source_test_scores": before,
        },
    )
    return _write(destination, modules, keep, None, overwrite, None)


def _write(destination, entries, metadata, extras, overwrite, density) -> str:
    destination = Path(destination)
    checkpoint.save(destination, entries, metadata=metadata, extras=extras, overwrite=overwrite)
    # Orbax's commit marker names the temporary directory it wrote to; a shipped file should
    # name no machine's paths.
    marker = destination / "commit_success.txt"
    if marker.is_file():
        marker.write_text("Checkpoint commit was successful\n")
    digest = content_digest(entries, density)
    (destination / DIGEST_FILE).write_text(digest + "\n")
    return digest
