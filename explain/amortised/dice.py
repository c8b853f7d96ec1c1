"""The DiCE peer (tabular data only): its run on the protocol's queries, cached in the run store
under ``dice/dice.npz`` and reused while its settings and queries are the same."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from explain.amortised.evaluation import Rows
from jaxcf.core import write_atomic


def run_dice(config, space, classifier, train, x, target, runs: Path) -> Rows:
    """DiCE on the queries, cached in ``runs/dice/dice.npz`` (keyed by its settings)."""
    # Imported here: DiCE is the optional ``dice`` extra (jaxcf.peers.dice imports dice_ml).
    from jaxcf.peers.dice import DicePeer

    path = runs / "dice" / "dice.npz"
    settings = {
        "method": config.dice_method,
        "queries": len(x),
        "num_cfs": config.num_cfs,
        "seed": config.seed,
        "fixed": list(config.fixed),
        "x_digest": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest(),
        "target_digest": hashlib.sha256(np.ascontiguousarray(target).tobytes()).hexdigest(),
    }
    cached = None
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["settings"])) == settings:
                cached = {k: f[k] for k in f.files}
    if cached is None:
        peer = DicePeer(
            classifier,
            space.transform,
            (space.train_table, np.asarray(train.labels)),
            method=config.dice_method,
            constraints=space.constraints,
        )
        result = peer.explain(
            space.transform.decode(x),
            [int(t) for t in target],
            total_CFs=config.num_cfs,
            fixed=list(config.fixed) or None,
            seed=config.seed,
        )
        cached = {
            "x_cf": result.x_cf,
            "query_index": result.query_index,
            "found": result.found,
            "seconds": result.seconds,
            "setup_seconds": np.asarray(result.setup_seconds),
        }
        write_atomic(
            path, lambda f: np.savez(f, settings=np.asarray(json.dumps(settings)), **cached)
        )
    q = np.asarray(cached["query_index"]).astype(np.int64)
    seconds = np.asarray(cached["seconds"], np.float64)
    per_cf = float(seconds.sum() / (len(seconds) * config.num_cfs))
    timing = {
        "seconds_per_cf": per_cf,
        "steady_state": True,
        "per_query_seconds_mean": float(seconds.mean()),
        "setup_seconds": float(cached["setup_seconds"]),
        "found": int(np.asarray(cached["found"]).sum()),
        "total_seconds": float(seconds.sum()),
    }
    return Rows(
        "dice",
        f"dice ({config.dice_method})",
        x[q],
        np.asarray(cached["x_cf"], np.float32),
        target[q],
        q,
        per_cf,
        timing,
        config.num_cfs,
    )
