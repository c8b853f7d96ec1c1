"""The AIP protocol of aip_celeba.py with the AttGAN-like encoder-decoder that ships with the
package (``bundled:attgan_celeba``: attgan_celeba.py's model, trained on 2 CPU cores and
exported; see jaxcf/assets/README.md) instead of one trained into the workdir. The two CNNs and
the VAE are still trained when missing; this skips the AttGAN's 1 1/2 hours: the whole run took
92 minutes on 2 CPU cores (docs/results/aip_celeba.md is its report).

    jaxcf explain explain/aip/configs/aip_celeba_bundled.py \\
        --workdir workdir/aip_celeba_bundled
"""

import dataclasses
from pathlib import Path

from explain.aip import AIPJob
from jaxcf.core import load_config


def get_config() -> AIPJob:
    base = load_config(Path(__file__).with_name("aip_celeba.py"))
    attgan = dataclasses.replace(base.attgan, checkpoint="bundled:attgan_celeba")
    return dataclasses.replace(base, attgan=attgan)
