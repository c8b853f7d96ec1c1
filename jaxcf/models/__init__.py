"""Models: the networks counterfactual methods explain and search with, as Flax NNX modules, and
the trained ones as pure pytrees ready for a method.

* classifiers offering the classifier protocol (MLP, small CNN, DeDUCE's ResNet-18 with soft
  spectral norm and the plain ResNet-18, BiLSTM for series), :func:`build` from a config and
  :func:`load_classifier` from a checkpoint, with the class-conditional feature density
  (:class:`GaussianDensity`; full, shrinkage or PCA fits by :class:`DensityConfig`, and a
  :class:`DegenerateDensityWarning` when a fit is degenerate);
* generative models: convolutional VAEs (:class:`VAEModel`, :func:`load_vae`), the AttGAN-like
  attribute-conditioned encoder-decoder (:class:`AttributeModel`, :func:`load_attgan`), UNets
  and diffusion autoencoders (:class:`DiffusionModel`, :func:`load_diffusion`), DiffExplainer's
  agent (:class:`Agent`, :func:`load_agent`), the conditional counterfactual generators
  (:mod:`jaxcf.models.generators`, :func:`load_generator`) and the Wasserstein GAN of the
  AnoGAN realism score (:class:`WGANModel`, :func:`load_wgan`);
* checkpoints (:mod:`jaxcf.models.checkpoint`: Orbax plus JSON metadata, no pickle) and the
  content digests of shipped models.
"""

from jaxcf.models import checkpoint, generators
from jaxcf.models._adapters import (
    equinox_classifier,
    function_classifier,
    import_object,
    linen_classifier,
    load_params,
    nnx_classifier,
)
from jaxcf.models._agent import Agent, load_agent, save_agent, semantic_codes
from jaxcf.models._attgan import (
    CPU_ATTGAN,
    EXCLUSIVE,
    PAPER_ATTGAN,
    AttGANConfig,
    AttGANGenerator,
    AttributeDiscriminator,
    AttributeModel,
    attribute_conflicts,
    build_attgan,
    flip_attributes,
    load_attgan,
    load_attgan_modules,
)
from jaxcf.models._attgan import (
    KIND as ATTGAN_KIND,
)
from jaxcf.models._bundled import DIGEST_FILE, content_digest, verify
from jaxcf.models._classifiers import (
    MLP,
    BasicBlock,
    CNNConfig,
    MLPConfig,
    ModelConfig,
    ResNet18,
    ResNetConfig,
    SmallCNN,
    StandardBlock,
    StandardResNet18,
    StandardResNetConfig,
    build,
    config_from_dict,
    config_to_dict,
    load_classifier,
)
from jaxcf.models._density import Density, GaussianDensity, as_density
from jaxcf.models._density_fit import (
    DEFAULT_EXPLAINED,
    DegenerateDensityWarning,
    DensityConfig,
    DensityDiagnostics,
    DensityFit,
    class_moments,
    fit_density,
    fit_gaussians,
    ledoit_wolf_shrinkage,
)
from jaxcf.models._diffusion import DiffusionModel, ImageSpace, load_diffusion
from jaxcf.models._saved import check_fits, open_checkpoint
from jaxcf.models._sequence import BiLSTM, BiLSTMConfig
from jaxcf.models._spectral import SpectralConv, operator_norm, refine_spectral_norms
from jaxcf.models._unet import (
    DiffAEConfig,
    DiffusionAutoencoder,
    SemanticEncoder,
    SemanticEncoderConfig,
    UNet,
    UNetConfig,
    build_denoiser,
    denoiser_config_from_dict,
    timestep_embedding,
)
from jaxcf.models._vae import (
    CELEBA_VAE,
    MNIST_VAE,
    VAE,
    VAEConfig,
    VAEModel,
    gaussian_kl,
    load_vae,
    reparametrise,
)
from jaxcf.models._vae import (
    KIND as VAE_KIND,
)
from jaxcf.models._wgan import (
    KIND as WGAN_KIND,
)
from jaxcf.models._wgan import (
    MNIST_WGAN,
    WGANConfig,
    WGANCritic,
    WGANGenerator,
    WGANModel,
    build_wgan,
    load_wgan,
)
from jaxcf.models.generators import load_generator

__all__ = [
    "ATTGAN_KIND",
    "CELEBA_VAE",
    "CPU_ATTGAN",
    "DEFAULT_EXPLAINED",
    "DIGEST_FILE",
    "EXCLUSIVE",
    "MLP",
    "MNIST_VAE",
    "MNIST_WGAN",
    "PAPER_ATTGAN",
    "VAE",
    "VAE_KIND",
    "WGAN_KIND",
    "Agent",
    "AttGANConfig",
    "AttGANGenerator",
    "AttributeDiscriminator",
    "AttributeModel",
    "BasicBlock",
    "BiLSTM",
    "BiLSTMConfig",
    "CNNConfig",
    "DegenerateDensityWarning",
    "Density",
    "DensityConfig",
    "DensityDiagnostics",
    "DensityFit",
    "DiffAEConfig",
    "DiffusionAutoencoder",
    "DiffusionModel",
    "GaussianDensity",
    "ImageSpace",
    "MLPConfig",
    "ModelConfig",
    "ResNet18",
    "ResNetConfig",
    "SemanticEncoder",
    "SemanticEncoderConfig",
    "SmallCNN",
    "SpectralConv",
    "StandardBlock",
    "StandardResNet18",
    "StandardResNetConfig",
    "UNet",
    "UNetConfig",
    "VAEConfig",
    "VAEModel",
    "WGANConfig",
    "WGANCritic",
    "WGANGenerator",
    "WGANModel",
    "as_density",
    "attribute_conflicts",
    "build",
    "build_attgan",
    "build_denoiser",
    "build_wgan",
    "check_fits",
    "checkpoint",
    "class_moments",
    "config_from_dict",
    "config_to_dict",
    "content_digest",
    "denoiser_config_from_dict",
    "equinox_classifier",
    "fit_density",
    "fit_gaussians",
    "flip_attributes",
    "function_classifier",
    "gaussian_kl",
    "generators",
    "import_object",
    "ledoit_wolf_shrinkage",
    "linen_classifier",
    "load_agent",
    "load_attgan",
    "load_attgan_modules",
    "load_classifier",
    "load_diffusion",
    "load_generator",
    "load_params",
    "load_vae",
    "load_wgan",
    "nnx_classifier",
    "open_checkpoint",
    "operator_norm",
    "refine_spectral_norms",
    "reparametrise",
    "save_agent",
    "semantic_codes",
    "timestep_embedding",
    "verify",
]
