"""A small CNN on MNIST with Adam, the classifier the MNIST counterfactual generator explains:
about a minute on 2 cores.

jaxcf train train/configs/cnn_mnist.py --workdir workdir/cnn_mnist
"""

from jaxcf.models import CNNConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=CNNConfig(),
        dataset="mnist",
        optimizer="adam",
        learning_rate=1e-3,
        lr_boundaries=(),
        epochs=3,
        train_examples=60_000,
    )
