"""Time-series classifiers (Flax NNX) offering the classifier protocol of :mod:`jaxcf.core`.

* :class:`BiLSTM`: one bidirectional LSTM layer and a linear head, the ECG5000 classifier of
  Van Looveren et al. (2021, "Conditional Generative Models for Counterfactual Explanations":
  256 hidden units per direction, ~99% test accuracy on normal vs abnormal beats).

Inputs are ``float32 [B, T, C]`` series (time, then channels) in whatever units the data set
uses (ECG5000's are standardised, hence unbounded: ``domain`` is ``None``). Like the image
models, a model is described by a frozen, hashable config so that a checkpoint records the
architecture and :func:`jaxcf.models.build` rebuilds it.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcf.core import validation

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BiLSTMConfig:
    """Attributes:
    input_shape: ``(T, C)``: time steps and channels of one series (ECG5000: ``(140, 1)``).
    num_classes: number of classes (>= 2).
    hidden: LSTM units per direction (>= 1); features are ``2 * hidden`` wide.
    """

    kind: Literal["bilstm"] = "bilstm"
    input_shape: tuple[int, int] = (140, 1)
    num_classes: int = 2
    hidden: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        shape = self.input_shape
        if len(shape) != 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape
        ):
            raise ValueError(
                f"BiLSTMConfig.input_shape must be (T, C), two integers >= 1, got {shape!r}"
            )
        validation.at_least(self, 2, "num_classes")
        validation.at_least(self, 1, "hidden")


class BiLSTM(nnx.Module):
    """A bidirectional LSTM over ``[B, T, C]`` series and a linear head on its final states.

    ``features(x)`` is ``[h_fwd(T), h_bwd(1)]``, ``[B, 2 * hidden]``: the forward LSTM's hidden
    state after reading the whole series concatenated with the backward LSTM's after reading it
    back to the first step (what Keras's ``Bidirectional(LSTM(hidden))`` returns, the paper's
    classifier). Each half has therefore seen every time step, and the features are bounded
    (``|h| < 1``), which suits a class-conditional Gaussian density fitted on them. ``head`` is
    one linear layer to ``num_classes`` logits.

    Deterministic (no dropout, no batch statistics): train and eval modes compute the same
    function, and carries start at zero, so the module holds no RNG state.
    """

    domain = None  # standardised series: unbounded

    def __init__(self, config: BiLSTMConfig, *, rngs: nnx.Rngs):
        self.config = config
        _, channels = config.input_shape
        h = config.hidden

        # The cells are flax's; the loop over time is a plain `jax.lax.scan` rather than
        # `nnx.RNN`/`nnx.Bidirectional`, whose `nnx.scan` refuses a module captured by a plain
        # JAX transform ("Cannot extract graph node from different trace level" from
        # `jax.eval_shape(lambda x: model.features(x), ...)`, as `load_classifier` and the
        # methods' shape checks do). Reading parameters inside `lax.scan` has no such limit.
        self.forward = nnx.OptimizedLSTMCell(channels, h, rngs=rngs)
        self.backward = nnx.OptimizedLSTMCell(channels, h, rngs=rngs)
        self.out = nnx.Linear(2 * h, config.num_classes, rngs=rngs)

    def features(self, x: Array) -> Array:
        """``x [B, T, C]`` -> final forward and backward hidden states ``[B, 2 * hidden]``.

        Raises:
          ValueError: ``x`` is not ``[B, *config.input_shape]`` (checked on static shapes, so
            also inside ``jit``).
        """
        expected = self.config.input_shape
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"BiLSTM takes series [B, T, C] = [B, {expected[0]}, {expected[1]}], "
                f"got shape {tuple(x.shape)}"
            )
        zeros = jnp.zeros((x.shape[0], self.config.hidden), x.dtype)
        steps = jnp.swapaxes(x, 0, 1)  # [T, B, C]: scan runs over the leading axis
        h_fwd = _final_hidden(self.forward, steps, zeros, reverse=False)
        h_bwd = _final_hidden(self.backward, steps, zeros, reverse=True)
        return jnp.concatenate([h_fwd, h_bwd], axis=-1)

    def head(self, features: Array) -> Array:
        return self.out(features)

    def logits(self, x: Array) -> Array:
        return self.head(self.features(x))

    def __call__(self, x: Array) -> Array:
        return self.logits(x)


def _final_hidden(
    cell: nnx.OptimizedLSTMCell, steps: Array, zeros: Array, *, reverse: bool
) -> Array:
    """Runs ``cell`` over ``steps [T, B, C]`` from a zero carry (last step first when
    ``reverse``) and returns its final hidden state ``[B, H]``."""

    def step(carry: tuple[Array, Array], x_t: Array) -> tuple[tuple[Array, Array], None]:
        carry, _ = cell(carry, x_t)  # carry = (cell state, hidden state)
        return carry, None  # the per-step outputs are not needed: do not stack them

    (_, hidden), _ = jax.lax.scan(step, (zeros, zeros), steps, reverse=reverse)
    return hidden
