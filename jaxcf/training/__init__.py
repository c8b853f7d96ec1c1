"""Training: one resumable loop for every model family, and each family's task on top of it.

* :func:`fit` runs a :class:`Task` (build modules from a seed, a jitted train step, an
  evaluation) with seeded shuffling, a progress bar, periodic evaluation and a progress
  checkpoint that a killed run resumes from bitwise; EMA copies of weights
  (:func:`update_ema`);
* classifiers and their feature density (:class:`TrainConfig`, :func:`train_and_evaluate`),
  VAEs (:func:`train_vae`), the AttGAN-like encoder-decoder (:func:`train_attgan`), diffusion
  models and autoencoders (:func:`train_diffusion`), conditional counterfactual generators
  (:func:`train_generator`), DiffExplainer's agent (:func:`train_agent`) and the Wasserstein
  GAN of the AnoGAN realism score (:class:`WGANTrainConfig`, :func:`train_wgan`);
* compact copies of trained models to ship (:func:`export_compact`,
  :func:`export_attgan_compact`).

Trained models load through :mod:`jaxcf.models` (``load_classifier``, ``load_vae``, ...), which
needs nothing from here.
"""

from jaxcf.training._agent import AgentConfig, train_agent
from jaxcf.training._attgan import (
    TARGETS as ATTGAN_TARGETS,
)
from jaxcf.training._attgan import (
    AttGANTask,
    AttGANTrainConfig,
    held_out_scores,
    train_attgan,
)
from jaxcf.training._classification import (
    ClassifierTask,
    TrainConfig,
    accuracy,
    eval_step,
    extract_features,
    make_optimizer,
    train_and_evaluate,
    train_step,
)
from jaxcf.training._counterfactual import (
    SNAPSHOTS_DIR,
    GeneratorTask,
    GeneratorTrainConfig,
    class_mmd2_loss,
    gan_losses,
    l1_distance,
    model_loss,
    train_generator,
)
from jaxcf.training._diffusion import DiffusionTask, DiffusionTrainConfig, train_diffusion
from jaxcf.training._ema import ema_update, update_ema
from jaxcf.training._export import export_attgan_compact, export_compact, round_to_bfloat16
from jaxcf.training._loop import (
    PROGRESS_DIR,
    FitResult,
    LoopConfig,
    Plan,
    Task,
    clear_progress,
    commit,
    final_checkpoint,
    fit,
    loop_config_of,
    loop_key,
    save_result,
    write_progress,
)
from jaxcf.training._vae import (
    LOSSES as VAE_LOSSES,
)
from jaxcf.training._vae import (
    VAETask,
    VAETrainConfig,
    reconstruction_nll,
    train_vae,
    vae_loss,
)
from jaxcf.training._wgan import (
    WGANTask,
    WGANTrainConfig,
    gradient_penalty,
    train_wgan,
    wgan_train_step,
)

__all__ = [
    "ATTGAN_TARGETS",
    "PROGRESS_DIR",
    "SNAPSHOTS_DIR",
    "VAE_LOSSES",
    "AgentConfig",
    "AttGANTask",
    "AttGANTrainConfig",
    "ClassifierTask",
    "DiffusionTask",
    "DiffusionTrainConfig",
    "FitResult",
    "GeneratorTask",
    "GeneratorTrainConfig",
    "LoopConfig",
    "Plan",
    "Task",
    "TrainConfig",
    "VAETask",
    "VAETrainConfig",
    "WGANTask",
    "WGANTrainConfig",
    "accuracy",
    "class_mmd2_loss",
    "clear_progress",
    "commit",
    "ema_update",
    "eval_step",
    "export_attgan_compact",
    "export_compact",
    "extract_features",
    "final_checkpoint",
    "fit",
    "gan_losses",
    "gradient_penalty",
    "held_out_scores",
    "l1_distance",
    "loop_config_of",
    "loop_key",
    "make_optimizer",
    "model_loss",
    "reconstruction_nll",
    "round_to_bfloat16",
    "save_result",
    "train_agent",
    "train_and_evaluate",
    "train_attgan",
    "train_diffusion",
    "train_generator",
    "train_step",
    "train_vae",
    "train_wgan",
    "update_ema",
    "vae_loss",
    "wgan_train_step",
    "write_progress",
]
