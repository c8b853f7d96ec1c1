"""Counterfactual methods.

Each search method has a public function that checks its inputs and returns a
:class:`~jaxcf.core.CFResult` for a batch of queries and per-query targets (``deduce``,
``jsma``, ``wachter``, ``fgsm``, ``cfproto``, and the latent-space searches ``revise``,
``xgems``, ``aip``, ``aip_random``), and a builder of the underlying jittable object: an
:class:`IterativeSearch` (``deduce_search``, ...) that :func:`solve`, :func:`solve_pool` and the
runner drive (the runner step by step through the slot pool: :func:`stage_sizes`,
:func:`pool_start`, :func:`pool_advance`, :func:`pool_running`, :func:`pool_compact` and its
:class:`Pool`), or an explainer (``fgsm_explainer``). Amortised methods build an explainer from a
trained model (``generator_explainer``: one forward pass of a conditional generator).
CFProto's class prototypes come from a training set encoded once (:func:`prototype_bank`).
:func:`make` builds any registered method from its name and config (see
:mod:`jaxcf.methods`).
"""

from jaxcf.core import CFResult, Explainer, Retry
from jaxcf.methods._aip import (
    AIPConfig,
    AIPRandomConfig,
    AIPRandomSearch,
    AIPSearch,
    aip,
    aip_explainer,
    aip_random,
    aip_random_search,
    aip_search,
)
from jaxcf.methods._cfproto import CFProtoConfig, CFProtoSearch, cfproto, cfproto_search
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
from jaxcf.methods._latent import (
    LatentSearch,
    REVISEConfig,
    XGEMsConfig,
    revise,
    revise_search,
    xgems,
    xgems_search,
)
from jaxcf.methods._prototypes import PrototypeBank, prototype_bank
from jaxcf.methods._registry import (
    MethodSpec,
    describe,
    make,
    method_names,
    method_needs,
    register,
)
from jaxcf.methods._search import (
    IterativeSearch,
    Pool,
    SearchExplainer,
    pool_advance,
    pool_compact,
    pool_running,
    pool_start,
    solve,
    solve_pool,
    stage_sizes,
)
from jaxcf.methods._wachter import WachterConfig, WachterSearch, wachter, wachter_search

__all__ = [
    "FGSM",
    "AIPConfig",
    "AIPRandomConfig",
    "AIPRandomSearch",
    "AIPSearch",
    "CFProtoConfig",
    "CFProtoSearch",
    "CFResult",
    "DeDUCEConfig",
    "DeDUCESearch",
    "DiffExplainer",
    "DiffExplainerConfig",
    "Explainer",
    "FGSMConfig",
    "GeneratorConfig",
    "GeneratorExplainer",
    "GuidedDiffusion",
    "GuidedDiffusionConfig",
    "IterativeSearch",
    "JSMAConfig",
    "JSMASearch",
    "LatentSearch",
    "MethodSpec",
    "Pool",
    "PrototypeBank",
    "REVISEConfig",
    "Retry",
    "SearchExplainer",
    "WachterConfig",
    "WachterSearch",
    "XGEMsConfig",
    "aip",
    "aip_explainer",
    "aip_random",
    "aip_random_search",
    "aip_search",
    "cfproto",
    "cfproto_search",
    "deduce",
    "deduce_search",
    "describe",
    "difference_map",
    "diffexplainer",
    "fgsm",
    "fgsm_explainer",
    "generator_explainer",
    "guided_diffusion_explainer",
    "jsma",
    "jsma_search",
    "make",
    "method_names",
    "method_needs",
    "pool_advance",
    "pool_compact",
    "pool_running",
    "pool_start",
    "prototype_bank",
    "register",
    "revise",
    "revise_search",
    "solve",
    "solve_pool",
    "stage_sizes",
    "wachter",
    "wachter_search",
    "xgems",
    "xgems_search",
]
