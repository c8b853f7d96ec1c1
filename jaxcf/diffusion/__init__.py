"""Denoising diffusion: noise schedules, DDPM / DDIM sampling and inversion (pure functions).

See :mod:`jaxcf.models` for the denoising network and :mod:`jaxcf.training` for
training it.
"""

from jaxcf.diffusion._sampling import (
    Denoiser,
    ddim_invert,
    ddim_step,
    ddpm_step,
    denoise_step,
    epsilon_loss,
    inversion_end,
    predict_x0,
    q_sample,
    sample,
    step_noise,
)
from jaxcf.diffusion._schedule import (
    NoiseSchedule,
    ScheduleConfig,
    cosine_betas,
    linear_betas,
    make_schedule,
)

__all__ = [
    "Denoiser",
    "NoiseSchedule",
    "ScheduleConfig",
    "cosine_betas",
    "ddim_invert",
    "ddim_step",
    "ddpm_step",
    "denoise_step",
    "epsilon_loss",
    "inversion_end",
    "linear_betas",
    "make_schedule",
    "predict_x0",
    "q_sample",
    "sample",
    "step_noise",
]
