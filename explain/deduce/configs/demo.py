"""The demo: one set of 50 MNIST test images x 9 targets = 450 pairs, explained by DeDUCE, JSMA,
Wachter and FGSM on one network.

    jaxcf explain explain/deduce/configs/demo.py --workdir workdir/demo

The network is shipped with the package (``bundled:demo_resnet_w32``): the DeDUCE paper's
ResNet-18 with soft spectral norm c = 4 at width 32, trained 5 epochs by
``train/configs/demo_resnet_w32.py`` (33 minutes on 2 cores, too long for a demo) and stored as a
compact copy (weights rounded to bfloat16 precision; see jaxcf/assets/README.md). Width 32 is the
narrowest at which DeDUCE's advantage over JSMA shows on CPU-trained networks; all four methods
explain this one network, so the comparison isolates the methods.
"""

from explain.deduce import ProtocolConfig
from jaxcf.experiment import ModelSpec
from jaxcf.methods import DeDUCEConfig, FGSMConfig, JSMAConfig, MethodSpec, WachterConfig
from jaxcf.runner import RunnerConfig


def get_config() -> ProtocolConfig:
    return ProtocolConfig(
        classifier=ModelSpec(checkpoint="bundled:demo_resnet_w32"),
        methods=(
            MethodSpec("deduce", DeDUCEConfig()),
            MethodSpec("jsma", JSMAConfig()),
            MethodSpec("wachter", WachterConfig()),
            MethodSpec("fgsm", FGSMConfig(eps=0.05, schedule=(0.1, 0.2, 0.3, 0.5))),
        ),
        n_sets=1,
        set_size=50,
        runner=RunnerConfig(chunk_size=450, slots=128, segment=4),
        # FGSM, one signed step, fails most pairs; comparing L0/L1 only where it succeeded too
        # would keep the easiest pairs alone.
        common_over=("deduce", "jsma", "wachter"),
    )
