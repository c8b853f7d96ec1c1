"""Image classifiers (Flax NNX) that offer the classifier protocol of :mod:`jaxcf.core`.

All take NHWC float images in [0, 1] and return logits ``[B, num_classes]``; ``features`` gives
the penultimate activations ``[B, D]`` and ``head`` maps them to logits. Each model is described
by a frozen, hashable config dataclass so that a checkpoint can record the architecture and
:func:`build` can rebuild it.

The convolutional models (:class:`SmallCNN` and both ResNets) also expose their last
convolutional activation, ``feature_map(x) -> [B, h, w, K]``, and the rest of the network,
``map_head(a) -> [B, C]`` (``map_head(feature_map(x)) == logits(x)``): the hook Grad-CAM
(:mod:`jaxcf.evaluation.attribution`) differentiates. It adds no parameters and computes
``features`` and
``logits`` with the same operations as before.

* :class:`MLP`: two hidden layers.
* :class:`SmallCNN`: two conv blocks and a dense feature layer.
* :class:`ResNet18`: the 28x28 ResNet-18 of DeDUCE/DDU (3x3 stride-1 stem, no max-pool, stages at
  28/14/7/4, LeakyReLU, average-pool shortcuts padded with zero channels, 4x4 average pooling
  to ``8 * base_width`` features, optional soft spectral norm on every convolution), with a
  width multiplier: ``base_width=64`` is the paper's network, ``base_width=8`` a CPU-sized one.
* :class:`StandardResNet18`: the plain ResNet-18 the DeDUCE paper's baselines (JSMA, REVISE) ran
  on: ImageNet-style 7x7 stride-2 stem and 3x3 stride-2 max-pool (28 -> 14 -> 7), stages at
  7/4/2/1, ReLU, 1x1 convolution + batch-norm projection shortcuts, no spectral norm; same
  width multiplier.

The series classifier :class:`~jaxcf.models.BiLSTM` (``[B, T, C]`` inputs, unbounded)
lives in :mod:`jaxcf.models`; it is registered here so that :func:`build` and the
config round trip cover every model.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcf import assets
from jaxcf.models import checkpoint
from jaxcf.models._bundled import verify
from jaxcf.models._conv import Conv
from jaxcf.models._density import GaussianDensity
from jaxcf.models._sequence import BiLSTM, BiLSTMConfig
from jaxcf.models._spectral import SpectralConv

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    kind: Literal["mlp"] = "mlp"
    input_shape: tuple[int, ...] = (28, 28, 1)  # any shape: inputs are flattened
    num_classes: int = 10
    hidden: int = 256


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    kind: Literal["cnn"] = "cnn"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    channels: tuple[int, int] = (32, 64)
    hidden: int = 128


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """DDU's ResNet-18 for 28x28 inputs; ``coeff=None`` switches spectral norm off."""

    kind: Literal["resnet18"] = "resnet18"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    base_width: int = 64
    coeff: float | None = 4.0
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)


@dataclasses.dataclass(frozen=True)
class StandardResNetConfig:
    """The plain ResNet-18 of the DeDUCE paper's baselines (see :class:`StandardResNet18`)."""

    kind: Literal["resnet18_standard"] = "resnet18_standard"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    base_width: int = 64
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)


ModelConfig = MLPConfig | CNNConfig | ResNetConfig | StandardResNetConfig | BiLSTMConfig


class _Classifier(nnx.Module):
    """The classifier protocol on top of a subclass's ``features`` and linear ``self.out``."""

    domain = (0.0, 1.0)  # inputs are images scaled to [0, 1]

    def head(self, features: Array) -> Array:
        return self.out(features)

    def logits(self, x: Array) -> Array:
        return self.head(self.features(x))

    def __call__(self, x: Array) -> Array:
        return self.logits(x)


def _stages(blocks: tuple[int, ...], width: int):
    """ResNet stage plan: ``(in_planes, planes, stride)`` per block; widths double per stage
    and the first block of every stage but the first halves the side."""
    in_planes = width
    for stage, n_blocks in enumerate(blocks):
        planes = width * 2**stage
        for b in range(n_blocks):
            yield in_planes, planes, 2 if (stage > 0 and b == 0) else 1
            in_planes = planes


class MLP(_Classifier):
    def __init__(self, config: MLPConfig, *, rngs: nnx.Rngs):
        self.config = config
        d = math.prod(config.input_shape)
        self.fc1 = nnx.Linear(d, config.hidden, rngs=rngs)
        self.fc2 = nnx.Linear(config.hidden, config.hidden, rngs=rngs)
        self.out = nnx.Linear(config.hidden, config.num_classes, rngs=rngs)

    @property
    def domain(self) -> tuple[float, float] | None:
        """``(0, 1)`` for images ``(H, W, C)``; unbounded for other inputs (e.g. encoded table
        rows, whose numeric columns go below 0)."""
        return (0.0, 1.0) if len(self.config.input_shape) == 3 else None

    def features(self, x: Array) -> Array:
        x = x.reshape(x.shape[0], -1)
        return nnx.relu(self.fc2(nnx.relu(self.fc1(x))))


