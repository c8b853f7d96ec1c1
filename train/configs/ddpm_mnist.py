"""An unconditional DDPM on MNIST padded to 32x32, sized for 2 CPU cores: a 0.7M-parameter
UNet (16/32/64 channels, attention at 8x8), cosine schedule of 1,000 steps, batch 64, 5,000
steps (about 6 epochs; about an hour on 2 cores).

    jaxcf train train/configs/ddpm_mnist.py --workdir workdir/ddpm_mnist
"""

from jaxcf.diffusion import ScheduleConfig
from jaxcf.models import UNetConfig
from jaxcf.training import DiffusionTrainConfig


def get_config() -> DiffusionTrainConfig:
    return DiffusionTrainConfig(
        model=UNetConfig(input_shape=(32, 32, 1), width=16, channel_mult=(1, 2, 4), groups=8),
        schedule=ScheduleConfig(kind="cosine", num_steps=1000),
        dataset="mnist",
        pad=2,
        # A small model on a short budget: 1e-3 (the usual 2e-4 is for runs of 100k+ steps).
        learning_rate=1e-3,
        warmup_steps=200,
        ema_decay=0.999,
        batch_size=64,
        steps=5000,
        eval_every=1000,
        save_every=250,
    )
