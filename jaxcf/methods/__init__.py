"""Counterfactual methods.

Each search method has a public function that checks its inputs and returns a
:class:`~jaxcf.explainer.CFResult` for a batch of queries and per-query targets (``deduce``,
``jsma``, ``wachter``, ``fgsm``), and a builder of the underlying jittable object: an
:class:`IterativeSearch` (``deduce_search``, ...) that :func:`solve`, :func:`solve_pool` and the
runner drive, or an explainer (``fgsm_explainer``). Amortised methods build an explainer from a
trained model (``generator_explainer``: one forward pass of a conditional generator).
:func:`make` builds any registered method from its name and config (see
:mod:`jaxcf.methods.registry`).
"""

from jaxcf.explainer import CFResult, Explainer, Retry
from jaxcf.methods._deduce import DeDUCEConfig, DeDUCESearch, deduce, deduce_search
from jaxcf.methods._diffexplainer import (
    DiffExplainer,
    DiffExplainerConfig,
    difference_map,
    diffexplainer,
)
from jaxcf.methods._fgsm import FGSM, FGSMConfig, fgsm, fgsm_explainer
from jaxcf.methods._generator import GeneratorConfig, GeneratorExplainer, generator_explainer
from jaxcf.methods._guided import (
    GuidedDiffusion,
    GuidedDiffusionConfig,
    guided_diffusion_explainer,
)
from jaxcf.methods._jsma import JSMAConfig, JSMASearch, jsma, jsma_search
from jaxcf.methods._wachter import WachterConfig, WachterSearch, wachter, wachter_search
from jaxcf.methods.registry import MethodSpec, make, method_names, register
from jaxcf.methods.search import (
    IterativeSearch,
    SearchExplainer,
    solve,
    solve_pool,
)

__all__ = [
    "FGSM",
    "CFResult",
    "DeDUCEConfig",
    "DeDUCESearch",
    "Explainer",
    "FGSMConfig",
    "GeneratorConfig",
    "GeneratorExplainer",
    "IterativeSearch",
    "JSMAConfig",
    "JSMASearch",
    "MethodSpec",
    "DiffExplainer",
    "DiffExplainerConfig",
    "GuidedDiffusion",
    "GuidedDiffusionConfig",
    "Retry",
    "SearchExplainer",
    "WachterConfig",
    "WachterSearch",
    "deduce",
    "deduce_search",
    "fgsm",
    "fgsm_explainer",
    "diffexplainer",
    "difference_map",
    "generator_explainer",
    "guided_diffusion_explainer",
    "jsma",
    "jsma_search",
    "make",
    "method_names",
    "register",
    "solve",
    "solve_pool",
    "wachter",
    "wachter_search",
]
