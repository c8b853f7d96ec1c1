"""A convolutional VAE on 64x64 CelebA faces, sized for 2 CPU cores: 4x4 stride-2 convolutions
64 -> 32 -> 16 -> 8 -> 4 (32/64/128/256 channels), a 128-d code, a mirrored nearest-upsampling
decoder (2.7M parameters); Gaussian likelihood with standard deviation 0.1 (an MSE loss, the
usual choice for faces) and the plain ELBO (beta 1), Adam at 1e-3, batch 64, 4,000 steps
(about 28 epochs of the 9,000 training faces). Measured on 2 shared CPU cores: 0.6-0.9 s a
step; the full run took 53 minutes with the evaluations and progress checkpoints and ended at
held-out reconstruction MSE 0.0068 (the mean image's 0.081): blurry but recognisable faces.

    jaxcf train train/configs/vae_celeba.py --workdir workdir/vae_celeba

Uses the registered ``celeba`` data set (64x64 RGB in [0, 1]; train 9,000, test 1,000).
"""

from jaxcf.models import CELEBA_VAE
from jaxcf.training import VAETrainConfig


def get_config() -> VAETrainConfig:
    return VAETrainConfig(
        model=CELEBA_VAE,
        dataset="celeba",
        loss="gaussian",
        scale=0.1,
        beta=1.0,
        learning_rate=1e-3,
        warmup_steps=200,
        batch_size=64,
        steps=4000,
        eval_every=500,
        save_every=250,
        val_examples=256,
        samples=32,
    )
