"""DeDUCE and JSMA in PyTorch, run the way the published code runs them (a benchmark peer).

Written for this package from the papers' descriptions and jaxcf's own searches
(:mod:`jaxcf.methods._deduce`, :mod:`jaxcf.methods._jsma`); per query it is the same algorithm
with the same hyper-parameters (the configs are jaxcf's), so on the same weights (see
:mod:`jaxcf.peers.torch_export`) it finds bitwise the same counterfactuals, except where float32
rounding decides a near-tie between two pixels (see ``tests/test_torch_peer.py``; 8 of 1,800
protocol pairs):

* the same loss and gradient (DeDUCE: density and cross-entropy terms, each divided by its own
  detached magnitude floored at 1e-12; JSMA: cross-entropy), with respect to the input only;
* the same pixel choice: the ``pixels`` largest ``|g|``, ties to the lower flat index (NHWC
  order), as ``lax.top_k``; DeDUCE zeroes pixels changed ``max_changes`` times, JSMA frozen ones;
* the same update ``x - step * sign(g)`` clipped to the domain (DeDUCE: ``g`` plus ``momentum``
  times the previous accumulated gradient), JSMA freezing a chosen pixel that lands on a bound;
* the same stopping rule: the target softmax is read before each update and a query stops once
  it reaches ``threshold``; at most ``max_iter`` updates, and the target is checked once more
  after the last one (as jaxcf does; the published code skips that check and counts such a
  query as a failure, the only departure, made so that both report the same successes).

What differs is the schedule, which is the published one: queries are grouped by target, a
batch of at most ``batch_size`` queries sharing one target runs in a host loop, one eager
forward/backward pass of the whole batch per iteration, until its slowest query has finished.
Finished queries stay in the batch and are computed on every iteration, their state frozen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from jaxcf.methods import DeDUCEConfig, JSMAConfig

Step = Callable[[Any], tuple[torch.Tensor, torch.Tensor, Any]]


@dataclasses.dataclass
class PeerResult:
    """Counterfactuals of the peer, in the order of the queries given.

    Attributes:
      x_cf: ``[N, H, W, C]`` float32, the last iterate (a failure keeps it).
      success: ``[N]`` bool, target softmax >= threshold at ``x_cf``.
      n_iter: ``[N]`` int, updates applied.
      score: ``[N]`` float32, target softmax at ``x_cf``.
      computed: query-iterations computed (batch size x iterations, summed over batches),
        finished queries included.
      batches: number of batches run.
    """

    x_cf: np.ndarray
    success: np.ndarray
    n_iter: np.ndarray
    score: np.ndarray
    computed: int
    batches: int


class DeDUCEState(NamedTuple):
    x: torch.Tensor  # [B, H, W, C]
    changes: torch.Tensor  # [B, H*W*C] int32, times each pixel was changed
    momentum: torch.Tensor  # [B, H*W*C] float32, accumulated gradient


class JSMAState(NamedTuple):
    x: torch.Tensor  # [B, H, W, C]
    frozen: torch.Tensor  # [B, H*W*C] bool


def select_pixels(score: torch.Tensor, m: int) -> torch.Tensor:
    """Boolean mask ``[B, D]`` of each row's ``m`` largest entries, ties to the lower index."""
    if m == 1:
        idx = torch.argmax(score, dim=1, keepdim=True)  # first maximal index, documented
    else:
        idx = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :m]
    return torch.zeros_like(score, dtype=torch.bool).scatter_(1, idx, True)


