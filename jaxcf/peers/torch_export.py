"""jaxcf classifiers and feature densities as plain PyTorch modules (eval mode), same functions.

:func:`export_classifier` takes one of the classifiers of :mod:`jaxcf.models` and
returns a ``torch.nn.Module`` with the same ``features``, ``head`` and ``logits`` (NHWC float32
inputs ``[B, H, W, C]`` in [0, 1], as in jaxcf, so that a gradient with respect to the input
flattens in jaxcf's pixel order). What the JAX model computes at inference is baked into plain
layers:

* soft spectral normalisation: in eval mode a :class:`~jaxcf.models.SpectralConv`
  applies ``W / max(1, sigma / c)`` with ``sigma`` from its *stored* power-iteration vectors (no
  iteration at inference), so the exported weight is that kernel, computed by the JAX code
  (:meth:`~jaxcf.models.SpectralConv.normalized_kernel`);
* batch norm: the running statistics, applied in flax's order ``(x - mean) * m + bias`` with
  ``m = scale * rsqrt(var + eps)`` computed by JAX (not folded into the convolution, which would
  round differently);
* kernels ``HWIO`` become ``OIHW``, dense kernels ``[in, out]`` become ``[out, in]``.

:func:`export_density` does the same for a :class:`~jaxcf.models.GaussianDensity`. Every
parameter is frozen (``requires_grad=False``): the searches differentiate with respect to the
input only, as jaxcf's do.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from jaxcf.models import (
    MLP,
    BasicBlock,
    ResNet18,
    SmallCNN,
    SpectralConv,
    StandardBlock,
    StandardResNet18,
)


def _tensor(a: Any) -> torch.Tensor:
    """A float32 torch tensor holding a JAX array's values (a copy, contiguous)."""
    return torch.from_numpy(np.array(jax.device_get(a), np.float32))


def _conv(layer: Any, stride: int, pad: int) -> nn.Conv2d:
    """A ``torch.nn.Conv2d`` applying the kernel ``layer`` applies in eval mode."""
    if isinstance(layer, SpectralConv):
        kernel, bias = layer.normalized_kernel(), None
    else:  # jaxcf.models.Conv
        kernel, bias = layer.kernel[...], layer.bias[...] if layer.bias is not None else None
    k, _, c_in, c_out = kernel.shape
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(_tensor(jnp.transpose(kernel, (3, 2, 0, 1))))
        if bias is not None:
            conv.bias.copy_(_tensor(bias))
    return conv


def _linear(layer: Any) -> nn.Linear:
    c_in, c_out = layer.kernel[...].shape
    lin = nn.Linear(c_in, c_out, bias=layer.bias is not None)
    with torch.no_grad():
        lin.weight.copy_(_tensor(layer.kernel[...].T))
        if layer.bias is not None:
            lin.bias.copy_(_tensor(layer.bias[...]))
    return lin


class BatchNormEval(nn.Module):
    """Flax's eval-mode batch norm on NCHW activations: ``(x - mean) * mul + bias``."""

    def __init__(self, bn: Any):
        super().__init__()
        mul = jax.lax.rsqrt(bn.var[...] + bn.epsilon)
        if bn.scale is not None:
            mul = mul * bn.scale[...]
        bias = bn.bias[...] if bn.bias is not None else jnp.zeros_like(mul)
        for name, value in (("mean", bn.mean[...]), ("mul", mul), ("bias", bias)):
            self.register_buffer(name, _tensor(value).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.mul + self.bias


class TorchClassifier(nn.Module):
    """Base: the classifier protocol on NHWC inputs, ``domain`` as in jaxcf."""

    domain = (0.0, 1.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C] -> [B, D]`` penultimate features."""
        raise NotImplementedError

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B, num_classes]`` logits."""
        return self.out(z)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
    """Flattens NCHW activations in jaxcf's NHWC order (dense layers were trained on it)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class TorchMLP(TorchClassifier):
    def __init__(self, m: MLP):
        super().__init__()
        self.fc1, self.fc2, self.out = _linear(m.fc1), _linear(m.fc2), _linear(m.out)

    def features(self, x):
        x = x.reshape(x.shape[0], -1)  # NHWC order, as jaxcf flattens it
        return F.relu(self.fc2(F.relu(self.fc1(x))))


class TorchSmallCNN(TorchClassifier):
    def __init__(self, m: SmallCNN):
        super().__init__()
        self.conv1 = _conv(m.conv1, m.conv1.stride, m.conv1.pad)
        self.conv2 = _conv(m.conv2, m.conv2.stride, m.conv2.pad)
        self.fc, self.out = _linear(m.fc), _linear(m.out)

    def features(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(_nchw(x))), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(_flatten_nhwc(x)))


class TorchBasicBlock(nn.Module):
    """DDU's block: LeakyReLU, parameter-free average-pool shortcut padded with zero channels."""

    def __init__(self, b: BasicBlock):
        super().__init__()
        self.conv1 = _conv(b.conv1, b.conv1.strides, b.conv1.padding)
        self.bn1 = BatchNormEval(b.bn1)
        self.conv2 = _conv(b.conv2, b.conv2.strides, b.conv2.padding)
        self.bn2 = BatchNormEval(b.bn2)
        self.stride, self.planes = b.stride, b.planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            # An odd side (7) is subsampled, an even one 2x2-average-pooled (as in jaxcf).
            if x.shape[2] % 2:
                x = x[:, :, :: self.stride, :: self.stride]
            else:
                x = F.avg_pool2d(x, self.stride)
        pad = self.planes - x.shape[1]
        return F.pad(x, (0, 0, 0, 0, 0, pad)) if pad else x

    def forward(self, x):
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.01)
        out = self.bn2(self.conv2(out))
        return F.leaky_relu(out + self.shortcut(x), 0.01)


