"""Counterfactual methods.

Each method has a public function that checks its inputs and returns a :class:`CFResult` for a
batch of queries and per-query targets (``deduce``, ``jsma``, ``wachter``), and a builder of the
underlying jittable :class:`IterativeSearch` (``deduce_search``, ...) that the runner and
benchmarks drive directly with :func:`solve` or :func:`solve_pool`.
"""

from jaxcf.methods._deduce import DeDUCEConfig, DeDUCESearch, deduce, deduce_search
from jaxcf.methods._jsma import JSMAConfig, JSMASearch, jsma, jsma_search
from jaxcf.methods._wachter import WachterConfig, WachterSearch, wachter, wachter_search
from jaxcf.methods.search import CFResult, IterativeSearch, solve, solve_pool

__all__ = [
    "CFResult",
    "DeDUCEConfig",
    "DeDUCESearch",
    "IterativeSearch",
    "JSMAConfig",
    "JSMASearch",
    "WachterConfig",
    "WachterSearch",
    "deduce",
    "deduce_search",
    "jsma",
    "jsma_search",
    "solve",
    "solve_pool",
    "wachter",
    "wachter_search",
]
