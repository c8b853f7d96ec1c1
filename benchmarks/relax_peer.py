"""jaxcf's Wachter search beside ReLax's VanillaCF on the same Adult rows, MLP and CPU.

    jaxcf bench relax_peer --relax-python PATH [--config.rows=1000,16281] [--config.steps=100]

ReLax (``jax-relax``, Guo et al., "ReLax: Efficient and Scalable Recourse Explanation
Benchmarking using JAX") is the closest JAX peer; its pins conflict with ours, so it runs in a
virtual environment of its own (``--relax-python``, its interpreter; see
``benchmarks/README.md``) as a subprocess, and this process never imports it. The two sides
exchange .npz files in a temporary folder:

1. **Shared inputs** (this process): the Adult test rows in jaxcf's 85-dimensional encoding
   (:func:`jaxcf.data.load_adult`; ReLax's own Adult module downloads its files, which this
   machine cannot), and ReLax's default classifier architecture (``MLModule``: hidden layers
   64-32-16 with LeakyReLU of slope 0.2 and dropout 0.3, a softmax over 2 classes) trained here
   on the train split with ReLax's training defaults (Adam 1e-3, batch 128, 10 epochs). Its
   weights are exported once and loaded by both sides; the ReLax side returns the model's
   probabilities, checked against ours.
2. **ReLax** (``benchmarks/relax_side/vanilla_cf.py`` in ReLax's environment): VanillaCF,
   ReLax's Wachter-style method (RMSprop on KL divergence to the other class plus
   ``lambda_`` times the mean squared distance, ``steps`` steps, no early stop), on the first
   ``n`` rows for each ``n`` of ``--config.rows``: through ``generate_cf_explanations`` (which
   compiles on every call) and inside one ``jax.jit`` (compile apart, steady state).
3. **jaxcf** (this process): :func:`jaxcf.methods.wachter` on the same rows and model (a
   :class:`jaxcf.FunctionClassifier` of the same weights), the same learning rate and step
   budget, three schedules: ``first valid`` (the default: each query stops at its first
   iterate past probability 0.5; one batch, a ``while_loop`` until its slowest query),
   ``first valid, slots`` (the same search through refillable slots, the runner's schedule)
   and ``fixed budget`` (one round of the search over the L1 weight with patience above the
   budget: every query takes all ``steps`` steps and returns its closest valid iterate).

Every timing ends with ``block_until_ready``. ``first call`` is the wall time of the first
call for those rows (trace, compile and run: end to end); ``steady`` the fastest of
``--config.repeats`` later calls. Validity (the model's argmax is the other class) and L1
proximity on the encoded features are computed here, with the same model, for both sides.
Results go to ``<out>/relax_peer_<device>.{json,md}``.

The losses differ (ReLax: squared distance, weight ``lambda_`` on the mean over features;
jaxcf: L1 distance summed over features, weight ``l1_weight``), and so do the optimisers
(RMSprop against Adam at the same step size): the proximity columns compare the methods as each
library ships them, not one algorithm.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from jaxcf import FunctionClassifier
from jaxcf.core import validation
from jaxcf.data import load_adult
from jaxcf.evaluation import metrics
from jaxcf.methods import WachterConfig, solve_pool, wachter, wachter_search

RELAX_SIDE = Path(__file__).resolve().parent / "relax_side" / "vanilla_cf.py"
LEAKY_SLOPE = 0.2  # Keras' leaky_relu default, which ReLax's MLPBlock uses
PAPER = "ReLax paper: 4.67 s on CPU for VanillaCF on about 32,000 Adult rows (CARLA: 1,890 s)"
OUR_PACKAGES = ("jaxcf", "jax", "jaxlib", "flax", "optax", "numpy")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench relax_peer``.

    Attributes:
      relax_python: the Python interpreter of an environment with ``jax-relax`` (also
        ``--relax-python PATH``); required unless ``jaxcf_only``.
      rows: Adult test rows explained, comma-separated sizes (the first n rows each; 16281 is
        the whole test split).
      steps: step budget per query (ReLax's ``n_steps``, jaxcf's ``max_iter``).
      learning_rate: step size of both optimisers.
      relax_lambda: ReLax's weight of the mean squared distance (its default).
      l1_weight: jaxcf's weight of the summed L1 distance (its default).
      hidden: hidden layer sizes of the MLP, comma-separated (ReLax's default).
      epochs: training epochs of the MLP.
      batch_size: training batch size.
      slots: refillable slots of the ``first valid, slots`` schedule.
      repeats: timed calls after the first, the fastest counts.
      seed: seed of the MLP's training and of ReLax's initial noise.
      jaxcf_only: skip ReLax (a smoke test of this side; writes no result files).
      out: folder the results are written to.
    """

    relax_python: str = ""
    rows: str = "1000,16281"
    steps: int = 100
    learning_rate: float = 0.1
    relax_lambda: float = 0.1
    l1_weight: float = 0.005
    hidden: str = "64,32,16"
    epochs: int = 10
    batch_size: int = 128
    slots: int = 1024
    repeats: int = 3
    seed: int = 0
    jaxcf_only: bool = False
    out: str = "benchmarks/results"

    def __post_init__(self):
        common.check_sizes(self, "rows")
        common.check_sizes(self, "hidden")
        validation.at_least(self, 1, "steps", "epochs", "batch_size", "slots", "repeats")
        validation.positive(self, "learning_rate")
        validation.non_negative(self, "relax_lambda", "l1_weight")


