"""A runner job in its own process, for the kill-and-resume test.

Usage: python tests/runner_job.py CHECKPOINT OUT_DIR N CHUNK SLOTS [PAUSE_SECONDS]

:func:`job` builds the same explainer and pairs in-process, for the reference run.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np

from jaxcf import runner
from jaxcf.data import load_mnist
from jaxcf.methods import DeDUCEConfig, SearchExplainer, deduce_search
from jaxcf.models import load_classifier


def job(checkpoint, n: int):
    """``(explainer, x, target)``: DeDUCE on ``n`` test images; even queries aim at their
    runner-up class (reachable), odd ones at some other class (often not)."""
    model, density, _ = load_classifier(checkpoint)
    test = load_mnist("test")
    x = np.asarray(test.images[:n])
    runner_up = np.argsort(np.asarray(model.logits(x)), axis=-1)[:, -2]
    other = (test.labels[:n] + 1 + np.arange(n) % 9) % 10
    target = np.where(np.arange(n) % 2 == 0, runner_up, other).astype(np.int32)
    return SearchExplainer(deduce_search(model, density, DeDUCEConfig(max_iter=100))), x, target


def config(chunk: int, slots: int) -> runner.RunnerConfig:
    return runner.RunnerConfig(chunk_size=chunk, slots=slots or None, segment=2)


def main(argv: list[str]) -> None:
    checkpoint, out_dir, n, chunk, slots = argv[:5]
    pause = float(argv[5]) if len(argv) > 5 else 0.0
    explainer, x, target = job(checkpoint, int(n))
    runner.run(
        explainer,
        x,
        target,
        out_dir,
        config=config(int(chunk), int(slots)),
        mesh=runner.data_mesh(jax.devices()[:1]),
        progress=False,
        # The kill tests kill after chunk 1 is on disk: pausing from there on keeps the
        # kill between chunks without idling after chunk 0.
        on_chunk=lambda c, info: time.sleep(pause if c >= 1 else 0.0),
    )
    print(f"devices={jax.device_count()} done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
