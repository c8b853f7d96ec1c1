"""DeDUCE's ablation (explain/deduce/ablation.py) on the first set of 100 protocol images (900
pairs), explaining the bundled width-32 network; point it at another classifier with
``--config.classifier.checkpoint=...`` (e.g. ``workdir/cpu_paper/models/classifier``).

    jaxcf explain explain/deduce/configs/ablation.py --workdir workdir/ablation
"""

from explain.deduce.ablation import AblationConfig
from jaxcf.experiment import ModelSpec


def get_config() -> AblationConfig:
    return AblationConfig(classifier=ModelSpec(checkpoint="bundled:demo_resnet_w32"), sets=1)
