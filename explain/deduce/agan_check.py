"""The DeDUCE paper's sanity check of its AnoGAN realism score: how well the score separates
MNIST test images from Fashion-MNIST test images (the paper: AUROC 0.998), and the mean score
of MNIST test images (the paper's Table 1: 15.44 ± 2.04).

It scores ``images`` test images of each data set (drawn by a seeded permutation) with
:func:`jaxcf.evaluation.agan_score` under the WGAN of ``wgan`` (trained by
``jaxcf train train/configs/wgan_mnist.py --workdir workdir/wgan_mnist``) and writes
``<out>.json``, ``<out>.md`` and ``<out>_recon.png`` (rows of test images above the
generations that explain them best)::

    python -m explain.deduce.agan_check [--config.FIELD=VALUE ...]

e.g. ``--config.images=100 --config.agan.steps=1000`` for a quicker, rougher check.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcf import report
from jaxcf.core import to_jsonable, validation, write_json_atomic, write_text_atomic
from jaxcf.core.config_file import override_all, split_overrides
from jaxcf.data import load_dataset
from jaxcf.evaluation import AGANConfig, agan_score
from jaxcf.models import load_wgan

# The paper's numbers (Höltgen et al. 2021): section 5's sanity check and Table 1's originals.
PAPER = {"auroc_fashion": 0.998, "mnist_mean": 15.44, "mnist_std": 2.04}


@dataclasses.dataclass(frozen=True)
class AGANCheck:
    """Attributes:
    wgan: the WGAN's training workdir or checkpoint folder.
    images: test images scored from each data set.
    seed: seed of the test-set permutations the images are drawn from, and of the search.
    agan: the score's settings (DeDUCE's by default: 4,000 steps, three restarts).
    out: path of the results without suffix.
    recon: images of each data set shown in the reconstruction figure.
    """

    wgan: str = "workdir/wgan_mnist"
    images: int = 300
    seed: int = 0
    agan: AGANConfig = AGANConfig()
    out: str = "docs/results/agan_mnist"
    recon: int = 8

    def __post_init__(self):
        validation.at_least(self, 1, "images", "recon")
        validation.at_least(self, 0, "seed")


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of a score that should be higher for ``positives``: the share
    of (negative, positive) pairs ordered correctly, ties counting half (the Mann-Whitney
    statistic over every pair)."""
    neg = np.asarray(negatives, np.float64)[:, None]
    pos = np.asarray(positives, np.float64)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def _draw(name: str, n: int, seed: int) -> np.ndarray:
    x = np.asarray(load_dataset(name, "test").inputs, np.float32)
    if n > len(x):
        raise ValueError(f"{name}'s test split holds {len(x)} images, fewer than {n}")
    return x[np.random.default_rng(seed).permutation(len(x))[:n]]


def device_summary() -> str:
    """The devices this process runs on, e.g. ``"1 CPU device (2 cores)"``."""
    n, platform = len(jax.devices()), jax.devices()[0].platform
    cores = f" ({os.cpu_count()} cores)" if platform == "cpu" else ""
    return f"{n} {platform.upper()} device{'s' if n > 1 else ''}{cores}"


def _summary(scores: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
        "median": float(np.median(scores)),
        "min": float(np.min(scores)),
        "max": float(np.max(scores)),
    }


