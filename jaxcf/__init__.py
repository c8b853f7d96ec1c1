"""jaxcf: counterfactual explanations at accelerator scale, on JAX and Flax NNX."""

__version__ = "0.1.0"
