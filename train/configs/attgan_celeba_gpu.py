"""GPU-sized: the AIP paper's attribute-informed encoder-decoder (AttGAN-like) on 64x64 CelebA
faces with its 13 attributes (for when a GPU is lent; not trained on CPU). Five 4x4 stride-2
convolutions 64 -> 2 (64 to 1024 channels, AttGAN's widths), a 1x1 convolution to a 2 x 2 x 256
= 1024-d latent (the paper's latent size), a mirrored nearest-upsampling decoder taking the
attributes tiled onto the latent and the next level (14.2M parameters), a spectrally normalised
hinge discriminator and a separate attribute classifier of the same widths with 1024-wide heads
(25.8M together). AttGAN's loss weights (100, 10, 1, 1), Adam at 2e-4 with betas (0.5, 0.999),
batch 32; 50,000 steps (about 180 epochs of the 9,000 training faces; AttGAN trains about 200
epochs), EMA of the generator at 0.999. About 0.2 TFLOP a step. On one H200, shared with five
other training jobs, it ran 41 to 65 steps a second (13 to 20 minutes for the 50,000); that run
was stopped at 16,000 steps to free the GPU, so this config is still untrained.

    jaxcf train train/configs/attgan_celeba_gpu.py --workdir workdir/attgan_gpu

Uses the registered ``celeba`` data set (64x64 RGB in [0, 1], 13 attributes; train 9,000, test
1,000).
"""

import dataclasses
from pathlib import Path

from jaxcf.core import load_config
from jaxcf.models import PAPER_ATTGAN
from jaxcf.training import AttGANTrainConfig

CPU = Path(__file__).resolve().parent / "attgan_celeba.py"


def get_config() -> AttGANTrainConfig:
    # The CPU config's losses, optimiser and batch; the paper's widths and a longer schedule.
    return dataclasses.replace(
        load_config(CPU),
        model=PAPER_ATTGAN,
        steps=50_000,
        eval_every=2500,
        save_every=1000,
        val_examples=512,
    )
