"""An attribute-informed encoder-decoder (AttGAN-like, the AIP method's generative model) on 64x64
CelebA faces with the AIP paper's 13 attributes, sized for 2 CPU cores: five 4x4 stride-2
convolutions 64 -> 2 (16 to 256 channels; the paper's go to 1024) whose last gives the 2 x 2 x
256 = 1024-d latent (the paper's latent size), a mirrored nearest-upsampling decoder taking the
attributes tiled onto the latent and the next level (1.1M parameters), a spectrally normalised
hinge discriminator and a separate attribute classifier of the same widths (1.6M together).
AttGAN's loss weights (reconstruction L1 100, generator attribute loss 10, classifier on real
faces 1, adversarial 1), Adam at 2e-4 with betas (0.5, 0.999), batch 32, target attributes half
another face's, half one attribute flipped; 5,000 steps (about 18 epochs of the 9,000 training
faces), EMA of the generator at 0.999.

Measured on 2 shared CPU cores: 0.35-0.6 s a step; the full run took 35 minutes with the
evaluations (every 500 steps: held-out reconstruction errors, classifier accuracy, and how often
a flipped Male, Young, Eyeglasses or Blond_Hair is decided as flipped) and progress checkpoints,
and ended at held-out L1 0.080 (the mean image's 0.239) with the four flips decided as flipped
on 94-98% of the held-out faces (0-1% without the flip); its compact copy ships as
``bundled:attgan_celeba``. The faces stay blurry, and the edits a person sees are milder than
those numbers (the classifier is the one the generator trained against).

    jaxcf train train/configs/attgan_celeba.py --workdir workdir/attgan_celeba

Uses the registered ``celeba`` data set (64x64 RGB in [0, 1], 13 attributes; train 9,000, test
1,000: the evaluation uses the first 256 test faces).
"""

from jaxcf.models import CPU_ATTGAN
from jaxcf.training import AttGANTrainConfig


def get_config() -> AttGANTrainConfig:
    return AttGANTrainConfig(
        model=CPU_ATTGAN,
        dataset="celeba",
        targets="mixed",
        w_rec=100.0,
        w_cls_g=10.0,
        w_cls_d=1.0,
        w_adv=1.0,
        gan_loss="hinge",
        lr_generator=2e-4,
        lr_discriminator=2e-4,
        b1=0.5,
        b2=0.999,
        ema_decay=0.999,
        batch_size=32,
        steps=5000,
        eval_every=500,
        save_every=250,
        val_examples=256,
        samples=8,
        flip_attributes=("Male", "Young", "Eyeglasses", "Blond_Hair"),
    )
