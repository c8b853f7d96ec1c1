"""The autoencoder variant on ECG5000: ``x_cf = x + D(E(x), y_m, y_t)`` with a class-conditional
MMD term towards real beats of the target class instead of a discriminator, against the same
bidirectional LSTM classifier as train/configs/generator_ecg.py.

jaxcf train train/configs/generator_ecg_ae.py \
    --workdir workdir/generator_ecg_ae
"""

import dataclasses
from pathlib import Path

from jaxcf.core import load_config
from jaxcf.models.generators import SeriesAutoencoderConfig


def get_config():
    job = load_config(Path(__file__).with_name("generator_ecg.py"))
    generator = dataclasses.replace(
        job.generator,
        generator=SeriesAutoencoderConfig(input_shape=(140, 1), cond_dim=2, hidden=64, latent=32),
        discriminator=None,
        w_gan=0.0,
        w_mmd=1.0,
    )
    return dataclasses.replace(job, generator=generator)
