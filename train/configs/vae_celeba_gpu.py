"""GPU-sized: a convolutional VAE on 64x64 CelebA faces with twice the CPU config's widths (for
when a GPU is lent; not trained on CPU): 4x4 stride-2 convolutions 64 -> 32 -> 16 -> 8 -> 4
(64/128/256/512 channels), a 128-d code, a mirrored nearest-upsampling decoder (7.4M
parameters); Gaussian likelihood with standard deviation 0.1, beta 1, Adam at 5e-4, batch 128,
30,000 steps (about 430 epochs of the 9,000 training faces). On one H200, shared with five other
training jobs: 6.5 minutes, held-out reconstruction MSE 0.0094 (the mean image's 0.0786) and L1
0.065 (the weights were not kept).

    jaxcf train train/configs/vae_celeba_gpu.py --workdir workdir/vae_celeba_gpu

Uses the registered ``celeba`` data set (64x64 RGB in [0, 1]; train 9,000, test 1,000).
"""

from jaxcf.models import VAEConfig
from jaxcf.training import VAETrainConfig


def get_config() -> VAETrainConfig:
    return VAETrainConfig(
        model=VAEConfig(
            input_shape=(64, 64, 3),
            latent_dim=128,
            widths=(64, 128, 256, 512),
            kernel_size=4,
            hidden=0,
        ),
        dataset="celeba",
        loss="gaussian",
        scale=0.1,
        beta=1.0,
        learning_rate=5e-4,
        warmup_steps=500,
        batch_size=128,
        steps=30_000,
        eval_every=2000,
        save_every=1000,
        val_examples=512,
        samples=64,
    )