class SmallCNN(_Classifier):
    def __init__(self, config: CNNConfig, *, rngs: nnx.Rngs):
        self.config = config
        c_in = config.input_shape[-1]
        c1, c2 = config.channels
        self.conv1 = Conv(c_in, c1, 3, rngs=rngs)
        self.conv2 = Conv(c1, c2, 3, rngs=rngs)
        side = config.input_shape[0] // 4
        self.fc = nnx.Linear(side * side * c2, config.hidden, rngs=rngs)
        self.out = nnx.Linear(config.hidden, config.num_classes, rngs=rngs)

    def feature_map(self, x: Array) -> Array:
        """The last convolution's rectified output, before its pooling: ``[B, H/2, W/2, c2]``."""
        x = avg_pool(nnx.relu(self.conv1(x)), 2)
        return nnx.relu(self.conv2(x))

    def _pool(self, a: Array) -> Array:
        a = avg_pool(a, 2)
        return nnx.relu(self.fc(a.reshape(a.shape[0], -1)))

    def features(self, x: Array) -> Array:
        return self._pool(self.feature_map(x))

    def map_head(self, a: Array) -> Array:
        """Logits from :meth:`feature_map`'s output (pooling, dense feature layer, ``out``)."""
        return self.head(self._pool(a))


def avg_pool(x: Array, k: int) -> Array:
    """Non-overlapping ``k x k`` average pooling of NHWC inputs (``nnx.avg_pool`` divides by an
    integer window size, which strict dtype promotion refuses; this is the same arithmetic)."""
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1), (1, k, k, 1), "VALID")
    return summed / float(k * k)


def _avgpool_shortcut(x: Array, stride: int, out_channels: int) -> Array:
    """DDU's parameter-free shortcut: subsample by average pooling, pad with zero channels.

    An odd side (7) cannot be 2x2-pooled to 4, so it is subsampled with a 1x1 window instead.
    """
    if stride != 1:
        if x.shape[1] % 2:
            x = x[:, ::stride, ::stride, :]
        else:
            x = avg_pool(x, stride)
    pad = out_channels - x.shape[-1]
    if pad:
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, pad)))
    return x


