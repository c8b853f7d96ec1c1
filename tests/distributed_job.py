"""One process of a multi-process runner job, for the multi-host tests.

Usage: python tests/distributed_job.py PROCESS_ID NUM_PROCESSES PORT CHECKPOINT QUERIES OUT
       [SEED] [PAUSE_SECONDS]

Each process has 2 CPU devices and joins the job through :func:`jaxcf.runner.distributed.initialize`
(gloo collectives). The job explains the query directory QUERIES twice: DeDUCE through slot
pools into ``OUT/deduce`` (a :class:`~jaxcf.core.Retry` of it: the queries it did not solve
in 30 steps are rerun with 60, again through every process's slot pools), FGSM in one pass into
``OUT/fgsm``. :func:`explain` is the same work
for a reference run in one process.
"""

from __future__ import annotations

import sys
import time

import jax

DEVICES_PER_PROCESS = 2


def explainers(checkpoint):
    from jaxcf.core import Retry
    from jaxcf.methods import DeDUCEConfig, FGSMConfig, make
    from jaxcf.models import load_classifier

    model, density, _ = load_classifier(checkpoint)
    deduce = make("deduce", DeDUCEConfig(max_iter=30), classifier=model, density=density)
    return {
        "deduce": Retry(deduce, "max_iter", (30, 60)),
        "fgsm": make("fgsm", FGSMConfig(eps=0.1), classifier=model),
    }


def explain(checkpoint, queries, out, seed=0, pause=0.0, progress=False):
    """Both runs; ``{name: Results}``."""
    from jaxcf import runner

    config = runner.RunnerConfig(chunk_size=4, slots=1, segment=2)
    return {
        name: runner.run_source(
            explainer,
            queries,
            f"{out}/{name}",
            config=config,
            seed=seed,
            progress=progress,
            # The kill tests kill after chunk 1 is on disk: pausing from there on keeps the
            # kill between chunks without idling after chunk 0.
            on_chunk=lambda c, info: time.sleep(pause if c >= 1 else 0.0),
        )
        for name, explainer in explainers(checkpoint).items()
    }


def main(argv: list[str]) -> None:
    process_id, num_processes, port, checkpoint, queries, out = argv[:6]
    seed = int(argv[6]) if len(argv) > 6 else 0
    pause = float(argv[7]) if len(argv) > 7 else 0.0
    jax.config.update("jax_num_cpu_devices", DEVICES_PER_PROCESS)
    from jaxcf.runner import distributed

    distributed.initialize(
        f"localhost:{port}", int(num_processes), int(process_id), timeout_seconds=60
    )
    explain(checkpoint, queries, out, seed=seed, pause=pause)
    print(f"process {jax.process_index()} of {jax.process_count()} done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