class TorchResNet18(TorchClassifier):
    """DeDUCE's 28x28 ResNet-18 (:class:`jaxcf.models.ResNet18`), spectral norm baked in."""

    def __init__(self, m: ResNet18):
        super().__init__()
        self.stem = _conv(m.stem, m.stem.strides, m.stem.padding)
        self.bn = BatchNormEval(m.bn)
        self.blocks = nn.Sequential(*(TorchBasicBlock(b) for b in m.blocks))
        self.out = _linear(m.out)

    def features(self, x):
        x = F.leaky_relu(self.bn(self.stem(_nchw(x))), 0.01)
        return self.blocks(x).mean(dim=(2, 3))  # [B, 8 * base_width]


class TorchStandardBlock(nn.Module):
    def __init__(self, b: StandardBlock):
        super().__init__()
        self.conv1 = _conv(b.conv1, b.conv1.stride, b.conv1.pad)
        self.bn1 = BatchNormEval(b.bn1)
        self.conv2 = _conv(b.conv2, b.conv2.stride, b.conv2.pad)
        self.bn2 = BatchNormEval(b.bn2)
        self.proj = self.proj_bn = None
        if b.proj is not None:
            self.proj = _conv(b.proj, b.proj.stride, b.proj.pad)
            self.proj_bn = BatchNormEval(b.proj_bn)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
        return F.relu(out + shortcut)


class TorchStandardResNet18(TorchClassifier):
    """The baselines' plain ResNet-18 (:class:`jaxcf.models.StandardResNet18`)."""

    def __init__(self, m: StandardResNet18):
        super().__init__()
        self.stem = _conv(m.stem, m.stem.stride, m.stem.pad)
        self.bn = BatchNormEval(m.bn)
        self.blocks = nn.Sequential(*(TorchStandardBlock(b) for b in m.blocks))
        self.out = _linear(m.out)

    def features(self, x):
        x = F.relu(self.bn(self.stem(_nchw(x))))
        x = F.max_pool2d(x, 3, 2, 1)  # pads with -inf, as nnx.max_pool
        return self.blocks(x).mean(dim=(2, 3))


_EXPORTERS = {
    MLP: TorchMLP,
    SmallCNN: TorchSmallCNN,
    ResNet18: TorchResNet18,
    StandardResNet18: TorchStandardResNet18,
}


def export_classifier(model: Any) -> TorchClassifier:
    """A frozen, eval-mode PyTorch copy of a jaxcf classifier (see the module docstring).

    Args:
      model: an NNX classifier of :mod:`jaxcf.models` (e.g. from
        :func:`jaxcf.models.load_classifier`). Its eval-mode function is exported, whatever
        mode it is in; the model itself is not changed.

    Raises:
      TypeError: a model of another class.
    """
    cls = _EXPORTERS.get(type(model))
    if cls is None:
        raise TypeError(
            f"no PyTorch export for {type(model).__name__}; known: "
            + ", ".join(c.__name__ for c in _EXPORTERS)
        )
    net = cls(_eval_copy(model))
    net.domain = tuple(float(v) for v in model.domain)
    return net.eval().requires_grad_(False)


def _eval_copy(model: Any) -> Any:
    """An eval-mode copy, so that exporting neither runs power iteration nor flips the model."""
    copy = nnx.clone(model)
    copy.eval()
    return copy


class TorchGaussianDensity(nn.Module):
    """:class:`jaxcf.models.GaussianDensity` in PyTorch: ``log_prob(z [B, D]) -> [B, C]``."""

    def __init__(self, density: Any):
        super().__init__()
        self.register_buffer("whiten", _tensor(density.whiten))  # [C, D, D]
        self.register_buffer("mean", _tensor(density.mean))  # [C, D]
        self.register_buffer("log_norm", _tensor(density.log_norm))  # [C]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        centred = z[:, None, :] - self.mean[None]  # [B, C, D], centred first as in jaxcf
        sq = torch.einsum("cde,bce->bcd", self.whiten, centred).square().sum(dim=-1)
        return self.log_norm[None] - 0.5 * sq


def export_density(density: Any) -> TorchGaussianDensity:
    """A frozen PyTorch copy of a class-conditional Gaussian density on features."""
    for name in ("whiten", "mean", "log_norm"):
        if not hasattr(density, name):
            raise TypeError(f"density {type(density).__name__} has no {name!r} (not Gaussian)")
    return TorchGaussianDensity(density).eval().requires_grad_(False)


def parameter_count(net: nn.Module) -> int:
    """Number of values in a module's parameters and buffers (for reports)."""
    return sum(math.prod(t.shape) for t in (*net.parameters(), *net.buffers()))
