"""Every family's throughput at the papers' model sizes, in one call: the accelerator suite.

    python -m benchmarks.suite [--preset paper|cpu|quick] [--families deduce,aip,...]
        [--budget-s 450] [--out benchmarks/results]
    jaxcf bench suite [the same arguments]

For every family (DeDUCE, JSMA, Wachter, FGSM, REVISE, AIP, the image / ECG / tabular
generators, guided diffusion with the one-step estimate and with the rollout, DiffExplainer) on
randomly initialised models at the papers' sizes (see :class:`Preset`), a batch sweep of one
jitted program each, with the same work per query whether or not it succeeds (fixed search
iterations, fixed sampler steps, one attempt):

* compile time (tracing, lowering, compiling) apart; the steady state the median of the timed
  calls after a warm-up call, each ended by ``jax.block_until_ready``;
* counterfactuals per second, and query-steps or denoiser calls per second;
* FLOPs per call, XLA's count of the lowered program with every loop body counted as often as
  it runs (:func:`benchmarks.common.program_flops`), and the achieved FLOP/s against a matrix
  product's measured in the same run (float32 at default precision, and bfloat16).

Made for accelerators lent briefly: one call of at most ``--budget-s`` seconds (a sweep is cut
when its next batch would end past its family's share of what is left, each cut recorded), a
failure (out of memory, say) costing only its own batch, and the record written, atomically,
after every measurement: ``<out>/suite_<device>[_<preset>].{json,md}``, which a stopped run
leaves with everything it measured. The models need no checkpoint and no data set.
"""

from benchmarks.suite._config import CPU, FAMILIES, PAPER, PRESETS, QUICK, Config, Preset
from benchmarks.suite._run import Stopped, default_preset, main, results_stem, run

__all__ = [
    "CPU",
    "FAMILIES",
    "PAPER",
    "PRESETS",
    "QUICK",
    "Config",
    "Preset",
    "Stopped",
    "default_preset",
    "main",
    "results_stem",
    "run",
]
