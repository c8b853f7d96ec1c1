"""The CelebA age classifier of the AIP setting: the CNN and schedule of ``cnn_celeba_male.py``
(about 4 minutes on 2 CPU cores) on the same 64x64 faces labelled *Young* (classes old, young).

    jaxcf train train/configs/cnn_celeba_young.py \\
        --workdir workdir/cnn_celeba_young

Uses the registered ``celeba_young`` data set (64x64 RGB in [0, 1]; train 9,000, test 1,000).
"""

import dataclasses
from pathlib import Path

from jaxcf.core import load_config
from jaxcf.training import TrainConfig

MALE = Path(__file__).resolve().parent / "cnn_celeba_male.py"


def get_config() -> TrainConfig:
    return dataclasses.replace(load_config(MALE), dataset="celeba_young")
