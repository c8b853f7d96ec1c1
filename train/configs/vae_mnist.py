"""A convolutional VAE on MNIST, sized for 2 CPU cores: the published REVISE baseline's 32-d
code; stride-2 3x3 convolutions 28 -> 14 -> 7 (32 and 64 channels), a 256-wide dense layer,
a mirrored nearest-upsampling decoder (1.7M parameters); Bernoulli likelihood (binary
cross-entropy) and the plain ELBO (beta 1), Adam at 1e-3, batch 64, 20,000 steps (about 21
epochs). Measured on 2 CPU cores: about 0.05 s a step, so about 18 minutes with the
evaluations and progress checkpoints (longer when the cores are shared); held-out
reconstructions are recognisable after a few hundred steps (MSE 0.013 against the mean
image's 0.064 after 600).

    jaxcf train train/configs/vae_mnist.py --workdir workdir/vae_mnist
"""

from jaxcf.models import MNIST_VAE
from jaxcf.training import VAETrainConfig


def get_config() -> VAETrainConfig:
    return VAETrainConfig(
        model=MNIST_VAE,
        dataset="mnist",
        loss="bernoulli",
        beta=1.0,
        learning_rate=1e-3,
        warmup_steps=200,
        batch_size=64,
        steps=20_000,
        eval_every=1000,
        save_every=500,
        val_examples=512,
        samples=32,
    )
