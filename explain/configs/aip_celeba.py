"""The AIP protocol on 64x64 CelebA at CPU size: the gender and age CNNs of
train/configs/cnn_celeba_{male,young}.py, the VAE of vae_celeba.py and the AttGAN-like model of
attgan_celeba.py (each trained into the workdir when missing, about 1 1/2 hours in all on 2
CPU cores); the five methods at their published settings (AIP and AIP_R: alpha 1.5, beta 0.9,
mu 2, gamma 3, at most 500 iterations; REVISE and xGEMs with per-query Adam, 1,000 iterations)
except two, both measured in jaxcf/protocols/aip.py: REVISE's L1 weighted 0.1, not 1, and AIP's
first steps 0.02 and 0.03 (mu 2, gamma 3 wreck the faces) on the first 500 test faces; AIP on
200 test faces against the age classifier; augmentation with 3 seeds of 2,000 training faces,
1,000 of them explained by AIP at the published steps (run before the comparison's steps were
chosen; rerunning at the smaller steps takes hours on 2 cores, because the seed classifiers AIP
does not flip cost the full 500 updates each).

    python -m explain.aip --config explain/configs/aip_celeba.py --workdir workdir/aip_celeba
"""

from pathlib import Path

from jaxcf.config_file import load_config
from jaxcf.methods import AIPConfig, MethodSpec
from jaxcf.protocols.aip import AIPJob, AugmentConfig

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"


def get_config() -> AIPJob:
    return AIPJob(
        classifier=load_config(CONFIGS / "cnn_celeba_male.py"),
        age_classifier=load_config(CONFIGS / "cnn_celeba_young.py"),
        vae=load_config(CONFIGS / "vae_celeba.py"),
        attgan=load_config(CONFIGS / "attgan_celeba.py"),
        queries=500,
        attribute_queries=200,
        augment=AugmentConfig(
            subset=2000, augmented=1000, seeds=(0, 1, 2), method=MethodSpec("aip", AIPConfig())
        ),
    )
