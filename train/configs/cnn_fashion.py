"""A small CNN on Fashion-MNIST with Adam: about a minute on 2 cores.

jaxcf train train/configs/cnn_fashion.py --workdir workdir/cnn_fashion
"""

from jaxcf.models import CNNConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=CNNConfig(),
        dataset="fashion_mnist",
        optimizer="adam",
        learning_rate=1e-3,
        lr_boundaries=(),
        epochs=3,
        train_examples=60_000,
    )
