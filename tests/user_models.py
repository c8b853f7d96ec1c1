"""Models as a user of jaxcf writes them, outside the library: an NNX CNN, a Linen MLP and a
plain JAX function, each with a factory that ``UserModel`` names by import path
(``"tests.user_models:..."``)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


class SmallCNN(nnx.Module):
    """A user's NNX classifier: logits by calling it, ``features`` and ``head`` as methods."""

    def __init__(self, num_classes: int = 10, channels: int = 1, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(channels, 4, kernel_size=(3, 3), strides=(2, 2), rngs=rngs)
        self.dense = nnx.Linear(4 * 14 * 14, 16, rngs=rngs)
        self.out = nnx.Linear(16, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.conv(x))
        return nnx.relu(self.dense(h.reshape(h.shape[0], -1)))

    def head(self, f: jax.Array) -> jax.Array:
        return self.out(f)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def small_cnn(num_classes: int = 10, seed: int = 0) -> SmallCNN:
    """The factory ``UserModel(kind="nnx", code="tests.user_models:small_cnn")`` names."""
    return SmallCNN(num_classes, rngs=nnx.Rngs(seed))


class LinenMLP(nn.Module):
    """A user's Linen classifier of flat rows (or flattened images)."""

    num_classes: int = 2
    hidden: int = 16

    def setup(self):
        self.hidden_layer = nn.Dense(self.hidden)
        self.out = nn.Dense(self.num_classes)

    def features(self, x: jax.Array) -> jax.Array:
        return nn.relu(self.hidden_layer(x.reshape(x.shape[0], -1)))

    def head(self, f: jax.Array) -> jax.Array:
        return self.out(f)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def linen_variables(module: LinenMLP, input_shape: tuple[int, ...], seed: int = 0):
    """A Linen module's initial variables for inputs of ``input_shape``."""
    return module.init(jax.random.key(seed), jnp.zeros((1, *input_shape)))


def linear_logits(params: dict, x: jax.Array) -> jax.Array:
    """A plain JAX classifier: ``x @ w + b`` on flattened inputs."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"][None, :]