class BasicBlock(nnx.Module):
    """DeDUCE's (DDU's) ResNet block: spectral-normalised convolutions, LeakyReLU and a
    parameter-free average-pool shortcut padded with zero channels."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        input_size: int,
        stride: int,
        coeff: float | None,
        rngs: nnx.Rngs,
    ):
        self.conv1 = SpectralConv(
            in_planes, planes, input_size=input_size, strides=stride, coeff=coeff, rngs=rngs
        )
        self.bn1 = nnx.BatchNorm(planes, momentum=0.9, rngs=rngs)
        self.conv2 = SpectralConv(
            planes, planes, input_size=-(-input_size // stride), coeff=coeff, rngs=rngs
        )
        self.bn2 = nnx.BatchNorm(planes, momentum=0.9, rngs=rngs)
        self.stride = stride
        self.planes = planes

    def __call__(self, x: Array) -> Array:
        out = nnx.leaky_relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return nnx.leaky_relu(out + _avgpool_shortcut(x, self.stride, self.planes))


class ResNet18(_Classifier):
    def __init__(self, config: ResNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        size, _, c_in = config.input_shape
        w = config.base_width
        self.stem = SpectralConv(c_in, w, input_size=size, coeff=config.coeff, rngs=rngs)
        self.bn = nnx.BatchNorm(w, momentum=0.9, rngs=rngs)
        blocks = []
        for in_planes, planes, stride in _stages(config.blocks, w):
            blocks.append(
                BasicBlock(
                    in_planes, planes, input_size=size, stride=stride, coeff=config.coeff, rngs=rngs
                )
            )
            size = -(-size // stride)
        self.blocks = nnx.List(blocks)
        self.out = nnx.Linear(planes, config.num_classes, rngs=rngs)

    def feature_map(self, x: Array) -> Array:
        """The last block's output, before global pooling: ``[B, 4, 4, 8 * base_width]``."""
        x = nnx.leaky_relu(self.bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x

    def features(self, x: Array) -> Array:
        return jnp.mean(self.feature_map(x), axis=(1, 2))  # 4x4 average pooling: [B, 8 * w]

    def map_head(self, a: Array) -> Array:
        """Logits from :meth:`feature_map`'s output (global average pooling, then ``out``)."""
        return self.head(jnp.mean(a, axis=(1, 2)))


# He initialisation over fan-out, as torchvision's ResNets (normal, not truncated).
_HE_FAN_OUT = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _he_conv(c_in: int, c_out: int, size: int, stride: int, rngs: nnx.Rngs, pad=None) -> Conv:
    """Bias-free convolution (batch norm follows) with torchvision's initialisation."""
    return Conv(
        c_in,
        c_out,
        size,
        stride=stride,
        pad=pad,
        use_bias=False,
        kernel_init=_HE_FAN_OUT,
        rngs=rngs,
    )


class StandardBlock(nnx.Module):
    """ResNet basic block with ReLU and a 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, *, stride: int, rngs: nnx.Rngs):
        self.conv1 = _he_conv(in_planes, planes, 3, stride, rngs)
        self.bn1 = nnx.BatchNorm(planes, momentum=0.9, rngs=rngs)
        self.conv2 = _he_conv(planes, planes, 3, 1, rngs)
        self.bn2 = nnx.BatchNorm(planes, momentum=0.9, rngs=rngs)
        if stride != 1 or in_planes != planes:
            self.proj = _he_conv(in_planes, planes, 1, stride, rngs)
            self.proj_bn = nnx.BatchNorm(planes, momentum=0.9, rngs=rngs)
        else:
            self.proj = self.proj_bn = None

    def __call__(self, x: Array) -> Array:
        out = nnx.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
        return nnx.relu(out + shortcut)


class StandardResNet18(_Classifier):
    def __init__(self, config: StandardResNetConfig, *, rngs: nnx.Rngs):
        self.config = config
        c_in = config.input_shape[-1]
        w = config.base_width
        self.stem = _he_conv(c_in, w, 7, 2, rngs, pad=3)
        self.bn = nnx.BatchNorm(w, momentum=0.9, rngs=rngs)
        self.blocks = nnx.List(
            [StandardBlock(i, p, stride=st, rngs=rngs) for i, p, st in _stages(config.blocks, w)]
        )
        self.out = nnx.Linear(w * 2 ** (len(config.blocks) - 1), config.num_classes, rngs=rngs)

    def feature_map(self, x: Array) -> Array:
        """The last block's output, before global pooling: ``[B, 1, 1, 8 * base_width]`` for
        28x28 inputs (a single cell: Grad-CAM on it is constant over the image)."""
        x = nnx.relu(self.bn(self.stem(x)))
        x = nnx.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x)
        return x

    def features(self, x: Array) -> Array:
        return jnp.mean(self.feature_map(x), axis=(1, 2))  # [B, 8 * base_width]

    def map_head(self, a: Array) -> Array:
        """Logits from :meth:`feature_map`'s output (global average pooling, then ``out``)."""
        return self.head(jnp.mean(a, axis=(1, 2)))


_REGISTRY = {
    "mlp": (MLPConfig, MLP),
    "cnn": (CNNConfig, SmallCNN),
    "resnet18": (ResNetConfig, ResNet18),
    "resnet18_standard": (StandardResNetConfig, StandardResNet18),
    "bilstm": (BiLSTMConfig, BiLSTM),
}


def build(config: ModelConfig, *, seed: int = 0) -> nnx.Module:
    """Builds the model a config describes, with parameters initialised from ``seed``."""
    _, cls = _REGISTRY[config.kind]
    return cls(config, rngs=nnx.Rngs(seed))


def config_to_dict(config: ModelConfig) -> dict:
    """JSON-ready form of a model config (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(d: dict) -> ModelConfig:
    """Inverse of :func:`config_to_dict`."""
    cfg_cls, _ = _REGISTRY[d["kind"]]
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(d) - fields
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} for model kind {d['kind']!r}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cfg_cls(**kwargs)


def load_classifier(directory: str | Path) -> tuple[nnx.Module, GaussianDensity | None, dict]:
    """Loads a checkpoint of :func:`train_and_evaluate`: model (eval mode), density, metadata.

    The architecture is rebuilt from the stored config, so no code of the caller has to know it.
    ``"bundled:<name>"`` loads a classifier shipped with the package (:mod:`jaxcf.assets`),
    checked against its content digest.
    """
    bundled = str(directory).startswith(assets.PREFIX)
    directory = assets.resolve(directory)
    metadata = checkpoint.read_metadata(directory)
    if "model" not in metadata or metadata.get("kind") is not None:
        raise ValueError(
            f"{directory} is not a classifier checkpoint (kind {metadata.get('kind')!r}, "
            f"entries {sorted(metadata.get('entries', {}))})"
        )
    model = build(config_from_dict(metadata["model"]))
    checkpoint.load(directory, model)
    model.eval()
    density = None
    if "density" in metadata.get("extras", {}):
        arrays = checkpoint.load_extras(
            directory,
            "density",
            GaussianDensity.abstract_arrays(
                num_classes=model.config.num_classes, feature_dim=_feature_dim(model)
            ),
        )
        density = GaussianDensity.from_arrays(arrays)
    if bundled:
        verify(directory, model, density)
    return model, density, metadata


def _feature_dim(model: nnx.Module) -> int:
    shape = (1, *model.config.input_shape)
    return jax.eval_shape(
        lambda x: model.features(x), jax.ShapeDtypeStruct(shape, jnp.float32)
    ).shape[1]
