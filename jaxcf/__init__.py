"""jaxcf: counterfactual explanations at accelerator scale, on JAX and Flax NNX.

The names a user needs are here::

    import jaxcf

    model, density, _ = jaxcf.load_classifier("bundled:demo_resnet_w32")
    test = jaxcf.load_dataset("mnist", "test")
    explainer = jaxcf.make("deduce", jaxcf.methods.DeDUCEConfig(), classifier=model,
                           density=density)
    results = jaxcf.run(explainer, test.inputs[:20], (test.labels[:20] + 1) % 10, "runs/deduce")

Everything else lives in subpackages grouped by concern: :mod:`jaxcf.core` (the contracts),
:mod:`jaxcf.methods`, :mod:`jaxcf.runner`, :mod:`jaxcf.evaluation`, :mod:`jaxcf.report`,
:mod:`jaxcf.models`, :mod:`jaxcf.data`, :mod:`jaxcf.tabular`, :mod:`jaxcf.diffusion`,
:mod:`jaxcf.training` and :mod:`jaxcf.experiment`.
"""

from jaxcf import methods
from jaxcf._version import __version__
from jaxcf.core import (
    CFResult,
    Explainer,
    FunctionClassifier,
    Results,
    Retry,
    as_pure,
    load_config,
    targets,
)
from jaxcf.data import dataset_names, load_dataset
from jaxcf.evaluation import metrics
from jaxcf.methods import MethodSpec, describe, make, method_names, register
from jaxcf.models import load_classifier
from jaxcf.runner import RunnerConfig, distributed, load_results, run, run_source

__all__ = [
    "CFResult",
    "Explainer",
    "FunctionClassifier",
    "MethodSpec",
    "Results",
    "Retry",
    "RunnerConfig",
    "__version__",
    "as_pure",
    "dataset_names",
    "describe",
    "distributed",
    "load_classifier",
    "load_config",
    "load_dataset",
    "load_results",
    "make",
    "method_names",
    "methods",
    "metrics",
    "register",
    "run",
    "run_source",
    "targets",
]
