"""The Adult (tabular) counterfactual generator on the paper's recipe (Van Looveren et al. 2021):
1,000 epochs at batch 512 (63,000 steps: 63 full batches of the 32,561 training rows per
epoch), Adam 2e-4 for both networks, w_M 1, w_l1 10, w_G 1, no cycle loss, vanilla GAN, no
constraints and no fixed columns. The classifier is the one of train/configs/generator_adult.py
(the same config, so the same network), so the two generators explain the same model.

The networks are jaxcf's tabular generator and discriminator at CTGAN's sizes (Xu et al. 2019:
two hidden layers of 256 in each network, a 128-d noise vector). They differ from CTGAN's in
what keeps a query's counterfactual independent of its batch: layer norm instead of batch norm,
an additive residual instead of a concatenating one, a projection head instead of PacGAN's
packed rows, no dropout.

About 35 minutes on 2 CPU cores (33 ms a step); resumable (progress saved every 1,000 steps):

jaxcf train train/configs/generator_adult_paper.py \
    --workdir workdir/generator_adult_paper
"""

import dataclasses
from pathlib import Path

from explain.amortised import GeneratorJob
from jaxcf.core import load_config
from jaxcf.data import adult_transform
from jaxcf.models.generators import TabularDiscriminatorConfig, TabularGeneratorConfig
from jaxcf.training import GeneratorTrainConfig

# Steps of the paper's budget: 1,000 epochs of floor(32,561 / 512) = 63 full batches.
PAPER_STEPS = 63_000


def get_config() -> GeneratorJob:
    transform = adult_transform()
    generator = GeneratorTrainConfig(
        generator=TabularGeneratorConfig(
            transform=transform.to_dict(),
            constraints=None,
            cond_dim=2,
            width=256,
            blocks=2,
            noise_dim=128,
        ),
        discriminator=TabularDiscriminatorConfig(
            input_dim=transform.dim, cond_dim=2, width=256, blocks=2
        ),
        target="flip",
        # The paper's tabular weights; our L1 is the mean over the 85 encoded dimensions.
        w_model=1.0,
        w_l1=10.0,
        w_cycle=0.0,
        w_gan=1.0,
        gan_loss="vanilla",
        fixed_prob=0.0,
        lr_generator=2e-4,
        lr_discriminator=2e-4,
        batch_size=512,
        steps=PAPER_STEPS,
        eval_every=3000,
        save_every=1000,
    )
    # The classifier of the constrained job, config for config.
    constrained = load_config(Path(__file__).resolve().with_name("generator_adult.py"))
    return GeneratorJob(dataset="adult", classifier=constrained.classifier, generator=generator)


def smoke_config() -> GeneratorJob:
    """A short run for checks (and for timing a step)."""
    job = get_config()
    return dataclasses.replace(
        job, generator=dataclasses.replace(job.generator, steps=300, eval_every=100)
    )
