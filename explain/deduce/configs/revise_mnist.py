"""REVISE beside DeDUCE and JSMA in the DeDUCE paper's MNIST protocol: one set of 100 test
images x 9 targets = 900 pairs, all three methods explaining the bundled width-32 ResNet-18 (soft
spectral norm c = 4) so that the comparison isolates the methods. REVISE searches the 32-d code of
the MNIST VAE of ``train/configs/vae_mnist.py`` (trained into ``<workdir>/models/vae`` first when
missing, about 18 minutes on 2 cores), with per-query Adam (step 0.01, at most 1,000 updates) on
``CE + 0.1 * |x - dec(z)|_1`` from the encoder mean. The published baseline weighted the L1 term 1
and took plain steps of 1e-5 for up to 50,000 updates; with weight 1 the L1 term wins here: on 32 of
the protocol's pairs no query reached the target within 1,000 updates (the descent settles where the
target probability is still below 0.5), while weight 0.1 flipped 31 of them in 147 updates on
average at an L1 of 54.

    jaxcf explain explain/deduce/configs/revise_mnist.py --workdir workdir/revise_mnist

Results are recorded in docs/results/revise_mnist.md.
"""

from pathlib import Path

from explain.deduce import ProtocolConfig
from jaxcf.core import load_config
from jaxcf.experiment import ModelSpec
from jaxcf.methods import DeDUCEConfig, JSMAConfig, MethodSpec, REVISEConfig
from jaxcf.runner import RunnerConfig

VAE = Path(__file__).resolve().parents[3] / "train" / "configs" / "vae_mnist.py"


def get_config() -> ProtocolConfig:
    return ProtocolConfig(
        classifier=ModelSpec(checkpoint="bundled:demo_resnet_w32"),
        methods=(
            MethodSpec("deduce", DeDUCEConfig()),
            MethodSpec("jsma", JSMAConfig()),
            MethodSpec("revise", REVISEConfig(distance_weight=0.1)),
        ),
        n_sets=1,
        set_size=100,
        runner=RunnerConfig(chunk_size=900, slots=128, segment=4),
        vae=ModelSpec(train=load_config(VAE)),
    )
