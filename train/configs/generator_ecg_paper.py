"""The ECG5000 counterfactual generator on the paper's recipe (Van Looveren et al. 2021), against
the same bidirectional LSTM classifier as train/configs/generator_ecg.py (the same config, so
the same network): about 25,000 steps at batch 32, Adam 1e-3, a bidirectional LSTM generator of
512 units reading 64 noise channels drawn afresh at every time step and separate 64-d
embeddings of the classifier's prediction y_M and of the target y_T; the paper's time-series
weights (w_M 1, w_l1 2, w_cycle 2, w_G 1) and hinge loss as in the small config.

Our choices where the paper gives no number: the discriminator (an LSTM with per-step
projection logits) at the generator's width, 512 units; Adam's b1 0.5 as in every jaxcf GAN.

Too long for 2 CPU cores (docs/results/generator_ecg_curve.md measures a step and projects
the whole run); sized for an accelerator. Resumable (progress saved every 20 steps), and the
EMA generator is kept at log-spaced steps for a learning curve
(python -m explain.amortised.curve):

jaxcf train train/configs/generator_ecg_paper.py --workdir workdir/generator_ecg_paper
"""

import dataclasses
from pathlib import Path

from explain.amortised import GeneratorJob
from jaxcf.core import load_config
from jaxcf.models.generators import SeriesDiscriminatorConfig, SeriesGeneratorConfig
from jaxcf.training import GeneratorTrainConfig

PAPER_STEPS = 25_000
# Points of the learning curve: dense where 2 CPU cores get to, then doubling to the last step.
KEEP_STEPS = (
    20,
    50,
    100,
    150,
    200,
    300,
    400,
    600,
    800,
    1200,
    1600,
    3200,
    6400,
    12_800,
    PAPER_STEPS,
)


def get_config() -> GeneratorJob:
    small = load_config(Path(__file__).resolve().with_name("generator_ecg.py"))
    generator = GeneratorTrainConfig(
        generator=SeriesGeneratorConfig(
            input_shape=(140, 1), cond_dim=2, hidden=512, noise_dim=64, cond_embed=64
        ),
        discriminator=SeriesDiscriminatorConfig(input_shape=(140, 1), cond_dim=2, hidden=512),
        target="flip",
        w_model=1.0,
        w_l1=2.0,
        w_cycle=2.0,
        w_gan=1.0,
        gan_loss="hinge",
        lr_generator=1e-3,
        lr_discriminator=1e-3,
        batch_size=32,
        steps=PAPER_STEPS,
        eval_every=1000,
        save_every=20,
        keep_steps=KEEP_STEPS,
    )
    # The classifier of the small job, config for config.
    return GeneratorJob(dataset="ecg5000", classifier=small.classifier, generator=generator)


def smoke_config() -> GeneratorJob:
    """A short run for timing a step."""
    job = get_config()
    return dataclasses.replace(
        job,
        generator=dataclasses.replace(
            job.generator, steps=20, eval_every=20, save_every=20, keep_steps=()
        ),
    )
