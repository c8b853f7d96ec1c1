"""DiffExplainer's agent: a stand-in for a black-box teacher classifier that reads a diffusion
autoencoder's semantic code instead of the image.

The agent is a linear map from the code ``z`` (``[B, D]``) to the teacher's feature space
(``[B, F]``, its penultimate layer) followed by the teacher's own final layer, frozen:
``agent(z) = teacher.head(z @ W + b)``. Only ``W`` and ``b`` are learned, by distillation on
the training images: L1 between the agent's features and the teacher's (the paper's choice),
or MSE on the features, or the KL divergence of the teacher's class distribution from the
agent's. Because the head is the teacher's, the agent's classes mean what the teacher's mean,
and gradients ``d agent(z) / d z`` say which way to move a code to change the teacher's
decision.

The agent records the digest of its teacher (:func:`~jaxcf.training.
classifier_digest`); :func:`load_agent` refuses another teacher.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxcf.core import as_pure, classifier_digest, validation
from jaxcf.models import Agent

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Attributes:
    loss: ``"l1"`` or ``"mse"`` on the teacher's features, or ``"kl"`` on its outputs.
    learning_rate: Adam's rate.
    steps: minibatch steps.
    batch_size: codes per step.
    seed: initialisation and batch order.
    """

    loss: Literal["l1", "mse", "kl"] = "l1"
    learning_rate: float = 3e-3
    steps: int = 3000
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self):
        validation.one_of(self, "loss", ("l1", "mse", "kl"))
        validation.positive(self, "learning_rate")
        validation.at_least(self, 1, "steps", "batch_size")
        validation.at_least(self, 0, "seed")


def _loss(agent: Agent, z, target_feats, target_logits, kind: str):
    if kind == "kl":
        log_p = jax.nn.log_softmax(target_logits)
        log_q = jax.nn.log_softmax(agent.logits(z))
        return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1))
    d = agent.features(z) - target_feats
    return jnp.mean(jnp.abs(d)) if kind == "l1" else jnp.mean(d * d)


def train_agent(
    teacher: Any, codes: np.ndarray, images: np.ndarray, config: AgentConfig = AgentConfig()
) -> tuple[Agent, list[float]]:
    """Distils ``teacher`` into an agent on codes ``[N, D]`` of ``images`` ``[N, H, W, C]``.

    Returns:
      The agent and the loss every 100 steps.
    """
    teacher = as_pure(teacher)
    if len(codes) != len(images):
        raise ValueError(f"{len(codes)} codes for {len(images)} images")
    feats_fn = jax.jit(lambda t, x: (t.features(x), t.logits(x)))
    feats, logits = [], []
    for i in range(0, len(images), 512):
        f, lg = feats_fn(teacher, jnp.asarray(images[i : i + 512], jnp.float32))
        feats.append(np.asarray(f))
        logits.append(np.asarray(lg))
    feats, logits = np.concatenate(feats), np.concatenate(logits)
    d, f = codes.shape[1], feats.shape[1]
    key = jax.random.key(config.seed)
    agent = Agent(
        weight=jax.random.normal(key, (d, f)) / np.sqrt(d),
        bias=jnp.zeros((f,)),
        teacher=teacher,
        teacher_digest=classifier_digest(teacher),
    )
    tx = optax.adam(config.learning_rate)
    params = (agent.weight, agent.bias)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, idx):
        def loss_fn(p):
            a = agent.replace(weight=p[0], bias=p[1])
            return _loss(a, codes_j[idx], feats_j[idx], logits_j[idx], config.loss)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction
            updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    codes_j, feats_j, logits_j = (jnp.asarray(a, jnp.float32) for a in (codes, feats, logits))
    rng = np.random.default_rng(config.seed)
    history = []
    bar = tqdm(range(config.steps), desc=f"agent ({config.loss})", unit="step", leave=False)
    for s in bar:
        idx = jnp.asarray(rng.integers(0, len(codes), config.batch_size))
        params, opt_state, loss = step(params, opt_state, idx)
        if s % 100 == 0 or s == config.steps - 1:
            history.append(float(loss))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    return agent.replace(weight=params[0], bias=params[1]), history
