"""What DeDUCE's Table 1 adds to the protocol's runs: CFProto's class prototypes, and the AnoGAN
(AGAN) realism column.

* **Prototypes.** CFProto (the paper's VLK baseline) needs a
  :class:`~jaxcf.methods.PrototypeBank`: MNIST training images encoded once, by the VAE's
  encoder when the protocol has one (the paper's set-up: an autoencoder guides the search) and
  in input space otherwise, each labelled by the classifier CFProto explains (as alibi does).
* **AGAN.** The paper scores realism with AnoGAN: the loss of the best latent search of a
  Wasserstein GAN towards the image (:func:`jaxcf.evaluation.agan_score`; lower is more
  typical). It reports the score of the original test images (15.44), of the VAE's
  reconstructions, and of every method's counterfactuals, averaged over the pairs all its
  methods solved. :func:`agan_table` scores each image once (the originals once per image, not
  per pair) and gives, per method, the mean over its own successes and over the common pairs.
  Scoring costs about half a second an image on 2 CPU cores (12,000 gradient steps), so with a
  ``cache`` folder each set of scores is kept on disk under a hash of the WGAN, the settings,
  the seed and the images, and a rerun (or a protocol resumed in another session) reuses it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxcf.data import load_mnist
from jaxcf.evaluation import AGANConfig, agan_score
from jaxcf.methods import PrototypeBank, prototype_bank
from jaxcf.runner import fingerprint


def mnist_prototypes(
    classifier: Any, autoencoder: Any = None, *, dataset: str = "mnist", rows: int | None = None
) -> PrototypeBank:
    """CFProto's prototype bank on the MNIST training split (its first ``rows`` images, or all),
    labelled by ``classifier``'s predictions, coded by ``autoencoder`` (or in input space)."""
    train = load_mnist("train", dataset=dataset)
    x = np.asarray(train.images if rows is None else train.images[:rows])
    return prototype_bank(x, classifier=classifier, autoencoder=autoencoder)


def _mean_std(v: np.ndarray) -> dict[str, float]:
    v = np.asarray(v, np.float64)
    if not len(v):
        return {"n": 0, "mean": float("nan"), "std": float("nan")}
    return {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std())}


def cached_agan_scores(
    wgan: Any,
    x: np.ndarray,
    config: AGANConfig,
    *,
    seed: int = 0,
    cache: str | Path | None = None,
) -> np.ndarray:
    """``agan_score(wgan, x, config, seed=seed).score`` (``[N]`` float32), read from
    ``<cache>/agan-<key>.npy`` when an earlier call scored the same images under the same WGAN,
    settings and seed, and written there otherwise (``cache=None``: always computed)."""
    if cache is None:
        return np.asarray(agan_score(wgan, x, config, seed=seed).score)
    x = np.ascontiguousarray(x, np.float32)
    extra = {"config": dataclasses.asdict(config), "seed": seed}
    path = Path(cache) / f"agan-{fingerprint(wgan, {'images': x}, extra)[:16]}.npy"
    if path.exists():
        return np.load(path)
    scores = np.asarray(agan_score(wgan, x, config, seed=seed).score, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, scores)
    os.replace(tmp, path)  # atomic: a killed run leaves no half-written scores
    return scores


def agan_table(
    wgan: Any,
    results: dict[str, Any],
    index: np.ndarray,
    x: np.ndarray,
    *,
    common_over: tuple[str, ...] | None = None,
    vae: Any = None,
    config: AGANConfig | None = None,
    seed: int = 0,
    cache: str | Path | None = None,
) -> dict[str, Any]:
    """AGAN scores of the originals, the VAE's reconstructions and each method's counterfactuals.

    Args:
      wgan: the trained WGAN (:func:`jaxcf.models.load_wgan`).
      results: method label -> :class:`~jaxcf.core.Results` over the protocol's pairs (one
        counterfactual each).
      index: ``[P]`` the test-image index of each pair; ``x``: ``[P, 28, 28, 1]`` its image.
      common_over: the labels whose successes define the common pairs (default: all).
      vae: the protocol's VAE, whose reconstructions of the originals are scored too.
      config: the AnoGAN search (DeDUCE's settings by default).
      cache: a folder scores are kept in and reused from (see :func:`cached_agan_scores`).

    Returns:
      JSON-ready: ``original`` and ``reconstruction`` (mean, std, n over distinct images), and
      per method ``own`` (over its successes) and ``common`` (over the pairs every method of
      ``common_over`` solved).
    """
    config = AGANConfig() if config is None else config
    over = tuple(results) if common_over is None else tuple(common_over)
    success = {k: np.asarray(r.success).reshape(len(index), -1)[:, 0] for k, r in results.items()}
    common = np.logical_and.reduce([success[k] for k in over])
    _, first = np.unique(index, return_index=True)
    out: dict[str, Any] = {"common_over": list(over), "common_pairs": int(common.sum())}

    def score(images: np.ndarray) -> np.ndarray:
        return cached_agan_scores(wgan, images, config, seed=seed, cache=cache)

    out["original"] = _mean_std(score(x[first]))
    if vae is not None:
        recon = np.clip(np.asarray(vae.decode(vae.encode(x[first]))), 0.0, 1.0)
        out["reconstruction"] = _mean_std(score(recon))
    out["methods"] = {}
    for label, r in results.items():
        x_cf = np.asarray(r.x_cf).reshape(len(index), *x.shape[1:])
        scored = np.flatnonzero(success[label])
        scores = np.full(len(index), np.nan)
        if len(scored):
            x_scored = np.clip(x_cf[scored], 0.0, 1.0)
            scores[scored] = score(x_scored)
        out["methods"][label] = {
            "own": _mean_std(scores[success[label]]),
            "common": _mean_std(scores[common]),
        }
    return out


def agan_markdown(table: dict[str, Any], published: dict[str, float]) -> str:
    """The AGAN section of the report: a table beside the paper's scores."""
    lines = [
        "## Realism: AnoGAN score (lower is more typical)",
        "",
        f"Common pairs: the {table['common_pairs']} pairs "
        f"{', '.join(table['common_over'])} all solved.",
        "",
        "| images | n | AGAN (own successes) | AGAN (common pairs) | paper |",
        "| :--- | ---: | ---: | ---: | ---: |",
    ]

    def cell(s):
        return "—" if not s["n"] else f"{s['mean']:.2f} ± {s['std']:.2f}"

    def paper(key):
        return f"{published[key]:.2f}" if key in published else "—"

    o = table["original"]
    lines.append(f"| originals | {o['n']} | {cell(o)} | | {paper('original')} |")
    if "reconstruction" in table:
        r = table["reconstruction"]
        lines.append(f"| VAE reconstructions | {r['n']} | {cell(r)} | | — |")
    for label, m in table["methods"].items():
        lines.append(
            f"| {label} | {m['own']['n']} | {cell(m['own'])} | {cell(m['common'])} | "
            f"{paper(label)} |"
        )
    return "\n".join(lines) + "\n"
