"""A plain convolutional autoencoder on MNIST for CFProto (the DeDUCE paper's VLK baseline),
whose loss weighs how well an autoencoder reconstructs the counterfactual: ``gamma * |x -
AE(x)|^2``. Van Looveren & Klaise's MNIST set-up uses a deterministic autoencoder trained on the
squared error; a VAE's reconstructions are blurred by its KL term, and with the REVISE VAE in
its place the reconstruction term alone weighs about 520 at ``gamma`` 100 on real digits.

The network is :data:`~jaxcf.models.MNIST_VAE`'s (28 -> 14 -> 7, a 32-d code) trained with
the Gaussian likelihood and no KL term (``beta`` 0): the squared error alone, the encoder's
variance unused, so the posterior mean is a deterministic code. Adam at 1e-3, batch 64, 8,000
steps (about 8.5 epochs); about 0.05 s a step on 2 CPU cores.

    jaxcf train train/configs/ae_mnist.py --workdir workdir/ae_mnist
"""

from jaxcf.models import MNIST_VAE
from jaxcf.training import VAETrainConfig


def get_config() -> VAETrainConfig:
    return VAETrainConfig(
        model=MNIST_VAE,
        dataset="mnist",
        loss="gaussian",
        beta=0.0,
        learning_rate=1e-3,
        warmup_steps=200,
        batch_size=64,
        steps=8_000,
        eval_every=1000,
        save_every=500,
        val_examples=512,
        samples=32,
    )
