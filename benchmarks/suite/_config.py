"""The suite's settings: what to run (:class:`Config`) and at which sizes (:class:`Preset`).

Three presets:

* ``paper`` (the default on an accelerator): the papers' model sizes (see each field) and batch
  sweeps that fill a GPU;
* ``cpu`` (the default on a CPU): the same networks and search iterations, with small batches
  and far fewer sampler steps (each reduction is the preset's own field, recorded with the
  results);
* ``quick``: toy sizes, one small batch per family, for the test that checks every family
  produces a record (seconds on a CPU; its numbers mean nothing).
"""

from __future__ import annotations

import dataclasses

from benchmarks import common
from jaxcf.core import validation
from jaxcf.models import (
    PAPER_ATTGAN,
    AttGANConfig,
    BiLSTMConfig,
    CNNConfig,
    DiffAEConfig,
    SemanticEncoderConfig,
    UNetConfig,
    VAEConfig,
)
from jaxcf.models.generators import ImageGeneratorConfig, SeriesGeneratorConfig

FAMILIES = (
    "deduce",
    "jsma",
    "wachter",
    "fgsm",
    "revise",
    "aip",
    "generator_image",
    "generator_ecg",
    "generator_tabular",
    "guided_one_step",
    "guided_rollout",
    "diffexplainer",
)
"""Every family, in the order the suite runs them (cheap programs first)."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """Model sizes, batch sweeps and fixed work of one run of the suite.

    Attributes:
      name: the preset's name.
      resnet_width: base width of the 28x28 ResNet-18s (64: the DeDUCE paper's).
      resnet_blocks: blocks per ResNet stage ((2, 2, 2, 2): ResNet-18).
      updates: updates per query of every search (DeDUCE, JSMA, Wachter, REVISE, AIP): each
        query runs exactly this many, whether or not it reaches its target.
      search_batches: DeDUCE's batch sweep (queries).
      baseline_batches: JSMA's and Wachter's batch sweep (the plain ResNet-18 costs a twentieth
        of DeDUCE's network per query).
      fgsm_batches: batch sweep of FGSM.
      face_classifier: the 64x64 face classifier REVISE, AIP and the guided samplers explain
        (the AIP setting's gender CNN); the image generator's and DiffExplainer's have the same
        layers with their own class counts.
      vae: REVISE's VAE (the GPU CelebA VAE of ``train/configs/vae_celeba_gpu.py``).
      revise_batches: REVISE's batch sweep.
      attgan: AIP's attribute model (the paper's AttGAN widths, 1024-d latent).
      aip_batches: AIP's batch sweep.
      image_generator: the image generator (64x64 faces, 4 classes: the generator paper's
        young/smiling task).
      image_batches: its batch sweep.
      series_generator: the ECG generator (LSTM hidden 512, 64 noise channels per step).
      series_classifier: the ECG classifier (the paper's bidirectional LSTM, 256 units).
      series_batches: its batch sweep.
      tabular_width: the Adult generator's residual-MLP width.
      tabular_blocks: its residual blocks.
      tabular_hidden: hidden units of the Adult MLP classifier.
      tabular_batches: its batch sweep.
      unet: the guided samplers' denoiser (the 64x64 UNet of ``train/configs/ddpm_celeba.py``).
      guided_start: the samplers' start, a fraction of the 1,000-step schedule (DiME: 0.3).
      guided_steps: steps of the respaced schedule over the whole process (200 gives DiME's
        60 steps below a start of 0.3).
      guided_batches: the one-step sampler's batch sweep.
      rollout_batches: the rollout's batch sweep.
      diffae: DiffExplainer's diffusion autoencoder (that UNet conditioned on a 512-d code, and a
        semantic encoder).
      diffexplainer_steps: DDIM steps of DiffExplainer's inversion and decodings.
      diffexplainer_batches: its batch sweep.
      matmul: side of the square matrices of the ceiling.
      repeats: timed calls at least (their median counts).
      min_seconds: timed calls go on, up to 20, until they add up to this.
      max_seconds: no more calls are timed once they add up to this (at least one is); None:
        no limit.
      budget_s: the run's default time budget (seconds).
      compiler_options: XLA compiler options, as ``(name, value)`` pairs, for every measured
        program (``quick``: the CPU backend's optimisation off, which compiles its toy programs
        two to three times faster).
    """

    name: str
    resnet_width: int
    resnet_blocks: tuple[int, int, int, int]
    updates: int
    search_batches: tuple[int, ...]
    baseline_batches: tuple[int, ...]
    fgsm_batches: tuple[int, ...]
    face_classifier: CNNConfig
    vae: VAEConfig
    revise_batches: tuple[int, ...]
    attgan: AttGANConfig
    aip_batches: tuple[int, ...]
    image_generator: ImageGeneratorConfig
    image_batches: tuple[int, ...]
    series_generator: SeriesGeneratorConfig
    series_classifier: BiLSTMConfig
    series_batches: tuple[int, ...]
    tabular_width: int
    tabular_blocks: int
    tabular_hidden: int
    tabular_batches: tuple[int, ...]
    unet: UNetConfig
    guided_start: float
    guided_steps: int
    guided_batches: tuple[int, ...]
    rollout_batches: tuple[int, ...]
    diffae: DiffAEConfig
    diffexplainer_steps: int
    diffexplainer_batches: tuple[int, ...]
    matmul: int
    repeats: int
    min_seconds: float
    max_seconds: float | None
    budget_s: float
    compiler_options: tuple[tuple[str, object], ...] = ()

    def batches(self, family: str) -> tuple[int, ...]:
        """The batch sweep of ``family``."""
        return getattr(self, _SWEEPS[family])


_SWEEPS = {
    "deduce": "search_batches",
    "jsma": "baseline_batches",
    "wachter": "baseline_batches",
    "fgsm": "fgsm_batches",
    "revise": "revise_batches",
    "aip": "aip_batches",
    "generator_image": "image_batches",
    "generator_ecg": "series_batches",
    "generator_tabular": "tabular_batches",
    "guided_one_step": "guided_batches",
    "guided_rollout": "rollout_batches",
    "diffexplainer": "diffexplainer_batches",
}

FACES = (64, 64, 3)
_FACE_CNN = CNNConfig(input_shape=FACES, num_classes=2, channels=(32, 64), hidden=128)
_UNET_64 = UNetConfig(
    input_shape=FACES,
    width=128,
    channel_mult=(1, 2, 2, 2),
    blocks=2,
    attention=(16,),
    heads=4,
    groups=32,
)


def _diffae(unet: UNetConfig, width: int) -> DiffAEConfig:
    return DiffAEConfig(
        unet=dataclasses.replace(unet, cond_dim=512),
        encoder=SemanticEncoderConfig(
            input_shape=unet.input_shape,
            width=width,
            channel_mult=(1, 2, 4, 8, 8),
            code_dim=512,
            groups=min(32, width),
        ),
    )


PAPER = Preset(
    name="paper",
    resnet_width=64,
    resnet_blocks=(2, 2, 2, 2),
    updates=20,
    search_batches=(256, 1024, 4096),
    baseline_batches=(1024, 4096, 16384),
    fgsm_batches=(2048, 8192, 32768),
    face_classifier=_FACE_CNN,
    vae=VAEConfig(
        input_shape=FACES, latent_dim=128, widths=(64, 128, 256, 512), kernel_size=4, hidden=0
    ),
    revise_batches=(64, 256, 1024),
    attgan=PAPER_ATTGAN,
    aip_batches=(64, 256, 1024),
    image_generator=ImageGeneratorConfig(input_shape=FACES, cond_dim=4, width=64, blocks=4),
    image_batches=(256, 1024, 2048),
    series_generator=SeriesGeneratorConfig(
        input_shape=(140, 1), cond_dim=2, hidden=512, noise_dim=64
    ),
    series_classifier=BiLSTMConfig(input_shape=(140, 1), num_classes=2, hidden=256),
    series_batches=(256, 1024, 4096),
    tabular_width=128,
    tabular_blocks=2,
    tabular_hidden=64,
    tabular_batches=(4096, 32768, 262144),
    unet=_UNET_64,
    guided_start=0.3,
    guided_steps=200,
    guided_batches=(8, 32, 128),
    rollout_batches=(2, 8),
    diffae=_diffae(_UNET_64, 64),
    diffexplainer_steps=50,
    diffexplainer_batches=(4, 16, 64),
    matmul=8192,
    repeats=3,
    min_seconds=0.5,
    max_seconds=5.0,
    budget_s=450.0,
)

CPU = dataclasses.replace(
    PAPER,
    name="cpu",
    search_batches=(4, 16),
    baseline_batches=(16, 64),
    fgsm_batches=(16, 64, 256),
    revise_batches=(4, 16),
    aip_batches=(4, 16),
    image_batches=(16, 64, 256),
    series_batches=(16, 64, 256),
    tabular_batches=(1024, 16384, 131072),
    guided_steps=10,
    guided_batches=(1, 2),
    rollout_batches=(1, 2),
    diffexplainer_steps=4,
    diffexplainer_batches=(1, 2),
    matmul=2048,
    repeats=1,
    min_seconds=0.0,
    max_seconds=None,
    budget_s=840.0,
)

_TINY = (16, 16, 3)
_TINY_UNET = UNetConfig(input_shape=_TINY, width=4, channel_mult=(1,), attention=(), groups=2)

QUICK = Preset(
    name="quick",
    resnet_width=4,
    resnet_blocks=(1, 1, 1, 1),
    updates=2,
    search_batches=(2,),
    baseline_batches=(2,),
    fgsm_batches=(2,),
    face_classifier=CNNConfig(input_shape=_TINY, num_classes=2, channels=(4, 8), hidden=8),
    vae=VAEConfig(input_shape=_TINY, latent_dim=4, widths=(4, 8), kernel_size=4, hidden=0),
    revise_batches=(2,),
    attgan=AttGANConfig(
        input_shape=_TINY,
        encoder_widths=(4, 8),
        latent_channels=None,
        discriminator_hidden=8,
    ),
    aip_batches=(2,),
    image_generator=ImageGeneratorConfig(input_shape=_TINY, cond_dim=4, width=8, blocks=1),
    image_batches=(2,),
    series_generator=SeriesGeneratorConfig(input_shape=(8, 1), cond_dim=2, hidden=4, noise_dim=2),
    series_classifier=BiLSTMConfig(input_shape=(8, 1), num_classes=2, hidden=4),
    series_batches=(2,),
    tabular_width=8,
    tabular_blocks=1,
    tabular_hidden=8,
    tabular_batches=(2, 4),  # one sweep of two batches: the cheapest family's
    unet=_TINY_UNET,
    guided_start=0.3,
    guided_steps=6,
    guided_batches=(1,),
    rollout_batches=(1,),
    diffae=DiffAEConfig(
        unet=dataclasses.replace(_TINY_UNET, cond_dim=8),
        encoder=SemanticEncoderConfig(
            input_shape=_TINY, width=4, channel_mult=(1, 2), code_dim=8, groups=2
        ),
    ),
    diffexplainer_steps=3,
    diffexplainer_batches=(1,),
    matmul=128,
    repeats=1,
    min_seconds=0.0,
    max_seconds=None,
    budget_s=120.0,
    compiler_options=(
        ("xla_backend_optimization_level", 0),
        ("xla_llvm_disable_expensive_passes", True),
    ),
)

PRESETS = {p.name: p for p in (PAPER, CPU, QUICK)}


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench suite``.

    Attributes:
      preset: ``paper``, ``cpu`` or ``quick`` (see :data:`PRESETS`); empty: ``cpu`` on a CPU,
        ``paper`` on an accelerator.
      families: the families to run, comma-separated (empty: all of :data:`FAMILIES`).
      budget_s: seconds the whole run may take (after JAX's start; None: the preset's, 450
        for ``paper``); a sweep whose next batch would end past its family's share is cut
        there, and a family that starts past the budget is skipped, each recorded with its
        reason.
      out: folder the JSON and markdown go to.
    """

    preset: str = ""
    families: str = ""
    budget_s: float | None = None
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.one_of(self, "preset", ("", *PRESETS))
        if self.families:
            common.check_items(self, "families", FAMILIES)
        if self.budget_s is not None:
            validation.non_negative(self, "budget_s")

    def family_names(self) -> tuple[str, ...]:
        """The families to run, in the suite's order."""
        wanted = set(common.items(self.families)) if self.families else set(FAMILIES)
        return tuple(f for f in FAMILIES if f in wanted)
