"""Explains my_model.py's network on Fashion-MNIST test images with DeDUCE, JSMA and Wachter.

    jaxcf explain my_experiment.py --workdir work

Run it from this folder (so that ``my_model`` imports) after ``python train_my_model.py``.
"""

from jaxcf.experiment import DataSpec, ExperimentConfig, UserModel
from jaxcf.methods import DeDUCEConfig, JSMAConfig, MethodSpec, WachterConfig
from jaxcf.runner import RunnerConfig


def get_config():
    return ExperimentConfig(
        classifier=UserModel(
            kind="nnx",
            code="my_model:build",
            checkpoint="fashion_net",
            features="features",
            head="head",
            domain=(0.0, 1.0),  # pixels in [0, 1]: the searches stay in the box
        ),
        data=DataSpec("fashion_mnist", split="test", queries=20),
        targets="second",  # towards each image's runner-up class
        methods=(
            MethodSpec("deduce", DeDUCEConfig()),
            MethodSpec("jsma", JSMAConfig()),
            MethodSpec("wachter", WachterConfig()),
        ),
        runner=RunnerConfig(chunk_size=20, slots=20),
        title="My Fashion-MNIST network",
    )
