"""Soft spectral normalisation of convolutions, as in DDU and DeDUCE.

The normalised kernel is ``W / max(1, sigma / c)``: it is rescaled only when the estimated
spectral norm ``sigma`` of the *convolution operator* (not of the reshaped kernel matrix) exceeds
the coefficient ``c``. ``sigma`` comes from power iteration on the operator ``A`` (the convolution
with this layer's stride and padding, applied to inputs of the layer's spatial size): one step
per training forward pass, with the vectors kept between steps, so the estimate tightens as
training proceeds. In eval mode the stored vectors are used as they are;
:func:`refine_spectral_norms` converges them once training is over.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcf.models._conv import CONV_DIMS, conv2d

Array = jax.Array


class PowerIteration(nnx.Variable):
    """Power-iteration vectors: state, but neither a parameter nor a batch statistic."""


def _normalize(v: Array, eps: float = 1e-12) -> Array:
    return v / (jnp.linalg.norm(v) + eps)


class SpectralConv(nnx.Module):
    """A bias-free 2-D convolution (NHWC, HWIO kernel) with optional soft spectral norm.

    Args:
      in_features, out_features: channel counts.
      kernel_size: square kernel side.
      input_size: spatial side of the (square) inputs the layer sees; fixes the operator whose
        norm is bounded.
      strides: square stride.
      coeff: the bound ``c``; ``None`` disables spectral normalisation.
      rngs: NNX random streams.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        kernel_size: int = 3,
        input_size: int,
        strides: int = 1,
        coeff: float | None = None,
        rngs: nnx.Rngs,
    ):
        fan_out = kernel_size * kernel_size * out_features
        init = jax.nn.initializers.normal(stddev=(2.0 / fan_out) ** 0.5)  # He init, fan-out
        self.kernel = nnx.Param(
            init(rngs.params(), (kernel_size, kernel_size, in_features, out_features))
        )
        self.strides = strides
        self.padding = kernel_size // 2
        self.coeff = coeff
        self.use_running_average = False  # toggled by Module.train()/eval()
        if coeff is not None:
            out_size = -(-input_size // strides)
            self.u = PowerIteration(
                _normalize(
                    jax.random.normal(rngs.params(), (1, input_size, input_size, in_features))
                )
            )
            self.v = PowerIteration(
                _normalize(jax.random.normal(rngs.params(), (1, out_size, out_size, out_features)))
            )

    def _conv(self, x: Array, kernel: Array) -> Array:
        if self.use_running_average:  # eval mode: searches differentiate it inside loops
            return conv2d(x, kernel, self.strides, self.padding)
        p = self.padding  # training: plain autodiff fuses better outside loops
        return jax.lax.conv_general_dilated(
            x, kernel, (self.strides,) * 2, ((p, p), (p, p)), dimension_numbers=CONV_DIMS
        )

    def sigma(self) -> Array:
        """The current estimate ``<v, A u>`` of the operator norm (differentiable in W)."""
        return jnp.vdot(self.v[...], self._conv(self.u[...], self.kernel[...]))

    def power_iteration(self) -> None:
        """One power-iteration step on ``A^T A``; updates the stored vectors."""
        kernel = jax.lax.stop_gradient(self.kernel[...])
        v = _normalize(self._conv(self.u[...], kernel))
        _, vjp = jax.vjp(lambda u: self._conv(u, kernel), self.u[...])
        (u,) = vjp(v)
        self.u[...] = _normalize(u)
        self.v[...] = _normalize(self._conv(self.u[...], kernel))

    def normalized_kernel(self) -> Array:
        """The kernel actually applied: ``W / max(1, sigma / c)``."""
        kernel = self.kernel[...]
        if self.coeff is None:
            return kernel
        return kernel / jnp.maximum(1.0, self.sigma() / self.coeff)

    def __call__(self, x: Array) -> Array:
        if self.coeff is not None and not self.use_running_average:
            self.power_iteration()
        return self._conv(x, self.normalized_kernel())


def operator_norm(layer: SpectralConv, n_iter: int = 3000, seed: int = 0) -> float:
    """Spectral norm of ``layer``'s applied convolution operator, by long power iteration.

    A test and diagnostics helper: starts from a random vector, not the layer's stored ones.
    """
    if layer.coeff is None:
        raise ValueError("operator_norm needs a spectrally normalised layer (coeff set)")
    u = _normalize(jax.random.normal(jax.random.key(seed), layer.u[...].shape))
    u, _ = _iterate(layer, u, n_iter)
    scale = jnp.maximum(1.0, layer.sigma() / layer.coeff)  # what normalized_kernel divides by
    return float(jnp.linalg.norm(layer._conv(u, jax.lax.stop_gradient(layer.kernel[...]))) / scale)


def refine_spectral_norms(model: nnx.Module, n_iter: int = 2000) -> None:
    """Runs ``n_iter`` more power-iteration steps on every :class:`SpectralConv` of ``model``.

    One step per training batch leaves the estimate ``sigma`` a little below the true operator
    norm (power iteration approaches it from below, slowly when the top singular values are
    close, while the kernel keeps moving), so a layer's applied norm can exceed ``c`` by a few
    percent. Converging the vectors once training is over makes the eval-mode bound hold to
    within a fraction of a percent. Updates ``model`` in place.
    """
    for _, layer in nnx.iter_graph(model):
        if isinstance(layer, SpectralConv) and layer.coeff is not None:
            u, v = _iterate(layer, layer.u[...], n_iter)
            layer.u[...], layer.v[...] = u, v


def _iterate(layer: SpectralConv, u: Array, n_iter: int) -> tuple[Array, Array]:
    """``n_iter`` power-iteration steps on ``A^T A`` for ``layer``'s raw kernel from ``u``."""
    kernel = jax.lax.stop_gradient(layer.kernel[...])

    def body(_, u):
        v, vjp = jax.vjp(lambda w: layer._conv(w, kernel), u)
        (u,) = vjp(_normalize(v))
        return _normalize(u)

    u = jax.jit(lambda u: jax.lax.fori_loop(0, n_iter, body, u))(u)
    return u, _normalize(layer._conv(u, kernel))
