"""Training: one resumable loop for every model family, and the classifier family on top of it.

* :mod:`jaxcf.training.loop`: :func:`fit` runs a :class:`Task` (build modules from a seed, a
  jitted train step, an evaluation) with seeded shuffling, a progress bar, periodic evaluation
  and a progress checkpoint that a killed run resumes from bitwise;
* :mod:`jaxcf.training.ema`: exponential moving averages of weights;
* :mod:`jaxcf.training.classification`: :class:`TrainConfig`, :func:`train_and_evaluate` and
  :func:`load_classifier` for the classifier zoo and its feature density.
"""

from jaxcf.training.classification import (
    ClassifierTask,
    TrainConfig,
    accuracy,
    eval_step,
    extract_features,
    load_classifier,
    make_optimizer,
    train_and_evaluate,
    train_step,
)
from jaxcf.training.ema import ema_update, update_ema
from jaxcf.training.loop import (
    CHECKPOINT_DIR,
    PROGRESS_DIR,
    FitResult,
    LoopConfig,
    Plan,
    Task,
    clear_progress,
    commit,
    final_checkpoint,
    fit,
    loop_key,
    save_result,
    write_progress,
)

__all__ = [
    "CHECKPOINT_DIR",
    "PROGRESS_DIR",
    "ClassifierTask",
    "FitResult",
    "LoopConfig",
    "Plan",
    "Task",
    "TrainConfig",
    "accuracy",
    "clear_progress",
    "commit",
    "ema_update",
    "eval_step",
    "extract_features",
    "final_checkpoint",
    "fit",
    "load_classifier",
    "loop_key",
    "make_optimizer",
    "save_result",
    "train_and_evaluate",
    "train_step",
    "update_ema",
    "write_progress",
]
