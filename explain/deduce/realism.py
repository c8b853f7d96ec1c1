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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxcf.data import load_mnist
from jaxcf.evaluation import AGANConfig, agan_score
from jaxcf.methods import PrototypeBank, prototype_bank


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
    originals = agan_score(wgan, x[first], config, seed=seed).score
    out["original"] = _mean_std(originals)
    if vae is not None:
        recon = np.clip(np.asarray(vae.decode(vae.encode(x[first]))), 0.0, 1.0)
        out["reconstruction"] = _mean_std(agan_score(wgan, recon, config, seed=seed).score)
    out["methods"] = {}
    for label, r in results.items():
        x_cf = np.asarray(r.x_cf).reshape(len(index), *x.shape[1:])
        scored = np.flatnonzero(success[label])
        scores = np.full(len(index), np.nan)
        if len(scored):
            x_scored = np.clip(x_cf[scored], 0.0, 1.0)
            scores[scored] = agan_score(wgan, x_scored, config, seed=seed).score
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
