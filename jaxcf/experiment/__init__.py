"""Experiments: what every explanation experiment is made of, and what ``jaxcf train`` and
``jaxcf explain`` run.

* models: :class:`ModelSpec` names a model (an existing checkpoint, a bundled one, or a
  training config run into ``<workdir>/models/<name>`` when missing); :func:`resolve_model`
  finds or trains it and loads it as a :class:`LoadedModel`; :func:`train` trains any model
  family from its config;
* queries and targets: target rules (:func:`targets_by_rule`, :func:`every_other_class`,
  :func:`flip_targets`, :func:`soft_targets`);
* methods: :func:`run_methods` runs :class:`~jaxcf.methods.MethodSpec`\\ s through the runner,
  each run kept in a run store under a key of everything its results depend on, so any
  experiment asking for the same explainer, queries and seed reuses it;
* evaluation and report: :func:`evaluate`, :func:`write_report` into ``<workdir>/report/``;
* :class:`ExperimentConfig`: a whole experiment on a user's classifier and a registered data
  set, from a config file (``jaxcf explain my_config.py --workdir W``);
* :class:`Experiment`: what ``jaxcf explain`` runs (any config with ``run(workdir)``).

Several processes: every process runs the methods on its share of each chunk; models are
trained in one process beforehand; process 0 alone evaluates and writes the report
(:func:`is_main_process`).
"""

from jaxcf.experiment._config import (
    DEFAULT_VAE_STEPS,
    ExperimentConfig,
    TargetsFile,
    is_main_process,
)
from jaxcf.experiment._data import (
    TFDS,
    DataSpec,
    ImageFiles,
    NpyFiles,
    QueryRows,
    TableFile,
)
from jaxcf.experiment._evaluate import evaluate
from jaxcf.experiment._models import (
    KINDS,
    MODELS_DIR,
    LoadedModel,
    ModelSpec,
    checkpoint_path,
    ensure_trained,
    load_model,
    model_dir,
    resolve_model,
)
from jaxcf.experiment._protocol import Experiment
from jaxcf.experiment._report import (
    HTML_DIR,
    REPORT_DIR,
    grid_rows,
    stored_runs,
    write_html_report,
    write_report,
)
from jaxcf.experiment._runs import (
    RUNS_DIR,
    run_dir,
    run_explainer,
    run_key,
    run_methods,
    steady_timing,
)
from jaxcf.experiment._targets import (
    RULES,
    every_other_class,
    flip_targets,
    soft_targets,
    targets_by_rule,
)
from jaxcf.experiment._train import train, trainable
from jaxcf.experiment._user_model import UserModel

__all__ = [
    "DEFAULT_VAE_STEPS",
    "HTML_DIR",
    "KINDS",
    "MODELS_DIR",
    "REPORT_DIR",
    "RULES",
    "RUNS_DIR",
    "TFDS",
    "DataSpec",
    "Experiment",
    "ExperimentConfig",
    "ImageFiles",
    "LoadedModel",
    "ModelSpec",
    "NpyFiles",
    "QueryRows",
    "TableFile",
    "TargetsFile",
    "UserModel",
    "checkpoint_path",
    "ensure_trained",
    "evaluate",
    "every_other_class",
    "flip_targets",
    "grid_rows",
    "is_main_process",
    "load_model",
    "model_dir",
    "resolve_model",
    "run_dir",
    "run_explainer",
    "run_key",
    "run_methods",
    "soft_targets",
    "steady_timing",
    "stored_runs",
    "targets_by_rule",
    "train",
    "trainable",
    "write_html_report",
    "write_report",
]
