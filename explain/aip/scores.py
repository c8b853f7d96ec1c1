"""The metrics of each method's counterfactuals, as the report gives them
(``<workdir>/report/report.{json,md}``):

* **FR**, the flip ratio: the fraction of queries whose counterfactual the classifier puts in
  the target class.
* **LPR**, the latent perturbation ratio ``||z* - z0||_0 / k``: the query and its
  counterfactual are both encoded by the *same* encoder (the attribute model's, and separately
  the VAE's, for every method alike), and a code dimension counts as changed when it moved by
  more than ``lpr_tolerance`` times that dimension's standard deviation over real held-out
  faces. Encoding a decoded image does not return the code it was decoded from exactly, so a
  method's reconstruction without any change already has an LPR above 0: the report shows that
  floor as the ``reconstruction`` rows. Over the flipped queries.
* **LPR from start**: the same count between the counterfactual and the image the method
  starts from and perturbs: the AttGAN's reconstruction for AIP and AIP_R, the VAE's for
  xGEMs and REVISE, the query itself for FGSM. This takes the re-encoding floor out of the
  latent methods' numbers, so they compare with FGSM's on the change the search itself made.
* **L1**: mean absolute change per pixel and channel, in [0, 1] intensity units, over the
  flipped queries.
* **Realism**: ``MMD^2`` (:func:`jaxcf.evaluation.distribution.mmd2`) between the flipped
  counterfactuals towards class ``c`` and the real held-out faces labelled ``c`` (the test
  faces after the queries), through the fixed randomly initialised conv encoder of
  :func:`jaxcf.evaluation.distribution.encode_images`, averaged over the two classes; one
  kernel bandwidth for every method (the median heuristic on queries and real faces). The
  unchanged queries are the ``query`` reference row.
* **Time per query**: the runner's compute seconds over the queries (compilation included), and
  the steady state over the chunks after the first.

Also here: the attempts of a retried run, and whether the paper's ordering
(:data:`PAPER_ORDERING`) holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from explain.aip.models import apply_batched, encode
from jaxcf.core import Results
from jaxcf.evaluation import distribution

# What the AIP paper reports on this task, as an ordering rather than numbers: AIP's flip ratio is
# at least xGEMs' (and REVISE's), and its latent perturbation ratio below FGSM's and AIP_R's.
PAPER_ORDERING = (
    "FR: aip >= xgems, revise",
    "LPR: aip < fgsm, aip_random",
)


def latent_perturbation(
    encoder: Any, x: np.ndarray, x_cf: np.ndarray, scale: np.ndarray, tolerance: float
) -> np.ndarray:
    """Per-row LPR ``[N]``: the fraction of code dimensions that moved by more than
    ``tolerance * scale`` between ``encoder.encode(x)`` and ``encoder.encode(x_cf)``.

    Args:
      encoder: offers ``encode(x [B, H, W, C]) -> [B, k]``.
      x, x_cf: ``[N, H, W, C]`` queries and counterfactuals.
      scale: ``[k]`` per-dimension scale (the codes' standard deviation over real images).
      tolerance: how many ``scale`` units count as changed.
    """
    return _changed(
        apply_batched(encode, encoder, x), apply_batched(encode, encoder, x_cf), scale, tolerance
    )


def _changed(z0: np.ndarray, z: np.ndarray, scale: np.ndarray, tolerance: float) -> np.ndarray:
    return (np.abs(z - z0) > tolerance * scale).mean(axis=1)


def _lpr(pair: tuple | None, tolerance: float, ok: np.ndarray) -> float | None:
    """Mean over the flipped queries of the share of code dimensions that moved between
    ``pair = (start codes, counterfactual codes, scale)``; None without a start or a flip."""
    if pair is None or not ok.any():
        return None
    return float(_changed(*pair, tolerance)[ok].mean())


def _code_scale(encoder: Any, real: np.ndarray) -> np.ndarray:
    scale = apply_batched(encode, encoder, real).std(axis=0)
    return np.maximum(scale, 1e-6)  # a dead dimension never counts as changed by noise


def _realism(
    feats: np.ndarray, target: np.ndarray, ok: np.ndarray, real: tuple, bandwidth: float
) -> float | None:
    """Mean over target classes of MMD^2(flipped counterfactuals towards c, real faces of c)."""
    real_feats, real_labels = real
    values = []
    for c in (0, 1):
        a, b = feats[ok & (target == c)], real_feats[real_labels == c]
        if len(a) >= 2 and len(b) >= 2:
            values.append(distribution.mmd2(a, b, bandwidth))
    return float(np.mean(values)) if values else None


def per_query_seconds(r: Results) -> dict[str, float | None]:
    """A run's seconds per query: overall (compilation included) and, with more than one chunk,
    the steady state over the chunks after the first."""
    chunks = list(r.timings.get("chunk_seconds", []))
    total = float(r.timings.get("seconds", np.nan)) / max(r.num_queries, 1)
    steady = None
    if len(chunks) > 1:  # the first chunk compiles
        rows_after = r.num_queries - r.num_queries // len(chunks)
        steady = float(np.sum(chunks[1:])) / max(rows_after, 1)
    return {"seconds_per_query": total, "steady_seconds_per_query": steady}


def score_methods(
    outputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    target: np.ndarray,
    models: Mapping[str, Any],
    real: tuple[np.ndarray, np.ndarray],
    tolerance: float,
    starts: Mapping[str, str] | None = None,
    sweep: tuple[float, ...] = (),
) -> dict[str, dict[str, Any]]:
    """FR, LPR under both encoders, L1 and realism of each method's counterfactuals.

    Args:
      outputs: label -> ``(x_cf [N, H, W, C], flipped [N] bool)``.
      x, target: the queries and their target classes.
      models: with ``"attribute_model"`` and ``"vae"`` (the encoders).
      real: ``(images, labels)`` of the real held-out faces.
      tolerance: the LPR tolerance in code standard deviations.
      starts: label -> the label of the images that method started from (another output, such
        as a reconstruction, or ``"query"``); those labels also get ``lpr_start_<encoder>``,
        the LPR between start and counterfactual (None for the rest).
      sweep: tolerances at which the AttGAN code's LPRs are also given, as
        ``lpr_attgan_at`` / ``lpr_start_attgan_at``: ``{tolerance: LPR or None}``.

    Raises:
      ValueError: a start names neither an output nor ``"query"``.
    """
    starts = dict(starts or {})
    unknown = sorted(set(starts.values()) - set(outputs) - {"query"})
    if unknown:
        raise ValueError(f"starts name no output: {unknown}; outputs are {sorted(outputs)}")
    encoders = {"attgan": models["attribute_model"], "vae": models["vae"]}
    scales = {k: _code_scale(e, real[0]) for k, e in encoders.items()}
    # Every image set is encoded once: starts are other outputs' codes.
    codes = {
        label: {k: apply_batched(encode, e, images) for k, e in encoders.items()}
        for label, images in [("query", x), *((m, o[0]) for m, o in outputs.items())]
    }
    real_feats = distribution.encode_images(real[0])
    query_feats = distribution.encode_images(x)
    bandwidth = distribution.median_bandwidth(query_feats, real_feats)
    out = {}
    for label, (x_cf, ok) in outputs.items():
        ok = np.asarray(ok, bool)
        row: dict[str, Any] = {"n": len(ok), "fr": float(ok.mean())}
        l1 = np.abs(x_cf - x).reshape(len(x), -1).mean(axis=1)
        row["l1"] = float(l1[ok].mean()) if ok.any() else None
        for k in encoders:
            for key, origin in ((f"lpr_{k}", "query"), (f"lpr_start_{k}", starts.get(label))):
                pair = None if origin is None else (codes[origin][k], codes[label][k], scales[k])
                row[key] = _lpr(pair, tolerance, ok)
                if k == "attgan":
                    row[f"{key}_at"] = {f"{t:g}": _lpr(pair, t, ok) for t in sweep}
        row["mmd2"] = _realism(
            distribution.encode_images(x_cf), target, ok, (real_feats, real[1]), bandwidth
        )
        out[label] = row
    out["query"] = {
        "n": len(x),
        "fr": 0.0,
        "l1": 0.0,
        "lpr_attgan": 0.0,
        "lpr_vae": 0.0,
        "lpr_start_attgan": 0.0,
        "lpr_start_vae": 0.0,
        "lpr_attgan_at": {f"{t:g}": 0.0 for t in sweep},
        "lpr_start_attgan_at": {f"{t:g}": 0.0 for t in sweep},
        "mmd2": _realism(
            query_feats, target, np.ones(len(x), bool), (real_feats, real[1]), bandwidth
        ),
    }
    return {k: {**v, "bandwidth": bandwidth} for k, v in out.items()}


def ordering_holds(scores: Mapping[str, Any]) -> dict[str, bool | None]:
    """Whether the paper's orderings hold here (None where a method did not run or flipped
    nothing)."""

    def cmp(a: str, b: str, key: str, op) -> bool | None:
        va, vb = scores.get(a, {}).get(key), scores.get(b, {}).get(key)
        return None if va is None or vb is None else bool(op(va, vb))

    ge, lt = (lambda a, b: a >= b), (lambda a, b: a < b)
    return {
        "fr_aip_ge_xgems": cmp("aip", "xgems", "fr", ge),
        "fr_aip_ge_revise": cmp("aip", "revise", "fr", ge),
        "lpr_aip_lt_fgsm": cmp("aip", "fgsm", "lpr_attgan", lt),
        "lpr_aip_lt_aip_random": cmp("aip", "aip_random", "lpr_attgan", lt),
        "lpr_from_start_aip_lt_fgsm": cmp("aip", "fgsm", "lpr_start_attgan", lt),
        "lpr_from_start_aip_lt_aip_random": cmp("aip", "aip_random", "lpr_start_attgan", lt),
    }


def retry_summary(result: Results, flipped: np.ndarray) -> dict[str, Any]:
    """A retried run's attempts that produced some counterfactual: the schedule value, the
    queries whose result came from it and how many of those flipped."""
    field = next(k for k in _RETRY_FIELDS if k in result.extras)
    attempt = np.asarray(result.extras["attempt"])
    used = np.unique(attempt)
    return {
        "field": field,
        "values": [round(float(result.extras[field][np.argmax(attempt == i)]), 6) for i in used],
        "queries": [int(np.sum(attempt == i)) for i in used],
        "flipped": [int(np.sum((attempt == i) & flipped)) for i in used],
    }


_RETRY_FIELDS = ("step_scale", "eps")  # the fields the protocol's methods retry
