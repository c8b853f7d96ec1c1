"""A diffusion autoencoder on PneumoniaMNIST (28x28 chest X-rays padded to 32x32), the model
DiffExplainer explains with, sized for 2 CPU cores: a semantic encoder to a 512-d code and a
0.7M-parameter UNet decoder conditioned on it (16/32/64 channels), trained jointly on the L1
noise loss (the paper's), linear schedule of 1,000 steps, batch 64, 4,000 steps (about 54
epochs of the 4,708 training images).

    jaxcf train train/configs/diffae_pneumonia.py \
        --workdir workdir/diffae_pneumonia
"""

from jaxcf.diffusion import ScheduleConfig
from jaxcf.models import DiffAEConfig, SemanticEncoderConfig, UNetConfig
from jaxcf.training import DiffusionTrainConfig

CODE = 512


def get_config() -> DiffusionTrainConfig:
    shape = (32, 32, 1)
    return DiffusionTrainConfig(
        model=DiffAEConfig(
            unet=UNetConfig(
                input_shape=shape, width=16, channel_mult=(1, 2, 4), groups=8, cond_dim=CODE
            ),
            encoder=SemanticEncoderConfig(
                input_shape=shape, width=16, channel_mult=(1, 2, 4, 4), code_dim=CODE
            ),
        ),
        schedule=ScheduleConfig(kind="linear", num_steps=1000),
        dataset="pneumoniamnist",
        pad=2,
        loss="l1",
        learning_rate=1e-3,
        warmup_steps=200,
        ema_decay=0.999,
        batch_size=64,
        steps=4000,
        eval_every=1000,
        save_every=250,
        val_examples=256,
        samples=32,
    )