# ------------------------------------------------------------------------------ the MLP


def mlp_logits(params: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
    """``[B, D] -> [B, C]`` logits of ReLax's MLP (``x @ kernel + bias`` per layer, LeakyReLU
    between, the softmax left out)."""
    for w, b in params[:-1]:
        x = jax.nn.leaky_relu(x @ w + b[None], LEAKY_SLOPE)
    w, b = params[-1]
    return x @ w + b[None]


def init_mlp(key: jax.Array, sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    """Keras' initialisers: He normal kernels in the hidden layers (ReLax's MLPBlock), Glorot
    uniform in the output layer (Dense's default), zero biases."""
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        init = jax.nn.initializers.glorot_uniform() if last else jax.nn.initializers.he_normal()
        params.append((init(k, (fan_in, fan_out), jnp.float32), jnp.zeros(fan_out, jnp.float32)))
    return params


def train_mlp(x: np.ndarray, y: np.ndarray, config: Config) -> list[tuple[jax.Array, jax.Array]]:
    """ReLax's ``MLModule.train`` recipe: Adam (1e-3), cross-entropy, dropout 0.3 after each
    hidden layer, ``config.batch_size`` rows a step, ``config.epochs`` shuffled epochs (the last
    partial batch dropped)."""
    sizes = [x.shape[1], *common.sizes(config.hidden), 2]
    key = jax.random.key(config.seed)
    params = init_mlp(key, sizes)
    tx = optax.adam(1e-3)

    def loss(params, xb, yb, k):
        h = xb
        for i, (w, b) in enumerate(params[:-1]):
            h = jax.nn.leaky_relu(h @ w + b[None], LEAKY_SLOPE)
            keep = jax.random.bernoulli(jax.random.fold_in(k, i), 0.7, h.shape)
            h = jnp.where(keep, h / 0.7, 0.0)
        w, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(h @ w + b[None], yb).mean()

    @jax.jit
    def epoch(params, opt_state, x, y, k):
        k_perm, k_drop = jax.random.split(k)
        steps = len(x) // config.batch_size
        order = jax.random.permutation(k_perm, len(x))[: steps * config.batch_size]
        batches = order.reshape(steps, config.batch_size)

        def step(carry, inputs):
            params, opt_state = carry
            idx, i = inputs
            grads = jax.grad(loss)(params, x[idx], y[idx], jax.random.fold_in(k_drop, i))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(
            step, (params, opt_state), (batches, jnp.arange(steps))
        )
        return params, opt_state

    opt_state = tx.init(params)
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    for e in range(config.epochs):
        params, opt_state = epoch(params, opt_state, xj, yj, jax.random.fold_in(key, e + 1))
    return params


# ------------------------------------------------------------------------------ sides


def relax_versions(relax_python: str) -> dict:
    """The ReLax environment's versions; a clear error when ReLax is not importable there."""
    try:
        out = subprocess.run(
            [relax_python, str(RELAX_SIDE), "--versions"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except OSError as e:
        raise RuntimeError(f"cannot run --relax-python {relax_python!r}: {e}") from e
    if out.returncode != 0:
        raise RuntimeError(
            f"ReLax is not importable by {relax_python} (exit {out.returncode}); create its "
            f"environment as benchmarks/README.md says. Its error:\n{out.stderr.strip()[-2000:]}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_relax(relax_python: str, inputs: Path, prefix: Path) -> tuple[dict, dict]:
    """Runs the ReLax side on ``inputs``; its record and arrays."""
    out = subprocess.run(
        [relax_python, str(RELAX_SIDE), str(inputs), str(prefix)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"the ReLax side failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    record = json.loads(prefix.with_suffix(".json").read_text())
    with np.load(prefix.with_suffix(".npz")) as f:
        arrays = {k: f[k] for k in f.files}
    return record, arrays


def jaxcf_schedules(config: Config) -> dict[str, tuple[WachterConfig, int | None]]:
    """The compared schedules: Wachter's config and the slot count (None: one batch)."""
    base = WachterConfig(
        learning_rate=config.learning_rate, l1_weight=config.l1_weight, max_iter=config.steps
    )
    # One round whose patience exceeds the budget never ends early: every query takes all
    # `steps` gradient evaluations, as ReLax's do, and returns its closest valid iterate.
    fixed = dataclasses.replace(base, rounds=1, patience=config.steps + 1)
    return {
        "first valid": (base, None),
        "first valid, slots": (base, config.slots),
        "fixed budget": (fixed, None),
    }


def timed_calls(fn, repeats: int):
    """``fn()``'s first call (seconds), then the fastest of ``repeats`` calls; the result."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    steady = min(common.timed(fn)[1] for _ in range(repeats))
    return out, first, steady


def run_jaxcf(classifier, x: np.ndarray, target: np.ndarray, config: Config) -> tuple[dict, dict]:
    """Each schedule on ``x``: timings, iterations; the counterfactuals by schedule."""
    records, cfs = {}, {}
    for name, (cfg, slots) in jaxcf_schedules(config).items():
        if slots is None:  # the library's entry point, compiled on its first call
            fn = functools.partial(wachter, classifier, x, target, cfg)
        else:
            search = wachter_search(classifier, cfg)
            xs, ts = search.check(x, target)
            pool = jax.jit(functools.partial(solve_pool, slots=slots, segment=4))
            fn = functools.partial(pool, search, xs, ts)
        result, first, steady = timed_calls(fn, config.repeats)
        n_iter = np.asarray(result.n_iter)
        cfs[name] = np.asarray(result.x_cf)
        records[name] = {
            "config": dataclasses.asdict(cfg),
            "slots": slots,
            "first_call_seconds": first,
            "steady_seconds": steady,
            "mean_iterations": float(n_iter.mean()),
            "max_iterations": int(n_iter.max()),
            "success_rate": float(np.asarray(result.success).mean()),
        }
    return records, cfs


def quality(classifier, x: np.ndarray, target: np.ndarray, x_cf: np.ndarray) -> dict:
    """Validity under the shared model and L1 on the encoded features."""
    valid = metrics.validity(classifier, x_cf, target)
    l1 = metrics.l1(x, x_cf)
    return {
        "validity": float(valid.mean()),
        "l1_all": float(l1.mean()),
        "l1_valid": float(l1[valid].mean()) if valid.any() else None,
    }


# ------------------------------------------------------------------------------ the run


def environment() -> dict:
    """Device, CPU model and count, and this environment's versions."""
    env = common.environment()
    env["host"]["model"] = cpu_model()
    env["python"] = platform.python_version()
    env["versions"] = {name: metadata.version(name) for name in OUR_PACKAGES}
    return env


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def prepare(config: Config) -> dict:
    """Trains the shared MLP and picks the rows: weights, rows, targets and the classifier."""
    train, test = load_adult("train"), load_adult("test")
    start = time.perf_counter()
    params = train_mlp(np.asarray(train.inputs), np.asarray(train.labels), config)
    train_seconds = time.perf_counter() - start
    classifier = FunctionClassifier(mlp_logits, params)
    n = max(common.sizes(config.rows))
    x = np.asarray(test.inputs[:n], np.float32)
    logits = np.asarray(jax.jit(mlp_logits)(params, jnp.asarray(test.inputs)))
    accuracy = float((logits.argmax(1) == np.asarray(test.labels)).mean())
    return {
        "params": params,
        "classifier": classifier,
        "x": x,
        "y": np.asarray(test.labels[:n]),
        "target": (1 - logits[:n].argmax(1)).astype(np.int32),  # the other class
        "model": {
            "layers": [x.shape[1], *common.sizes(config.hidden), 2],
            "test_accuracy": accuracy,
            "train_seconds": train_seconds,
        },
    }


def write_inputs(path: Path, shared: dict, config: Config) -> None:
    weights = {}
    for i, (w, b) in enumerate(shared["params"]):
        weights[f"w{i}"], weights[f"b{i}"] = np.asarray(w), np.asarray(b)
    np.savez(
        path,
        **weights,
        n_layers=len(shared["params"]),
        x=shared["x"],
        y=shared["y"].astype(np.float32),
        sizes=np.array(common.sizes(config.rows)),
        n_steps=config.steps,
        lr=config.learning_rate,
        lambda_=config.relax_lambda,
        seed=config.seed,
        repeats=config.repeats,
    )


def run(config: Config) -> dict:
    """Measures both sides; writes and returns the record (``jaxcf_only``: returns only)."""
    if not (config.jaxcf_only or config.relax_python):
        # Checked here, not in Config: the defaults must form a valid config for the overrides.
        raise ValueError(
            "pass --relax-python PATH (or --config.relax_python=PATH): the interpreter of a "
            "virtual environment with jax-relax (see benchmarks/README.md)"
        )
    env = environment()
    versions = None if config.jaxcf_only else relax_versions(config.relax_python)
    shared = prepare(config)
    clf, x_all, t_all = shared["classifier"], shared["x"], shared["target"]
    relax_record, relax_arrays = None, {}
    if not config.jaxcf_only:
        with tempfile.TemporaryDirectory() as tmp:
            inputs = Path(tmp) / "inputs.npz"
            write_inputs(inputs, shared, config)
            relax_record, relax_arrays = run_relax(config.relax_python, inputs, Path(tmp) / "relax")
        p = jax.nn.softmax(mlp_logits(shared["params"], jnp.asarray(x_all)))
        shared["model"]["relax_probability_max_abs_diff"] = float(
            np.max(np.abs(np.asarray(p) - relax_arrays["p"]))
        )
    rows = []
    for n in common.sizes(config.rows):
        x, t = x_all[:n], t_all[:n]
        records, cfs = run_jaxcf(clf, x, t, config)
        row = {"rows": n, "jaxcf": records}
        for name, x_cf in cfs.items():
            records[name].update(quality(clf, x, t, x_cf))
        if relax_record is not None:
            relax = next(r for r in relax_record["runs"] if r["rows"] == n)
            relax.update(quality(clf, x, t, relax_arrays[f"cf_{n}"]))
            row["relax"] = relax
        rows.append(row)
        print(f"{n} rows done", file=sys.stderr)
    results = {
        "benchmark": "relax_peer",
        "config": dataclasses.asdict(config) | {"relax_python": "(given)"},
        "environment": env,
        "relax_environment": versions,
        "relax_settings": None if relax_record is None else relax_record["config"],
        "model": shared["model"],
        "paper": PAPER,
        "rows": rows,
    }
    if not config.jaxcf_only:
        stem = common.write_results(Path(config.out), "relax_peer", results, markdown(results))
        print(f"wrote {stem}.json and .md")
    return results


# ------------------------------------------------------------------------------ report


def _ms(seconds: float, n: int) -> str:
    return f"{1e3 * seconds / n:.4f}"


def markdown(results: dict) -> str:
    env, model = results["environment"], results["model"]
    relax_env = results["relax_environment"] or {}
    cfg = results["config"]
    lines = [
        "# jaxcf's Wachter beside ReLax's VanillaCF (same CPU, same rows, same MLP weights)",
        "",
        f"Device: {env['device']}, {env['host']['model']}, {env['host']['cpus']} cores. "
        f"Python {env['python']}; jaxcf side: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + "; ReLax side (its own environment): "
        + ", ".join(f"{k} {v}" for k, v in relax_env.items() if k != "keras_backend")
        + f" (Keras backend {relax_env.get('keras_backend')}).",
        "",
        f"Model: MLP {'-'.join(str(s) for s in model['layers'])} (LeakyReLU 0.2, softmax), "
        f"trained on the jaxcf side, test accuracy {model['test_accuracy']:.4f}; the same "
        f"weights in both (largest difference of their probabilities: "
        f"{model.get('relax_probability_max_abs_diff', float('nan')):.1e}). Rows: Adult test "
        f"split, jaxcf's 85-dimensional encoding. Target: the other class. Budget: "
        f"{cfg['steps']} steps at learning rate {cfg['learning_rate']} on both sides (ReLax: "
        f"RMSprop, KL + {cfg['relax_lambda']} x MSE; jaxcf: Adam, cross-entropy + "
        f"{cfg['l1_weight']} x L1).",
        "",
        "Times per counterfactual in ms; `first call` includes tracing and compiling (end to "
        "end), `steady` is the fastest later call; validity under the shared model; L1 on the "
        "encoded features (mean over all rows / over the valid ones).",
        "",
        "| rows | method | schedule | steady ms/cf | first call ms/cf | steady s | first call s "
        "| mean steps | validity | L1 all | L1 valid |",
        "| ---: | :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rows"]:
        n = row["rows"]
        relax = row.get("relax")
        if relax is not None:
            jit, api = relax["jit"], relax["api_second_call"]
            for schedule, steady, first in (
                ("jit-wrapped vmap", jit["steady_seconds"], jit["first_call_seconds"]),
                (
                    "generate_cf_explanations",
                    api["seconds"],
                    relax["api_first_call"]["seconds"],
                ),
            ):
                lines.append(
                    f"| {n} | ReLax VanillaCF | {schedule} | {_ms(steady, n)} | {_ms(first, n)} "
                    f"| {steady:.3f} | {first:.3f} | {cfg['steps']} | {relax['validity']:.4f} "
                    f"| {relax['l1_all']:.3f} | {_fmt(relax['l1_valid'])} |"
                )
        for name, r in row["jaxcf"].items():
            lines.append(
                f"| {n} | jaxcf wachter | {name} | {_ms(r['steady_seconds'], n)} "
                f"| {_ms(r['first_call_seconds'], n)} | {r['steady_seconds']:.3f} "
                f"| {r['first_call_seconds']:.3f} | {r['mean_iterations']:.1f} "
                f"| {r['validity']:.4f} | {r['l1_all']:.3f} | {_fmt(r['l1_valid'])} |"
            )
    lines += [
        "",
        "ReLax's `generate_cf_explanations` row: its steady column is the second call, which "
        "compiles again (new Keras loss objects are static arguments of its jitted search); "
        "both ReLax rows give the same counterfactuals"
        + (
            ""
            if all(r.get("relax", {}).get("api_and_jit_identical", True) for r in results["rows"])
            else " (NOT bitwise on every size: see the JSON)"
        )
        + f". For scale: {results['paper']}.",
        "",
    ]
    return "\n".join(lines)


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    """``--relax-python PATH`` (or ``=PATH``) is ``--config.relax_python=PATH``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = []
    while argv:
        arg = argv.pop(0)
        if arg == "--relax-python" and argv:
            out.append(f"--config.relax_python={argv.pop(0)}")
        elif arg.startswith("--relax-python="):
            out.append("--config.relax_python=" + arg.partition("=")[2])
        else:
            out.append(arg)
    return common.main(Config, run, out, __doc__)


if __name__ == "__main__":
    sys.exit(main())
