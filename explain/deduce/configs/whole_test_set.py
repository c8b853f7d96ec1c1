"""Every MNIST test image towards each of its 9 other classes: 10,000 x 9 = 90,000 DeDUCE
counterfactuals through the runner, on the shipped demo network (the DeDUCE paper's ResNet-18
with soft spectral norm c = 4 at width 32; see ``demo.py``).

    jaxcf explain explain/deduce/configs/whole_test_set.py --workdir workdir/whole_test_set

The runner streams the pairs in chunks of 9,000 (1,000 images), refilling 512 search slots as
queries finish, and keeps every finished chunk on disk: a stopped run resumes where it stopped.
On one GPU this is the accelerator suite's largest item; on 2 CPU cores a slice shows the rate:

    jaxcf explain explain/deduce/configs/whole_test_set.py --workdir workdir/test_slice \\
        --config.set_size=300 --config.runner.slots=128   # 2,700 pairs, CPU-sized slots

The report's L0/L1 are each pair's own successes (one method: no common subset).
"""

from explain.deduce import ProtocolConfig
from jaxcf.experiment import ModelSpec
from jaxcf.methods import DeDUCEConfig, MethodSpec
from jaxcf.runner import RunnerConfig


def get_config() -> ProtocolConfig:
    return ProtocolConfig(
        classifier=ModelSpec(checkpoint="bundled:demo_resnet_w32"),
        methods=(MethodSpec("deduce", DeDUCEConfig()),),
        n_sets=1,
        set_size=10_000,
        runner=RunnerConfig(chunk_size=9_000, slots=512, segment=4),
    )
