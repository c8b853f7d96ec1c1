"""Compiler options for jaxcf's explanation programs, and the lazily built ``jax.jit`` that
applies them.

On XLA's CPU backend recent jaxlibs hand convolutions (and some matrix products) to YNNPACK
(the option ``xla_cpu_experimental_ynn_fusion_type``). On the searches' ResNets on 2 cores those
kernels keep one core idle much of the time: a DeDUCE or JSMA step ran 1.45-1.5x slower than
with XLA's own (Eigen) convolutions, which PyTorch's oneDNN kernels then lead by about 12%
(``docs/benchmarks/cpu-step.md``). The pixel searches' programs (the runner's, and
the methods' one-batch entry points, for a search class with ``EIGEN_CPU_CONVOLUTIONS = True``)
are therefore compiled without YNNPACK fusions when all of these hold:

* the default backend is a CPU;
* this jaxlib would route a convolution through YNNPACK (checked once, on a tiny convolution);
* the user's ``XLA_FLAGS`` do not name the option (a setting of their own always wins), and
  ``JAXCF_CPU_KERNELS`` is not ``xla`` (which keeps XLA's default choice, e.g. to reproduce a
  result recorded before jaxcf made this choice).

The pixel searches' counterfactuals are bitwise the same either way except where two pixels'
gradients nearly tie (their steps choose pixels by ranking: on the demo's 450 pairs, 0 changed
for JSMA and 1 for DeDUCE). Every other method, and training, keeps XLA's defaults (see
:func:`compiler_options_for`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

_OPTION = "xla_cpu_experimental_ynn_fusion_type"
ENV = "JAXCF_CPU_KERNELS"
"""Environment variable: ``eigen`` (the default) or ``xla`` (keep XLA's own choice)."""


def compiler_options_for(program_input: Any) -> dict[str, str]:
    """The ``compiler_options`` to compile a program over ``program_input`` (an explainer or a
    search) with: :func:`explain_compiler_options` when it opts in by a true class attribute
    ``EIGEN_CPU_CONVOLUTIONS``, ``{}`` (XLA's defaults) otherwise.

    Only the pixel searches opt in. XLA's own convolutions accumulate in an order that depends
    on the batch's shape, so a continuous search (Wachter, the latent searches) would no longer
    give the same counterfactuals batched, sharded or one query at a time beyond float rounding
    amplified over hundreds of steps; the pixel searches' steps rank pixels, which such rounding
    does not reorder but at near-ties.
    """
    if not getattr(program_input, "EIGEN_CPU_CONVOLUTIONS", False):
        return {}
    return explain_compiler_options()


@functools.cache
def explain_compiler_options() -> dict[str, str]:
    """``compiler_options`` for ``jax.jit`` of the explanation programs: YNNPACK fusions off on
    a CPU backend whose XLA would use them for convolutions, ``{}`` otherwise (another backend,
    an XLA without the option, the user's own ``XLA_FLAGS`` setting, or ``JAXCF_CPU_KERNELS=xla``).

    The first call compiles one tiny convolution twice (some tens of milliseconds).
    """
    choice = os.environ.get(ENV, "eigen").strip().lower()
    if choice not in ("eigen", "xla"):
        raise ValueError(f"{ENV}={choice!r}: expected 'eigen' (the default) or 'xla'")
    if choice == "xla" or _OPTION in os.environ.get("XLA_FLAGS", ""):
        return {}
    if jax.default_backend() != "cpu":
        return {}
    x = jax.ShapeDtypeStruct((1, 8, 8, 32), jnp.float32)
    w = jax.ShapeDtypeStruct((3, 3, 32, 32), jnp.float32)

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    try:
        text = jax.jit(conv).lower(x, w).compile().as_text()
        jax.jit(conv, compiler_options={_OPTION: ""}).lower(x, w).compile()
    except Exception:  # an XLA without the option refuses it: keep its defaults
        return {}
    return {_OPTION: ""} if "__ynn_fusion" in text else {}


class explain_jit:  # noqa: N801 (used like the function it wraps, as jax.jit is)
    """``jax.jit(fn, compiler_options=..., **kwargs)`` with the options
    :func:`compiler_options_for` gives a pixel search, for their one-batch entry points; built
    on the first call so that importing jaxcf never starts a backend (a user may still set
    ``XLA_FLAGS`` or the number of fake CPU devices after ``import jaxcf``)."""

    def __init__(self, fn: Callable, **kwargs: Any):
        self._fn, self._kwargs = fn, kwargs
        self._jitted: Any = None
        functools.update_wrapper(self, fn)

    def _get(self) -> Any:
        if self._jitted is None:
            self._jitted = jax.jit(
                self._fn, compiler_options=explain_compiler_options(), **self._kwargs
            )
        return self._jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get()(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self._get().lower(*args, **kwargs)

    def _cache_size(self) -> int:
        return self._get()._cache_size()