def _target_logp(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[target]`` per query, ``[B]``."""
    return F.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]


def _scale(v: torch.Tensor) -> torch.Tensor:
    """``max(|v|, 1e-12)`` as a constant (jaxcf's ``safe_abs`` of a stopped gradient): dividing
    a term by it gives a unit-scale gradient."""
    return v.detach().abs().clamp_min(1e-12)


def deduce_step(net, density, config: DeDUCEConfig, target: torch.Tensor, box) -> Step:
    """One DeDUCE iteration on a batch: ``state -> (score [B], reached [B], new state)``."""
    lo, hi = box

    def step(s: DeDUCEState):
        x = s.x.detach().requires_grad_(True)
        z = net.features(x)
        logp = _target_logp(net.head(z), target)
        log_dens = density.log_prob(z).gather(1, target[:, None])[:, 0]
        ce = -logp
        # Same expression order as jaxcf, so that the backward pass rounds the same way.
        loss = -config.density_weight * log_dens / _scale(log_dens)
        loss = loss + config.ce_weight * ce / _scale(ce)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        score = logp.detach().exp()
        g = grad.reshape(s.changes.shape)
        g = torch.where(s.changes >= config.max_changes, 0.0, g)
        chosen = select_pixels(g.abs(), config.pixels)
        g = g + config.momentum * s.momentum  # momentum sets the sign only, not the choice
        flat = s.x.reshape(g.shape)
        flat = torch.where(chosen, (flat - config.step * torch.sign(g)).clamp(lo, hi), flat)
        new = DeDUCEState(flat.reshape(s.x.shape), s.changes + chosen.int(), g)
        return score, score >= config.threshold, new

    return step


def jsma_step(net, config: JSMAConfig, target: torch.Tensor, box) -> Step:
    """One JSMA iteration on a batch: ``state -> (score [B], reached [B], new state)``."""
    lo, hi = box

    def step(s: JSMAState):
        x = s.x.detach().requires_grad_(True)
        logp = _target_logp(net.logits(x), target)
        (grad,) = torch.autograd.grad((-logp).sum(), x)
        score = logp.detach().exp()
        g = torch.where(s.frozen, 0.0, grad.reshape(s.frozen.shape))
        chosen = select_pixels(g.abs(), config.pixels)
        flat = s.x.reshape(g.shape)
        flat = torch.where(chosen, (flat - config.step * torch.sign(g)).clamp(lo, hi), flat)
        frozen = s.frozen | (chosen & ((flat == lo) | (flat == hi)))
        return score, score >= config.threshold, JSMAState(flat.reshape(s.x.shape), frozen)

    return step


def run_batch(step: Step, state: Any, max_iter: int) -> tuple[Any, ...]:
    """The published loop on one batch: every query is computed on every iteration until the
    slowest one has finished; finished queries keep their state.

    Returns ``(state, success [B], n_iter [B], score [B], iterations)``.
    """
    b = state.x.shape[0]
    done = torch.zeros(b, dtype=torch.bool)
    success = torch.zeros(b, dtype=torch.bool)
    n_iter = torch.zeros(b, dtype=torch.int64)
    score = torch.zeros(b)
    for i in range(max_iter + 1):
        score_i, reached, new = step(state)
        active = ~done
        score = torch.where(active, score_i, score)
        success |= active & reached
        if i == max_iter:  # the check after the last update: nothing is updated any more
            break
        update = active & ~reached
        state = type(state)(*(_where(update, n, o) for n, o in zip(new, state, strict=True)))
        n_iter += update
        done |= active & reached
        if bool(done.all()):  # the host reads the batch's outcome every iteration
            break
    return state, success, n_iter, score, i + 1


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.reshape(-1, *([1] * (new.dim() - 1))), new, old)


def _box(net, config) -> tuple[float, float]:
    box = config.domain if config.domain is not None else getattr(net, "domain", None)
    if box is None:
        raise ValueError("the pixel searches need a bounded domain (classifier or config)")
    return float(box[0]), float(box[1])


def published_batches(target: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Query indices grouped by target (ascending), each group cut into batches of at most
    ``batch_size`` in query order: every batch shares one target."""
    target = np.asarray(target)
    out = []
    for t in np.unique(target):
        idx = np.flatnonzero(target == t)
        out += [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    return out


def run_published(
    method: str,
    net: Any,
    x: np.ndarray,
    target: np.ndarray,
    config: DeDUCEConfig | JSMAConfig,
    *,
    density: Any = None,
    batch_size: int = 100,
) -> PeerResult:
    """DeDUCE or JSMA counterfactuals for ``x [N, H, W, C]`` and class targets ``[N]`` by the
    published schedule (see the module docstring).

    Args:
      method: ``"deduce"`` or ``"jsma"``.
      net: an exported classifier (:func:`jaxcf.peers.torch_export.export_classifier`).
      x: queries, float32 in the domain.
      target: int class targets, one per query.
      config: jaxcf's config of the method (its hyper-parameters are used as they are).
      density: the exported density (DeDUCE only).
      batch_size: queries per batch at most (the published runs: 100).
    """
    x = np.asarray(x, np.float32)
    target = np.asarray(target)
    if method == "deduce" and density is None:
        raise ValueError("DeDUCE needs the exported density")
    if method not in ("deduce", "jsma"):
        raise ValueError(f"the PyTorch peer runs 'deduce' or 'jsma', not {method!r}")
    box = _box(net, config)
    n = len(x)
    out = PeerResult(
        x_cf=np.empty_like(x),
        success=np.zeros(n, bool),
        n_iter=np.zeros(n, np.int64),
        score=np.zeros(n, np.float32),
        computed=0,
        batches=0,
    )
    for idx in published_batches(target, batch_size):
        xb = torch.from_numpy(x[idx])
        tb = torch.from_numpy(target[idx].astype(np.int64))
        flat = (len(idx), xb[0].numel())
        if method == "deduce":
            step = deduce_step(net, density, config, tb, box)
            state = DeDUCEState(xb, torch.zeros(flat, dtype=torch.int32), torch.zeros(flat))
        else:
            step = jsma_step(net, config, tb, box)
            state = JSMAState(xb, torch.zeros(flat, dtype=torch.bool))
        state, success, n_iter, score, iters = run_batch(step, state, config.max_iter)
        out.x_cf[idx] = state.x.numpy()
        out.success[idx] = success.numpy()
        out.n_iter[idx] = n_iter.numpy()
        out.score[idx] = score.numpy()
        out.computed += len(idx) * iters
        out.batches += 1
    return out
