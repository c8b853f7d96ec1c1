"""DiffExplainer's agent: a linear map from a diffusion autoencoder's semantic code to a teacher
classifier's penultimate features, followed by the teacher's own frozen last layer; tied to
its teacher by digest when saved and loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxcf.core import as_pure, classifier_digest
from jaxcf.models import checkpoint

Array = jax.Array


class Agent(struct.PyTreeNode):
    """``logits(z) = teacher.head(features(z))``, ``features(z) = z @ weight + bias``."""

    weight: Array  # [D, F]
    bias: Array  # [F]
    teacher: Any  # the teacher's pure form (only its ``head`` is used)
    teacher_digest: str = struct.field(pytree_node=False, default="")

    def features(self, z: Array) -> Array:
        return z @ self.weight + self.bias[None, :]

    def logits(self, z: Array) -> Array:
        return self.teacher.head(self.features(z))


@jax.jit
def _encode(model, y):
    return model.encode(y)


def semantic_codes(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``[N, D]`` semantic codes of ``[N, H, W, C]`` images in ``[0, 1]`` (a diffusion
    autoencoder's :class:`~jaxcf.models.DiffusionModel`)."""
    out = []
    for i in range(0, len(x), batch_size):
        y = model.space.to_model(jnp.asarray(x[i : i + batch_size], jnp.float32))
        out.append(np.asarray(_encode(model, y)))
    return np.concatenate(out)


def save_agent(directory: str | Path, agent: Agent, metadata: dict | None = None) -> Path:
    """Writes the agent's ``W``, ``b`` and its teacher's digest."""
    meta = {
        **(metadata or {}),
        "teacher_digest": agent.teacher_digest,
        "kind": "agent",
        "shape": {"weight": list(agent.weight.shape), "bias": list(agent.bias.shape)},
    }
    return checkpoint.save(
        directory,
        {"agent": {"weight": agent.weight, "bias": agent.bias}},
        metadata=meta,
        overwrite=True,
    )


def load_agent(directory: str | Path, teacher: Any) -> tuple[Agent, dict]:
    """Loads an agent for ``teacher``.

    Raises:
      ValueError: the agent was distilled from another teacher.
    """
    meta = checkpoint.read_metadata(directory)
    teacher = as_pure(teacher)
    digest = classifier_digest(teacher)
    if meta.get("teacher_digest") != digest:
        raise ValueError(
            f"the agent in {directory} was distilled from another teacher (digest "
            f"{str(meta.get('teacher_digest'))[:12]}, this one {digest[:12]})"
        )
    if meta.get("kind") != "agent":
        raise ValueError(f"{directory} does not hold an agent")
    like = {k: np.zeros(meta["shape"][k], np.float32) for k in ("weight", "bias")}
    params = checkpoint.load(directory, {"agent": like}).values["agent"]
    agent = Agent(jnp.asarray(params["weight"]), jnp.asarray(params["bias"]), teacher, digest)
    return agent, meta
