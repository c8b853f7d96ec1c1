"""A 2-D convolution whose input gradient keeps XLA's CPU backend on its fast path.

JAX differentiates a convolution with respect to its input by a convolution with the kernel's
input and output feature dimensions swapped in the *dimension numbers* (``01oi``), not in memory.
Outside loops XLA's CPU backend inserts a transpose and runs its fast convolution; inside a
``while_loop`` body (where every counterfactual search runs) it does not, and the input gradient
runs on a generic path 3-10x slower (jax-ml/jax#12868). This module's :func:`conv2d` has a custom
VJP whose input gradient materialises the flipped, transposed kernel (behind an optimisation
barrier, so it cannot be folded back into dimension numbers) and convolves in the canonical
``HWIO`` layout. Forward results and gradients equal ``lax.conv_general_dilated``'s; GPUs and
TPUs lose nothing (the kernels are tiny).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array
CONV_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x: Array, kernel: Array, stride: int, pad: int) -> Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=CONV_DIMS
    )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: Array, kernel: Array, stride: int = 1, pad: int = 1) -> Array:
    """NHWC x HWIO convolution with square ``stride`` and symmetric zero padding ``pad``."""
    return _conv(x, kernel, stride, pad)


def _fwd(x, kernel, stride, pad):
    return _conv(x, kernel, stride, pad), (x, kernel)


def _input_grad(g: Array, kernel: Array, in_hw: tuple[int, int], stride: int, pad: int) -> Array:
    """Correlation of the stride-dilated cotangent with the flipped, I/O-swapped kernel."""
    k = kernel.shape[0]
    kt = jax.lax.optimization_barrier(jnp.flip(kernel, (0, 1)).swapaxes(2, 3))
    lo = k - 1 - pad
    padding = []
    for n, o in zip(in_hw, g.shape[1:3], strict=True):
        dilated = (o - 1) * stride + 1
        padding.append((lo, n - dilated - lo + k - 1))
    return jax.lax.conv_general_dilated(
        g, kt, (1, 1), padding, lhs_dilation=(stride, stride), dimension_numbers=CONV_DIMS
    )


def _bwd(stride, pad, res, g):
    x, kernel = res
    dx = _input_grad(g, kernel, x.shape[1:3], stride, pad)
    _, kernel_vjp = jax.vjp(lambda w: _conv(x, w, stride, pad), kernel)
    (dk,) = kernel_vjp(g)
    return dx, dk


conv2d.defvjp(_fwd, _bwd)


class Conv(nnx.Module):
    """A square-kernel NHWC convolution built on :func:`conv2d`.

    ``pad`` defaults to ``kernel_size // 2`` ("same" at stride 1). ``kernel_init`` defaults to
    LeCun normal; ``use_bias=False`` for convolutions followed by batch norm.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        pad: int | None = None,
        use_bias: bool = True,
        kernel_init=None,
        rngs,
    ):
        init = kernel_init or jax.nn.initializers.lecun_normal()
        self.kernel = nnx.Param(
            init(rngs.params(), (kernel_size, kernel_size, in_features, out_features))
        )
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.stride = stride
        self.pad = kernel_size // 2 if pad is None else pad

    def __call__(self, x: Array) -> Array:
        y = conv2d(x, self.kernel[...], self.stride, self.pad)
        if self.bias is not None:
            y = y + self.bias[...].reshape(1, 1, 1, -1)
        return y
