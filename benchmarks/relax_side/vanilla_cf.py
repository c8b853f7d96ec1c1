"""ReLax's side of ``benchmarks/relax_peer.py``, run by a Python that has ``jax-relax``.

    RELAX_PYTHON benchmarks/relax_side/vanilla_cf.py INPUTS.npz OUT_PREFIX
    RELAX_PYTHON benchmarks/relax_side/vanilla_cf.py --versions

This file is not part of jaxcf's environment (ReLax's pins conflict with ours; see
``benchmarks/README.md``) and sits in a folder without ``__init__.py``, so ``jaxcf bench`` never
imports it. It imports only ReLax, Keras, JAX and NumPy.

``INPUTS.npz`` (written by the jaxcf side) holds the MLP's weights (``w0, b0, ...``: Keras
``Dense`` kernels ``[in, out]`` and biases, hidden layers LeakyReLU with slope 0.2, a softmax
output), the encoded Adult rows ``x [N, D]`` with their labels ``y [N]``, the row counts
``sizes``, and VanillaCF's settings ``n_steps``, ``lr``, ``lambda_``, ``seed``, ``repeats``.
For each size ``n`` the first ``n`` rows are explained three ways:

* ``api``: ReLax's entry point, ``generate_cf_explanations(VanillaCF, DataModule, pred_fn)``
  with the default ``vmap`` strategy, called twice. Each call builds new Keras loss objects,
  static arguments of ReLax's jitted search, so each call traces and compiles again; both
  calls are timed (wall clock ended by ``block_until_ready``), and ReLax's own ``total_time``
  is recorded beside them.
* ``jit``: the same vmapped ``generate_cf`` inside one ``jax.jit`` (our wrapper, so that the
  compiled program is reused): the first call (trace, compile, run) and then the fastest of
  ``repeats`` calls, the steady state.

Writes ``OUT_PREFIX.npz`` (``p`` the model's class probabilities on ``x``, ``cf_<n>`` the
counterfactuals of the jit runs, ``cf_api_<n>`` those of the API's first call) and
``OUT_PREFIX.json`` (timings and versions).
"""

from __future__ import annotations

import os

# Keras picks its backend at import; ReLax runs on JAX.
os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse
import json
import platform
import sys
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import keras
import numpy as np
import relax
from relax import DataModule, MLModule, generate_cf_explanations
from relax.explain import prepare_cf_module, prepare_rng_keys
from relax.methods import VanillaCF, VanillaCFConfig
from relax.strategy import VmapStrategy

PACKAGES = ("jax-relax", "jax", "jaxlib", "keras", "optax", "numpy", "jax-tqdm")


def versions() -> dict:
    """Python's and the packages' versions in this environment."""
    out = {"python": platform.python_version(), "keras_backend": keras.backend.backend()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def build_model(weights: list[np.ndarray], n_features: int):
    """ReLax's MLP (``MLModule``'s Keras model) of the exported layer sizes, holding the
    exported weights; returns its module and ``pred_fn`` (class probabilities)."""
    hidden = [w.shape[1] for w in weights[0:-2:2]]
    module = MLModule(
        {"sizes": hidden, "output_size": int(weights[-1].shape[0]), "dropout_rate": 0.3}
    )
    module.model(jnp.zeros((1, n_features), jnp.float32))  # builds the layers
    module.model.set_weights(weights)
    # The weights were trained on the jaxcf side; MLModule only marks itself trained in its own
    # train() or load_from_path(), and its pred_fn refuses to run before.
    module._is_trained = True
    return module, module.pred_fn


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def explain(x, y, pred_fn, cf_config, seed: int, repeats: int) -> tuple[dict, dict]:
    """Timings of the API and of the jitted search on ``x``; their counterfactuals."""
    n = len(x)
    key = jax.random.PRNGKey(seed)
    data = DataModule.from_numpy(x, y, transformation="identity")
    out, cfs = {"rows": n}, {}
    for call in ("api_first_call", "api_second_call"):
        start = time.perf_counter()
        exp = generate_cf_explanations(
            VanillaCF(cf_config), data, pred_fn=pred_fn, strategy="vmap", rng_key=key
        )
        got = np.asarray(jax.block_until_ready(exp.cfs))[:, 0]
        out[call] = {"seconds": time.perf_counter() - start, "relax_total_time": exp.total_time}
        cfs.setdefault("api", got)

    module = prepare_cf_module(VanillaCF(cf_config), data, pred_fn)
    xs = jnp.asarray(x)
    keys = prepare_rng_keys(key, n)
    y_target = 1 - pred_fn(xs)  # generate_cf_explanations' target: the other class
    strategy = VmapStrategy()
    search = jax.jit(lambda xs, t, k: strategy(module.generate_cf, xs, pred_fn, t, k))
    got, first = timed(search, xs, y_target, keys)
    steady = min(timed(search, xs, y_target, keys)[1] for _ in range(repeats))
    cfs["jit"] = np.asarray(got)
    out["jit"] = {"first_call_seconds": first, "steady_seconds": steady, "repeats": repeats}
    out["api_and_jit_identical"] = bool(np.array_equal(cfs["api"], cfs["jit"]))
    return out, cfs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="?", help="the jaxcf side's inputs .npz")
    parser.add_argument("out", nargs="?", help="prefix of the .npz and .json written")
    parser.add_argument("--versions", action="store_true", help="print versions as JSON")
    args = parser.parse_args(argv)
    if args.versions:
        print(json.dumps(versions()))
        return 0
    if not (args.inputs and args.out):
        parser.error("INPUTS and OUT_PREFIX are required")
    data = np.load(args.inputs)
    n_layers = int(data["n_layers"])
    weights = [data[f"{k}{i}"] for i in range(n_layers) for k in ("w", "b")]
    x, y = data["x"], data["y"]
    _, pred_fn = build_model(weights, x.shape[1])
    cf_config = VanillaCFConfig(
        n_steps=int(data["n_steps"]), lr=float(data["lr"]), lambda_=float(data["lambda_"])
    )
    arrays = {"p": np.asarray(pred_fn(jnp.asarray(x)))}
    runs = []
    for n in (int(v) for v in data["sizes"]):
        run, cfs = explain(
            x[:n], y[:n], pred_fn, cf_config, int(data["seed"]), int(data["repeats"])
        )
        runs.append(run)
        arrays[f"cf_{n}"], arrays[f"cf_api_{n}"] = cfs["jit"], cfs["api"]
        print(f"relax: {n} rows, steady {run['jit']['steady_seconds']:.3f} s", file=sys.stderr)
    np.savez(args.out + ".npz", **arrays)
    record = {
        "versions": versions(),
        "relax_version": relax.__version__,
        "config": cf_config.dict(),
        "runs": runs,
    }
    with open(args.out + ".json", "w") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
