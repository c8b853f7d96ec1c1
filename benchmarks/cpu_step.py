"""One pixel-search step on CPU, layer by layer, against the PyTorch peer's step on the same
weights.

    jaxcf bench cpu_step [--config.batch=128] [--config.label=NAME]
    JAXCF_CPU_KERNELS=xla jaxcf bench cpu_step --config.label=xla_kernels

What one computed query-step of DeDUCE and JSMA costs on the bundled network (or another
checkpoint's ResNet), apart from any schedule, and where it goes:

* **Step**: each method's ``step`` on ``--config.batch`` test pairs, jitted in a loop of
  ``--config.segment`` steps as the runner's slot pool runs it (milliseconds per query-step, and
  the process's CPU seconds per wall second: 2 means both cores busy).
* **Convolutions**: every distinct convolution of the network alone, at the same batch: its
  forward pass and its input gradient (the two a search step runs; the kernel gradient is never
  needed), each jitted apart, with its achieved GFLOP/s; the network's total weighs each by how
  often it occurs.
* **PyTorch** (with the ``torch`` extra): the peer's eager step (:mod:`jaxcf.peers.torch_pixels`
  on :func:`~jaxcf.peers.torch_export.export_classifier`'s copy) on the same pairs, and the same
  convolutions in ``channels_last`` memory, as the exported network runs them (its NHWC inputs
  are permuted, not copied, so oneDNN keeps them channels-last).

jaxcf's programs are compiled as jaxcf compiles its pixel searches
(:func:`jaxcf.core.explain_compiler_options`: XLA's own convolutions rather than YNNPACK's on a
CPU); ``JAXCF_CPU_KERNELS=xla`` measures XLA's default choice instead. XLA's CPU backend reads
``XLA_FLAGS`` once per process, so a comparison of settings is one run per setting, told apart
by ``--config.label`` (the process's ``XLA_FLAGS`` and the options used are recorded). Results go
to ``<out>/cpu_step_<device>[_<label>].{json,md}``.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from benchmarks.common import environment, write_results
from jaxcf.core import explain_compiler_options, validation
from jaxcf.data import load_mnist
from jaxcf.methods import DeDUCEConfig, JSMAConfig, deduce_search, jsma_search
from jaxcf.methods._search import default_keys
from jaxcf.models import SpectralConv, load_classifier
from jaxcf.models._conv import conv2d


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of ``jaxcf bench cpu_step``.

    Attributes:
      checkpoint: the classifier: a checkpoint directory or a bundled name (a ResNet-18 of
        :mod:`jaxcf.models`, spectrally normalised).
      batch: pairs per step (the runner's default slot count is 128, the peer's batch 100).
      segment: steps per jitted call (the runner's default).
      reps: timed calls per measurement, the median kept.
      torch: also time the PyTorch peer (needs the ``torch`` extra).
      label: suffix of the result files (e.g. the XLA setting measured).
      out: folder the results are written to.
    """

    checkpoint: str = "bundled:demo_resnet_w32"
    batch: int = 128
    segment: int = 4
    reps: int = 7
    torch: bool = True
    label: str = ""
    out: str = "benchmarks/results"

    def __post_init__(self):
        validation.at_least(self, 1, "batch", "segment", "reps")


def median_ms(fn, reps: int, *args) -> tuple[float, float]:
    """``(median milliseconds of fn(*args), CPU seconds per wall second)`` over ``reps`` calls
    after one unmeasured call; JAX results are waited for."""
    jax.block_until_ready(fn(*args))
    times = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return 1e3 * float(np.median(times)), cpu / sum(times)


def conv_layers(model) -> list[dict]:
    """The network's distinct convolutions: input side, channels in and out, stride, count."""
    seen: dict[tuple, int] = {}
    for _, layer in nnx.iter_graph(model):
        if isinstance(layer, SpectralConv):
            if layer.coeff is None:
                raise ValueError("cpu_step reads each layer's input size from its spectral norm")
            k, _, c_in, c_out = layer.kernel[...].shape
            key = (layer.u[...].shape[1], c_in, c_out, layer.strides, k, layer.padding)
            seen[key] = seen.get(key, 0) + 1
    return [  # in the network's order: input side falling, channels rising
        {"side": s, "c_in": ci, "c_out": co, "stride": st, "kernel": k, "pad": p, "count": n}
        for (s, ci, co, st, k, p), n in sorted(seen.items(), key=lambda kv: (-kv[0][0], kv[0][1:]))
    ]


