"""A classifier of your own: a small Flax NNX CNN for 28x28 grey images, 10 classes.

jaxcf needs nothing from it but a way to build it (``build``), its logits (calling it) and, for
methods that work on features (DeDUCE), its penultimate ``features`` and the ``head`` that
turns them into logits.
"""

import jax
from flax import nnx


class Net(nnx.Module):
    def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), strides=(2, 2), rngs=rngs)
        self.dense = nnx.Linear(32 * 14 * 14, 64, rngs=rngs)
        self.out = nnx.Linear(64, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        h = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
        return nnx.relu(self.dense(h.reshape(h.shape[0], -1)))

    def head(self, features: jax.Array) -> jax.Array:
        return self.out(features)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def build(num_classes: int = 10) -> Net:
    """The network, freshly initialised (its weights come from the checkpoint)."""
    return Net(num_classes, rngs=nnx.Rngs(0))
