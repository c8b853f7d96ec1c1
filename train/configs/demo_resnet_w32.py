"""The demo's DeDUCE classifier: ResNet-18 at width 32 (half the paper's channels) with soft
spectral norm c = 4, trained 5 epochs on MNIST (learning rate cut x0.1 after 3.75 epochs).

    jaxcf train train/configs/demo_resnet_w32.py --workdir workdir/demo_resnet_w32

About 33 minutes on 2 CPU cores. The demo does not train it: a compact copy ships with the
package (see jaxcf/assets/README.md for how it is rebuilt from this config and checked).
"""

from jaxcf.models import ResNetConfig
from jaxcf.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model=ResNetConfig(base_width=32, coeff=4.0), epochs=5, lr_boundaries=(3.75,)
    )
