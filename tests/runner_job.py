"""A runner job for the subprocess tests (sharding on fake devices, kill-and-resume).

Usage: python tests/runner_job.py CHECKPOINT OUT_DIR N CHUNK SLOTS [PAUSE_SECONDS]
Set XLA_FLAGS=--xla_force_host_platform_device_count=K before starting it for K devices.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np

from jaxcf import runner
from jaxcf.data import load_mnist
from jaxcf.methods import DeDUCEConfig, deduce_search
from jaxcf.training import load_classifier


def main(argv: list[str]) -> None:
    checkpoint, out_dir, n, chunk, slots = argv[:5]
    pause = float(argv[5]) if len(argv) > 5 else 0.0
    n, chunk, slots = int(n), int(chunk), int(slots)
    model, density, _ = load_classifier(checkpoint)
    test = load_mnist("test")
    x = test.images[:n]
    # Even queries aim at their runner-up class (reachable), odd ones at some other class.
    runner_up = np.argsort(np.asarray(model.logits(x)), axis=-1)[:, -2]
    other = (test.labels[:n] + 1 + np.arange(n) % 9) % 10
    target = np.where(np.arange(n) % 2 == 0, runner_up, other).astype(np.int32)
    search = deduce_search(model, density, DeDUCEConfig(max_iter=100))
    x, target = search.check(x, target)
    runner.run(
        search,
        np.asarray(x),
        np.asarray(target),
        out_dir,
        config=runner.RunnerConfig(chunk_size=chunk, slots=slots or None, segment=2),
        progress=False,
        on_chunk=lambda c, info: time.sleep(pause),
    )
    print(f"devices={jax.device_count()} done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
