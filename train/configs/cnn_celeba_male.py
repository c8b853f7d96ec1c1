"""A small CNN gender classifier on 64x64 CelebA faces, the target model of the AIP setting
(attribute-informed perturbation; FGSM, xGEMs and AIP_R as baselines): two 3x3 convolutions
(32 and 64 channels, each followed by 2x2 average pooling, 64 -> 32 -> 16), a 128-wide dense
layer and 2 classes (female, male); 2.1M parameters. Adam at 1e-3, batch 128, 5 epochs of the
9,000 training faces. A train step measured 0.6 s on 2 CPU cores: about 45 s an epoch, some
4 minutes in all.

    jaxcf train train/configs/cnn_celeba_male.py \\
        --workdir workdir/cnn_celeba_male

Uses the registered ``celeba`` data set (64x64 RGB in [0, 1], labels *Male*; train 9,000,
test 1,000).
"""

from jaxcf.models import CNNConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=CNNConfig(input_shape=(64, 64, 3), num_classes=2, channels=(32, 64), hidden=128),
        dataset="celeba",
        optimizer="adam",
        learning_rate=1e-3,
        lr_boundaries=(),
        epochs=5,
        batch_size=128,
        train_examples=9000,
    )
