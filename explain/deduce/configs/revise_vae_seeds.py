"""REVISE alone on the 900 pairs of ``revise_mnist.py``, for the MNIST VAE's training-seed spread:
the same classifier, pairs, search settings and VAE config, with the VAE's seed set from the
command line, one workdir per seed (each trains its VAE into ``<workdir>/models/vae``, about 19
minutes on 2 cores, then runs REVISE, about 14). DeDUCE and JSMA do not depend on the VAE, so
they are left out here.

    jaxcf explain explain/deduce/configs/revise_vae_seeds.py \
        --workdir workdir/seeds/vae_mnist/seed_1 --config.vae.train.seed=1

Results: docs/results/vae_mnist_seeds.md (aggregated by python -m explain.seeds, see
docs/reproductions/reproducibility.md).
"""

import dataclasses

from explain.deduce import ProtocolConfig
from explain.deduce.configs import revise_mnist


def get_config() -> ProtocolConfig:
    config = revise_mnist.get_config()
    revise = tuple(m for m in config.methods if m.name == "revise")
    return dataclasses.replace(config, methods=revise)
