"""Training-seed spread of a trained-model result: train one config at several seeds, evaluate
each the way its single-seed result was, and report every metric as mean ± standard deviation
beside each seed's own value.

    python -m explain.seeds train/configs/generator_adult.py \\
        --explain explain/amortised/configs/generator_adult.py \\
        --seed-field generator.seed --seeds 0 1 2 \\
        --workdir workdir/seeds/generator_adult --out docs/results/generator_adult_seeds \\
        --reference recorded=docs/results/generator_adult.json

Seed ``s`` is the train config with ``--config.<seed-field>=s`` (the same override ``jaxcf
train`` takes), trained by the ordinary entry points into ``<workdir>/seed_<s>``. Two ways to
evaluate it:

* with ``--explain`` an amortised :class:`~explain.amortised.ExplainConfig`: the generator
  protocol on the same queries, targets and noise as the recorded run, the generator alone
  (peers, extra generators and soft targets are off: they do not depend on the generator's
  seed, or are reported elsewhere); the metrics of its ``generator`` row, in our units and the
  paper's. A job whose classifier config does not change with the seed trains its classifier
  once, in the first seed's folder, and the others copy it (its weights would be bitwise the
  same);
* with ``--explain`` a DeDUCE :class:`~explain.deduce.ProtocolConfig`: the protocol with the
  seeded model in place of the one of its models (``classifier``, ``baseline``, ``vae``,
  ``autoencoder``) whose training config is the study's config unseeded (for instance the
  MNIST VAE of REVISE); each method's row (``<method>.l0``, ``.l1``, ``.failure_rate``, ...)
  beside the seeded checkpoint's own held-out numbers (``<model>.<name>``);
* without: the trained checkpoint's own numbers (its last evaluation and test accuracy).

Each seed's numbers are kept in ``<workdir>/seed_<s>/seed.json`` and reused, so seeds can run
one call at a time and a last call with all of them only aggregates. ``--reference
LABEL=REPORT.json[:METHOD]`` shows a recorded row of the protocol (``report.json``; the row
``generator`` unless named) beside the spread: its distance from the mean in standard
deviations and which seed, if any, reproduces it bitwise. The outputs are ``<out>.json`` and
``<out>.md``.
"""

from explain.seeds._report import markdown, spread, summarize
from explain.seeds._rows import GENERATOR_METRICS, PROTOCOL_METRICS, reference_row
from explain.seeds._study import (
    PROTOCOL_MODELS,
    SEED_FILE,
    SeedStudy,
    run_seed,
    seeded_model,
)

__all__ = [
    "GENERATOR_METRICS",
    "PROTOCOL_METRICS",
    "PROTOCOL_MODELS",
    "SEED_FILE",
    "SeedStudy",
    "markdown",
    "reference_row",
    "run_seed",
    "seeded_model",
    "spread",
    "summarize",
]
