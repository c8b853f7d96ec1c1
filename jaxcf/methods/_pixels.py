"""Pieces shared by the input-space pixel searches (DeDUCE, JSMA)."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jaxcf.methods._search import SearchBase

Array = jax.Array


class PixelSearch(SearchBase):
    """A search that moves single pixels by signed steps inside a bounded box: it refuses to run
    without one (JSMA freezes pixels at the box's bounds).

    Its programs compile with XLA's own convolutions on a CPU (``EIGEN_CPU_CONVOLUTIONS``; see
    :func:`jaxcf.core.compiler_options_for`): 1.45-1.5x faster steps there, and the same pixels
    chosen but at near-ties."""

    EIGEN_CPU_CONVOLUTIONS: ClassVar[bool] = True

    def check(self, x: Any, target: Any) -> tuple[Array, Array]:
        if self.domain is None:
            raise ValueError(
                f"{type(self).__name__} needs a bounded input domain: give the classifier a "
                "domain (our image models have (0.0, 1.0)) or set the config's domain=(lo, hi)"
            )
        return super().check(x, target)


def select_pixels(score: Array, m: int) -> Array:
    """Boolean mask ``[B, D]`` of each row's ``m`` largest entries of ``score [B, D]``.

    Ties go to the lower index (``lax.top_k`` is stable), a deterministic stand-in for the
    published code's "all pixels tied for the maximum" rule; exact float ties are rare.
    """
    _, idx = jax.lax.top_k(score, m)
    rows = jnp.arange(score.shape[0])[:, None]
    return jnp.zeros(score.shape, bool).at[rows, idx].set(True)


def safe_abs(v: Array, floor: float = 1e-12) -> Array:
    """``|v|`` bounded away from zero, for normalisers treated as constants."""
    return jnp.maximum(jnp.abs(v), floor)
