"""Experiments: the models an experiment needs (found, or trained when missing), several methods
over one list of queries and targets, their evaluation and a report; what ``jaxcf train`` and
``jaxcf explain`` run."""

from jaxcf.experiment._evaluate import evaluate, grid_rows, run_methods, write_report
from jaxcf.experiment._protocol import Experiment
from jaxcf.experiment._train import train, trainable

__all__ = [
    "Experiment",
    "evaluate",
    "grid_rows",
    "run_methods",
    "train",
    "trainable",
    "write_report",
]
