"""GPU-sized: an unconditional DDPM on 64x64 CelebA faces (the issue's larger config, for when
a GPU is lent; not trained on CPU). The paper-scale widths: 128 channels, multipliers
1/2/2/2, two residual blocks per level, attention at 16x16, linear schedule of 1,000 steps.

    jaxcf train train/configs/ddpm_celeba.py --workdir workdir/ddpm_celeba

Trains on the registry's ``celeba`` data set: the 9,000 training faces of the shipped subset,
centre-cropped and resized to 64x64 RGB in [0, 1].
"""

from jaxcf.diffusion import ScheduleConfig
from jaxcf.models import UNetConfig
from jaxcf.training import DiffusionTrainConfig


def get_config() -> DiffusionTrainConfig:
    return DiffusionTrainConfig(
        model=UNetConfig(
            input_shape=(64, 64, 3),
            width=128,
            channel_mult=(1, 2, 2, 2),
            blocks=2,
            attention=(16,),
            heads=4,
            groups=32,
            dropout=0.1,
        ),
        schedule=ScheduleConfig(kind="linear", num_steps=1000),
        dataset="celeba",
        learning_rate=2e-4,
        warmup_steps=5000,
        ema_decay=0.9999,
        batch_size=128,
        steps=200_000,
        eval_every=5000,
        save_every=1000,
    )
