"""An Equinox classifier as a user writes it (imported only where Equinox is installed): one
example at a time, ``features`` and ``head`` as methods."""

from __future__ import annotations

import equinox as eqx
import jax


class MLP(eqx.Module):
    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, in_size: int, num_classes: int, key: jax.Array):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(in_size, 16, key=k1)
        self.out = eqx.nn.Linear(16, num_classes, key=k2)

    def features(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.hidden(x.reshape(-1)))

    def head(self, f: jax.Array) -> jax.Array:
        return self.out(f)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def mlp(in_size: int = 784, num_classes: int = 10, seed: int = 0) -> MLP:
    """The factory ``UserModel(kind="equinox", code="tests.user_equinox:mlp")`` names."""
    return MLP(in_size, num_classes, jax.random.key(seed))
