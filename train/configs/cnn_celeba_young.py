"""The CelebA age classifier of the AIP setting: the CNN and schedule of ``cnn_celeba_male.py``
(about 4 minutes on 2 CPU cores) on the same 64x64 faces labelled *Young* (classes old, young).

    python -m train.main --config train/configs/cnn_celeba_young.py \\
        --workdir workdir/cnn_celeba_young

Uses the registered ``celeba_young`` data set (64x64 RGB in [0, 1]; train 9,000, test 1,000).
"""

from jaxcf.models import CNNConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=CNNConfig(input_shape=(64, 64, 3), num_classes=2, channels=(32, 64), hidden=128),
        dataset="celeba_young",
        optimizer="adam",
        learning_rate=1e-3,
        lr_boundaries=(),
        epochs=5,
        batch_size=128,
        train_examples=9000,
    )