def _gflop(layer: dict, batch: int) -> float:
    out = -(-layer["side"] // layer["stride"])
    return 2 * batch * out * out * layer["kernel"] ** 2 * layer["c_in"] * layer["c_out"] / 1e9


def xla_convs(layers: list[dict], batch: int, reps: int) -> list[dict]:
    """Forward and input-gradient milliseconds of each layer through :func:`conv2d`, compiled
    as jaxcf compiles its pixel searches."""
    options = explain_compiler_options()
    rows = []
    for layer in layers:
        s, st, p = layer["side"], layer["stride"], layer["pad"]
        x = jax.random.normal(jax.random.key(0), (batch, s, s, layer["c_in"]))
        shape = (layer["kernel"], layer["kernel"], layer["c_in"], layer["c_out"])
        w = 0.05 * jax.random.normal(jax.random.key(1), shape)
        fwd = jax.jit(lambda x, w, st=st, p=p: conv2d(x, w, st, p), compiler_options=options)
        g = jnp.ones_like(fwd(x, w))
        dgrad = jax.jit(
            lambda x, w, g, st=st, p=p: jax.vjp(lambda x: conv2d(x, w, st, p), x)[1](g),
            compiler_options=options,
        )
        f_ms, _ = median_ms(fwd, reps, x, w)
        b_ms, _ = median_ms(dgrad, reps, x, w, g)
        rows.append({**layer, "forward_ms": f_ms, "input_grad_ms": b_ms})
    return rows


def torch_convs(layers: list[dict], batch: int, reps: int) -> list[dict]:
    """The same with PyTorch (oneDNN), channels-last."""
    import torch
    import torch.nn.functional as F

    rows = []
    cl = torch.channels_last
    for layer in layers:
        s, st, p, k = layer["side"], layer["stride"], layer["pad"], layer["kernel"]
        x = torch.randn(batch, layer["c_in"], s, s).contiguous(memory_format=cl)
        w = (0.05 * torch.randn(layer["c_out"], layer["c_in"], k, k)).contiguous(memory_format=cl)
        with torch.no_grad():
            g = torch.ones_like(F.conv2d(x, w, stride=st, padding=p))

            def fwd(x=x, w=w, st=st, p=p):
                return F.conv2d(x, w, stride=st, padding=p)

            def dgrad(x=x, w=w, g=g, st=st, p=p):
                return torch.ops.aten.convolution_backward(
                    g, x, w, None, [st, st], [p, p], [1, 1], False, [0, 0], 1, [True, False, False]
                )[0]

            f_ms, _ = median_ms(fwd, reps)
            b_ms, _ = median_ms(dgrad, reps)
        rows.append({**layer, "forward_ms": f_ms, "input_grad_ms": b_ms})
    return rows


def jaxcf_steps(searches: dict, x, t, segment: int, reps: int) -> dict:
    """Milliseconds per computed query-step of each search, and CPU per wall second."""
    out = {}
    for name, search in searches.items():
        state = search.init(x, t, default_keys(len(x)))
        loop = jax.jit(
            lambda s, st, t: jax.lax.fori_loop(0, segment, lambda _, st: s.step(st, t)[2], st),
            compiler_options=explain_compiler_options(),
        )
        ms, load = median_ms(loop, reps, search, state, t)
        out[name] = {"ms_per_query_step": ms / segment / len(x), "cpu_per_wall": load}
    return out


def torch_steps(model, density, x, t, reps: int) -> dict:
    """The same for the PyTorch peer's eager steps."""
    import torch

    from jaxcf.peers import torch_pixels
    from jaxcf.peers.torch_export import export_classifier, export_density

    torch.set_num_threads(common.cpus())
    net, dens = export_classifier(model), export_density(density)
    xb, tb = torch.from_numpy(np.array(x)), torch.from_numpy(np.asarray(t, np.int64))
    box = tuple(float(v) for v in net.domain)
    flat = (len(x), xb[0].numel())
    steps = {
        "deduce": (
            torch_pixels.deduce_step(net, dens, DeDUCEConfig(), tb, box),
            torch_pixels.DeDUCEState(xb, torch.zeros(flat, dtype=torch.int32), torch.zeros(flat)),
        ),
        "jsma": (
            torch_pixels.jsma_step(net, JSMAConfig(), tb, box),
            torch_pixels.JSMAState(xb, torch.zeros(flat, dtype=torch.bool)),
        ),
    }
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    for name, (step, state) in steps.items():
        ms, load = median_ms(step, reps, state)
        out[name] = {"ms_per_query_step": ms / len(x), "cpu_per_wall": load}
    return out


def run(config: Config) -> dict:
    """Times the steps and the convolutions (milliseconds); writes and returns the results."""
    model, density, meta = load_classifier(config.checkpoint)
    test = load_mnist("test", dataset=meta.get("dataset", "mnist"))
    n = config.batch
    x = jnp.asarray(test.images[:n])
    t = jnp.asarray((test.labels[:n] + 1) % meta["model"]["num_classes"])
    searches = {
        "deduce": deduce_search(model, density, DeDUCEConfig()),
        "jsma": jsma_search(model, JSMAConfig()),
    }
    layers = conv_layers(model)
    results = {
        **environment(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compiler_options": explain_compiler_options(),
        "label": config.label,
        "classifier": {"checkpoint": config.checkpoint, "model": meta["model"]},
        "batch": n,
        "segment": config.segment,
        "steps": {"jaxcf": jaxcf_steps(searches, x, t, config.segment, config.reps)},
        "convolutions": {"jaxcf": xla_convs(layers, n, config.reps)},
    }
    print(f"jaxcf: {results['steps']['jaxcf']}", flush=True)
    if config.torch:
        results["steps"]["torch"] = torch_steps(model, density, x, t, config.reps)
        results["convolutions"]["torch"] = torch_convs(layers, n, config.reps)
        print(f"torch: {results['steps']['torch']}", flush=True)
    name = "cpu_step" + (f"_{config.label}" if config.label else "")
    stem = write_results(Path(config.out), name, results, _markdown(results))
    print(f"wrote {stem}.json and .md")
    return results


def main(argv=None) -> int:
    return common.main(Config, run, argv, __doc__)


def _markdown(r: dict) -> str:
    sides = list(r["steps"])
    flags = f"`XLA_FLAGS={r['xla_flags']}`" if r["xla_flags"] else "no `XLA_FLAGS`"
    lines = [
        f"# One search step on {r['device']} ({r['host']['cpus']} CPUs), batch {r['batch']}"
        + (f": {r['label']}" if r["label"] else ""),
        "",
        f"`{r['classifier']['checkpoint']}`; JAX {r['jax']} with {flags}"
        + (f"; torch {r['steps']['torch']['torch']}" if "torch" in sides else "")
        + ". Milliseconds per computed query-step (jaxcf: jitted loops of "
        f"{r['segment']} steps; PyTorch: eager steps), and CPU seconds per wall second.",
        "",
        "| method | " + " | ".join(f"{s} ms | {s} CPU/wall" for s in sides) + " |",
        "| :--- |" + " ---: | ---: |" * len(sides),
    ]
    for m in ("deduce", "jsma"):
        cells = [
            f"{r['steps'][s][m]['ms_per_query_step']:.3f} | {r['steps'][s][m]['cpu_per_wall']:.2f}"
            for s in sides
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each convolution alone (forward / input gradient, milliseconds for the batch; GFLOP/s):",
        "",
        "| layer | count | " + " | ".join(f"{s} fwd | {s} input grad" for s in sides) + " |",
        "| :--- | ---: |" + " ---: | ---: |" * len(sides),
    ]
    total = {s: 0.0 for s in sides}
    for i, layer in enumerate(r["convolutions"]["jaxcf"]):
        gf = _gflop(layer, r["batch"])
        cells = []
        for s in sides:
            c = r["convolutions"][s][i]
            total[s] += layer["count"] * (c["forward_ms"] + c["input_grad_ms"])
            cells.append(
                f"{c['forward_ms']:.2f} ({1e3 * gf / c['forward_ms']:.0f}) | "
                f"{c['input_grad_ms']:.2f} ({1e3 * gf / c['input_grad_ms']:.0f})"
            )
        name = f"{layer['side']}² {layer['c_in']}→{layer['c_out']}" + (
            f" /{layer['stride']}" if layer["stride"] > 1 else ""
        )
        lines.append(f"| {name} | {layer['count']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Summed over the network (each layer times its count, forward and input gradient): "
        + ", ".join(f"{s} {total[s]:.0f} ms" for s in sides)
        + f" per step of {r['batch']} queries.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
