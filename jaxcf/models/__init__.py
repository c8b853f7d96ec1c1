"""Flax NNX models: classifiers offering the jaxcf classifier protocol (images and series)."""

from jaxcf.models.classifiers import (
    MLP,
    CNNConfig,
    MLPConfig,
    ModelConfig,
    ResNet18,
    ResNetConfig,
    SmallCNN,
    StandardResNet18,
    StandardResNetConfig,
    build,
    config_from_dict,
    config_to_dict,
)
from jaxcf.models.sequence import BiLSTM, BiLSTMConfig
from jaxcf.models.spectral import SpectralConv, operator_norm, refine_spectral_norms

__all__ = [
    "MLP",
    "BiLSTM",
    "BiLSTMConfig",
    "CNNConfig",
    "MLPConfig",
    "ModelConfig",
    "ResNet18",
    "ResNetConfig",
    "SmallCNN",
    "SpectralConv",
    "StandardResNet18",
    "StandardResNetConfig",
    "build",
    "config_from_dict",
    "config_to_dict",
    "operator_norm",
    "refine_spectral_norms",
]
