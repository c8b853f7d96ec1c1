"""DiffExplainer on PneumoniaMNIST: a small CNN teacher (normal vs pneumonia), the diffusion
autoencoder of train/configs/diffae_pneumonia.py, an agent distilled with L1 on the teacher's
features, and a sweep of six steps along the agent's gradient; 100 test images explained
towards the other class, the 6 most indeterminate pushed towards both.

    jaxcf explain explain/diffexplainer/configs/diffexplainer_pneumonia.py \
        --workdir workdir/diffae_pneumonia
"""

from pathlib import Path

from explain.diffexplainer import DiffExplainerJob
from jaxcf.core import load_config
from jaxcf.experiment import ModelSpec
from jaxcf.methods import DiffExplainerConfig
from jaxcf.models import CNNConfig
from jaxcf.training import AgentConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[3]


def get_config() -> DiffExplainerJob:
    return DiffExplainerJob(
        teacher=ModelSpec(
            train=TrainConfig(
                model=CNNConfig(num_classes=2),
                dataset="pneumoniamnist",
                optimizer="adam",
                learning_rate=1e-3,
                lr_boundaries=(),
                epochs=10,
                train_examples=4708,
            )
        ),
        diffusion=ModelSpec(train=load_config(ROOT / "train" / "configs" / "diffae_pneumonia.py")),
        agent=AgentConfig(loss="l1", steps=3000),
        explain=DiffExplainerConfig(alphas=(0.05, 0.1, 0.2, 0.3, 0.5, 0.8), num_steps=50),
        queries=100,
        sweep_queries=32,
        indeterminate=6,
    )
