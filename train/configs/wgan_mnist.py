"""A Wasserstein GAN on MNIST for the AnoGAN realism score of DeDUCE's table
(``jaxcf.evaluation.agan_score``), sized for 2 CPU cores: WGAN-GP (gradient penalty 10, 5
critic updates per generator update, Adam at 1e-4 with betas 0.5 and 0.9, batch 64), a fully
connected generator 64-256-512-1024-784 and critic 784-512-256-1 (the 256 features before the
last activation are AnoGAN's feature layer), 20,000 generator steps (107 epochs of critic
batches). Measured on 2 CPU cores: 12.6 minutes (about 27 steps a second); about half the
samples are recognisable digits after 4,000 steps, most of them at the end, when the held-out
Wasserstein estimate is 0.53 (1.73 after 2,000 steps).

    jaxcf train train/configs/wgan_mnist.py --workdir workdir/wgan_mnist
"""

from jaxcf.models import MNIST_WGAN
from jaxcf.training import WGANTrainConfig


def get_config() -> WGANTrainConfig:
    return WGANTrainConfig(
        model=MNIST_WGAN,
        dataset="mnist",
        critic_steps=5,
        gp_weight=10.0,
        learning_rate=1e-4,
        b1=0.5,
        b2=0.9,
        batch_size=64,
        steps=20_000,
        eval_every=2000,
        save_every=1000,
    )