def run_check(check: AGANCheck) -> dict[str, Any]:
    """Scores both sets, writes the results and returns them."""
    wgan, meta = load_wgan(check.wgan, image_shape=(28, 28, 1), dataset="mnist")
    sets = {name: _draw(name, check.images, check.seed) for name in ("mnist", "fashion_mnist")}
    scored, seconds = {}, {}
    for name, x in sets.items():
        start = time.perf_counter()
        scored[name] = agan_score(wgan, x, check.agan, seed=check.seed)
        seconds[name] = time.perf_counter() - start
    mnist, fashion = scored["mnist"], scored["fashion_mnist"]
    result = {
        "images_per_set": check.images,
        "agan": dataclasses.asdict(check.agan),
        "seed": check.seed,
        "out": check.out,
        "wgan": {
            "checkpoint": check.wgan,
            "config": meta["configs"]["generator"],
            "train_steps": meta["history"][-1]["step"],
            "train_minutes": meta["train_seconds"] / 60,
        },
        "auroc_fashion": auroc(mnist.score, fashion.score),
        "mnist": {**_summary(mnist.score), "residual": float(np.mean(mnist.residual))},
        "fashion_mnist": {**_summary(fashion.score), "residual": float(np.mean(fashion.residual))},
        "seconds": seconds,
        "device": device_summary(),
        "paper": PAPER,
    }
    out = Path(check.out)
    write_json_atomic(out.with_suffix(".json"), to_jsonable(result))
    write_text_atomic(out.with_suffix(".md"), _markdown(result))
    k = min(check.recon, check.images)
    rows = []
    for name in sets:
        rows += [sets[name][:k], np.asarray(wgan.generate(scored[name].z[:k]))]
    report.image_grid(np.concatenate(rows), out.parent / f"{out.name}_recon.png", columns=k)
    return result


def _markdown(r: dict[str, Any]) -> str:
    a, w = r["agan"], r["wgan"]
    m, f = r["mnist"], r["fashion_mnist"]
    minutes = sum(r["seconds"].values()) / 60
    return "\n".join(
        [
            "# AnoGAN realism score: MNIST against Fashion-MNIST",
            "",
            f"{r['images_per_set']} test images of each set (seeded draw, seed {r['seed']}), "
            f"scored with {a['steps']:,} {a['optimizer'].upper()} steps from each of "
            f"{a['restarts']} random codes (rate {a['learning_rate']}, cut x{a['decay']} after "
            f"{a['decay_at']:.0%} of the steps), lambda {a['weight']}, under the WGAN "
            f"trained {w['train_steps']:,} generator steps ({w['train_minutes']:.1f} min). "
            f"Scoring took {minutes:.1f} min on {r['device']}.",
            "",
            "| | AUROC (MNIST vs Fashion) | MNIST mean ± std | Fashion-MNIST mean ± std |",
            "| :--- | ---: | ---: | ---: |",
            f"| jaxcf | {r['auroc_fashion']:.3f} | {m['mean']:.2f} ± {m['std']:.2f} | "
            f"{f['mean']:.2f} ± {f['std']:.2f} |",
            f"| the paper | {PAPER['auroc_fashion']:.3f} | {PAPER['mnist_mean']:.2f} ± "
            f"{PAPER['mnist_std']:.2f} | — |",
            "",
            f"Of the MNIST mean, {m['residual']:.2f} is the pixel term (Fashion-MNIST: "
            f"{f['residual']:.2f}). Lower is more realistic. The paper's WGAN is convolutional "
            "with 1,568 critic features; ours is fully connected with "
            f"{w['config']['critic_widths'][-1]}, so the feature term, and the score, are on "
            "a somewhat different scale. The paper does not say whether its ± is over images or "
            "over its five sets of 100; ours is over images.",
            "",
            f"![test images above their best generations]({Path(r['out']).name}_recon.png)",
            "",
            "Rows: MNIST test images, the generations that explain them best, Fashion-MNIST "
            "test images, theirs.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    overrides, unknown = split_overrides(list(sys.argv[1:] if argv is None else argv))
    if unknown:
        raise SystemExit(
            f"usage: python -m explain.deduce.agan_check [--config.FIELD=VALUE ...]; "
            f"unrecognised: {' '.join(unknown)}"
        )
    result = run_check(override_all(AGANCheck(), overrides))
    print(
        f"AUROC {result['auroc_fashion']:.4f}; MNIST {result['mnist']['mean']:.2f} ± "
        f"{result['mnist']['std']:.2f}, Fashion-MNIST {result['fashion_mnist']['mean']:.2f} ± "
        f"{result['fashion_mnist']['std']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
