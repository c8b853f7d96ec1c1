"""The issue's setting: a plain CNN with 1,568 ReLU features trained on 20,000 Fashion-MNIST
images (a few minutes on 2 cores), its features fitted by the full, the Ledoit-Wolf shrinkage and
the PCA Gaussians, and DeDUCE run with each on 20 test images x 9 targets = 180 pairs (about
ten minutes on 2 cores, training included; the full and shrinkage densities cost 10 x 1,568^2
multiply-adds per query and step, and DeDUCE explains at about one pair a second with them).

    jaxcf explain explain/density/configs/fashion.py --workdir workdir/density_fashion

``--config.set_size=50`` explains the issue's 50 test images x 9 targets.

The classifier is ``train/configs/cnn_fashion.py`` with 1,568 hidden units (the report's feature
dimension) and 20,000 training images; it is trained into
``workdir/density_fashion/models/classifier`` when missing. Results:
docs/results/density_fashion.md.
"""

from explain.density import DensityComparison
from jaxcf.experiment import ModelSpec
from jaxcf.models import CNNConfig
from jaxcf.training import TrainConfig

CLASSIFIER = TrainConfig(
    model=CNNConfig(hidden=1568),
    dataset="fashion_mnist",
    optimizer="adam",
    learning_rate=1e-3,
    lr_boundaries=(),
    epochs=3,
    train_examples=20_000,
)


def get_config() -> DensityComparison:
    return DensityComparison(classifier=ModelSpec(train=CLASSIFIER), set_size=20)
