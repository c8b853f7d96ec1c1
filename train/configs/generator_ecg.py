"""The ECG5000 counterfactual generator against the paper's bidirectional LSTM classifier
(train/configs/bilstm_ecg.py): an LSTM generator adding a per-step perturbation with fresh
noise at every step, an LSTM discriminator with per-step logits, hinge loss, cycle loss, the
paper's time-series weights (w_M 1, w_l1 2, w_cycle 2, w_G 1).

jaxcf train train/configs/generator_ecg.py --workdir workdir/generator_ecg
"""

from pathlib import Path

from explain.amortised import GeneratorJob
from jaxcf.core import load_config
from jaxcf.models.generators import SeriesDiscriminatorConfig, SeriesGeneratorConfig
from jaxcf.training import GeneratorTrainConfig


def get_config() -> GeneratorJob:
    classifier = load_config(Path(__file__).with_name("bilstm_ecg.py"))
    generator = GeneratorTrainConfig(
        generator=SeriesGeneratorConfig(input_shape=(140, 1), cond_dim=2, hidden=64, noise_dim=4),
        discriminator=SeriesDiscriminatorConfig(input_shape=(140, 1), cond_dim=2, hidden=64),
        target="flip",
        w_model=1.0,
        w_l1=2.0,
        w_cycle=2.0,
        w_gan=1.0,
        gan_loss="hinge",
        lr_generator=1e-3,
        lr_discriminator=1e-3,
        # Sized for 2 CPU cores (~10 minutes): the classifier's 256-unit BiLSTM runs forwards
        # and backwards in every step.
        batch_size=32,
        steps=1000,
        eval_every=250,
        save_every=250,
    )
    return GeneratorJob(dataset="ecg5000", classifier=classifier, generator=generator)
