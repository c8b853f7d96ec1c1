"""The DiffExplainer protocol: a teacher classifier, a diffusion autoencoder, a distilled agent,
and the counterfactuals, heatmaps and checks of the paper, on one two-class image data set.

Steps (each skipped when its result is already in the workdir, so an interrupted run resumes):

1. the teacher (a classifier) is trained into ``<workdir>/models/teacher`` unless it names a
   checkpoint;
2. the diffusion autoencoder likewise into ``<workdir>/models/diffusion``;
3. the agent is distilled from the teacher on the training images' codes into
   ``<workdir>/models/agent``.

Then on the test split: the agent's agreement with the teacher (accuracy, AUC, sensitivity,
specificity, F1, KL); reconstruction PSNR / SSIM of ``queries`` test images (decoding their own
``(z, x_T)``); counterfactuals of those images towards the other class through the runner
(flip rate, L1, the sweep value used); whether the teacher's target probability grows
monotonically along each query's sweep; figures of the graded sequences, and of the
difference heatmaps (counterfactual minus reconstruction) beside gradient saliency and
Grad-CAM / HiResCAM of the teacher for the same queries; and the paper's use case: the test
images the teacher finds most indeterminate (closest class scores), each pushed towards every
class.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from explain.diffexplainer.published import PUBLISHED
from jaxcf import experiment, report, runner
from jaxcf.core import to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.data import load_dataset
from jaxcf.evaluation import agreement, attribution, metrics
from jaxcf.experiment import ModelSpec, resolve_model
from jaxcf.methods import DiffExplainerConfig, difference_map, make
from jaxcf.models import save_agent, semantic_codes
from jaxcf.training import AgentConfig, train_agent

__all__ = ["DiffExplainerJob", "run_diffexplainer_protocol"]


@dataclasses.dataclass(frozen=True)
class DiffExplainerJob:
    """Attributes:
    teacher: the classifier to explain (two classes).
    diffusion: the diffusion autoencoder (trained on the same data set).
    agent: how the agent is distilled.
    explain: the sweep and decoding.
    queries: test images reconstructed and explained (a seeded permutation).
    sweep_queries: how many of them get the full sweep (monotonicity, figures).
    indeterminate: how many of the most indeterminate test images are pushed to every class.
    seed: query order and the runner's seed.
    runner: chunking of the counterfactual run.
    """

    teacher: ModelSpec
    diffusion: ModelSpec
    agent: AgentConfig = AgentConfig()
    explain: DiffExplainerConfig = DiffExplainerConfig()
    queries: int = 100
    sweep_queries: int = 32
    indeterminate: int = 6
    seed: int = 0
    runner: runner.RunnerConfig = runner.RunnerConfig(chunk_size=25)

    def __post_init__(self):
        sets = [getattr(m.train, "dataset", None) for m in (self.teacher, self.diffusion)]
        if None not in sets and sets[0] != sets[1]:
            raise ValueError(
                f"the teacher ({sets[0]}) and the diffusion model ({sets[1]}) must see the same "
                "data set"
            )
        if self.sweep_queries > self.queries:
            raise ValueError("sweep_queries must be <= queries")

    def run(self, workdir: str | Path) -> dict[str, Any]:
        """Runs the protocol into ``workdir`` (see :func:`run_diffexplainer_protocol`)."""
        return run_diffexplainer_protocol(self, workdir)


def _models(job: DiffExplainerJob, workdir: Path):
    """The teacher, the diffusion autoencoder and the agent (each found, or trained into
    ``<workdir>/models`` when missing): the models and their metadata."""
    teacher = resolve_model("teacher", "classifier", job.teacher, workdir)
    diffusion = resolve_model("diffusion", "diffusion", job.diffusion, workdir)

    def distil(where: Path) -> None:
        train = load_dataset(diffusion.metadata["dataset"], "train")
        codes = semantic_codes(diffusion.model, train.inputs)
        agent, history = train_agent(teacher.model, codes, train.inputs, job.agent)
        meta = {"history": history, "config": dataclasses.asdict(job.agent)}
        save_agent(where / "checkpoint", agent, meta)

    agent = resolve_model(
        "agent", "agent", ModelSpec(train=job.agent), workdir, trainer=distil, teacher=teacher.model
    )
    return (
        teacher.model,
        teacher.metadata,
        diffusion.model,
        diffusion.metadata,
        agent.model,
        agent.metadata,
    )


@jax.jit
def _sweep(explainer, x, target):
    return explainer.sweep(x, target)


def _batched_sweep(explainer, x, target, batch: int = 16):
    images, probs = [], []
    for i in range(0, len(x), batch):
        im, p = _sweep(explainer, jnp.asarray(x[i : i + batch]), jnp.asarray(target[i : i + batch]))
        images.append(np.asarray(im))
        probs.append(np.asarray(p))
    return np.concatenate(images, axis=1), np.concatenate(probs, axis=1)


def run_diffexplainer_protocol(job: DiffExplainerJob, workdir: str | Path) -> dict[str, Any]:
    """Runs the protocol; writes ``<workdir>/report/report.{md,json}`` and its figures."""
    workdir = Path(workdir)
    out = workdir / experiment.REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    teacher, tmeta, model, dmeta, agent, ameta = _models(job, workdir)
    test = load_dataset(dmeta["dataset"], "test")
    names = test.class_names

    # Agreement of the agent with the teacher on every test image.
    codes = semantic_codes(model, test.inputs)
    t_logits = metrics.outputs(teacher, test.inputs)
    a_logits = np.asarray(jax.jit(lambda a, z: a.logits(z))(agent, jnp.asarray(codes)))
    agree = agreement.binary_agreement(t_logits, a_logits)

    explainer = make("diffexplainer", job.explain, classifier=teacher, agent=agent, diffusion=model)
    order = np.random.default_rng(job.seed).permutation(len(test.inputs))[: job.queries]
    x = np.asarray(test.inputs[order], np.float32)
    pred = metrics.predict(teacher, x)
    target = (1 - pred).astype(np.int32)
    res = experiment.run_explainer(
        "diffexplainer", explainer, x, target, workdir, config=job.runner, seed=job.seed
    )
    recon = np.asarray(res.extras["reconstruction"])
    psnr, ssim = agreement.psnr(x, recon), agreement.ssim(x, recon)
    success = np.asarray(res.success)

    # Full sweeps: monotonicity and the report.
    k = job.sweep_queries
    images, probs = _batched_sweep(explainer, x[:k], target[:k])
    steps = np.diff(probs, axis=0)  # [A, k] change of the target probability per sweep step
    monotone = np.all(steps >= -1e-3, axis=0)
    _figures(out, teacher, x[:k], target[:k], pred[:k], images, probs, job.explain, names)

    # The paper's use case: indeterminate images pushed to each class.
    p1 = np.asarray(jax.nn.softmax(jnp.asarray(t_logits)))[:, 1]
    undecided = np.argsort(np.abs(p1 - 0.5))[: job.indeterminate]
    xu = np.asarray(test.inputs[undecided], np.float32)
    pushed = {}
    for c in range(2):
        im, pr = _batched_sweep(explainer, xu, np.full(len(xu), c, np.int32))
        pushed[c] = {"images": im, "probs": pr}
    _indeterminate_figure(out, xu, pushed, job.explain, names)

    doc = {
        "dataset": dmeta["dataset"],
        "device": jax.devices()[0].platform,
        "teacher": {"model": tmeta.get("model"), "test_accuracy": tmeta.get("test_accuracy")},
        "diffusion": {
            "train_steps": dmeta["history"][-1]["step"],
            "val_loss": dmeta["history"][-1]["val_loss"],
            "train_seconds": dmeta.get("train_seconds"),
        },
        "agent": {"config": ameta.get("config"), "agreement": agree},
        "explain": dataclasses.asdict(job.explain),
        "reconstruction": {
            "n": len(x),
            "psnr_db": float(np.mean(psnr[np.isfinite(psnr)])),
            "ssim": float(np.mean(ssim)),
        },
        "counterfactuals": {
            "n": len(x),
            "flip_rate": float(np.mean(success)),
            "l1": float(np.mean(metrics.l1(x, res.x_cf))),
            "l1_to_reconstruction": float(np.mean(metrics.l1(recon, res.x_cf))),
            "mean_alpha_flipped": float(np.mean(np.asarray(res.extras["alpha"])[success]))
            if success.any()
            else None,
            "reconstruction_keeps_class": float(np.mean(metrics.predict(teacher, recon) == pred)),
        },
        "monotone": {"n": k, "share": float(np.mean(monotone))},
        "indeterminate": {
            "queries": undecided.tolist(),
            "teacher_p1": p1[undecided].tolist(),
            "reached": {
                str(c): float(np.mean(pushed[c]["probs"][-1] >= job.explain.threshold))
                for c in range(2)
            },
        },
    }
    write_json_atomic(out / "report.json", to_jsonable(doc))
    write_text_atomic(out / "report.md", _markdown(doc, names))
    return doc


def _figures(out, teacher, x, target, pred, images, probs, cfg, names) -> None:
    n = min(6, len(x))
    recon, seq = images[0, :n], images[1:, :n]
    # The counterfactual of each query: the first sweep value the teacher accepts (else last).
    hit = probs[1:, :n] >= cfg.threshold
    first = np.where(hit.any(0), hit.argmax(0), len(cfg.alphas) - 1)
    x_cf = seq[first, np.arange(n)]
    heat = np.asarray(difference_map(x_cf, recon))
    maps = {
        "difference (DiffExplainer)": heat,
        "saliency": attribution.saliency(teacher, x[:n], target[:n]),
        "HiResCAM": attribution.grad_cam(teacher, x[:n], target[:n], weighting="elementwise"),
    }
    report.attribution_grid(
        out / "heatmaps.png",
        x[:n],
        maps,
        pred=pred[:n],
        target=target[:n],
        class_names=names,
        signed={"difference (DiffExplainer)": True},
        n=n,
        title="Counterfactual difference beside the teacher's saliency and HiResCAM",
    )
    columns = [x[:n], recon] + [seq[a] for a in range(len(cfg.alphas))]
    grid = np.stack(columns, axis=1).reshape((-1,) + x.shape[1:])
    report.image_grid(grid, out / "sequences.png", columns=len(columns))


def _indeterminate_figure(out, xu, pushed, cfg, names) -> None:
    rows = []
    for i in range(len(xu)):
        for c in range(2):
            rows.append(np.concatenate([xu[i : i + 1], pushed[c]["images"][:, i]], axis=0))
    report.image_grid(np.concatenate(rows), out / "indeterminate.png", columns=len(cfg.alphas) + 2)


def _fmt(v, spec=".3f"):
    return "\u2014" if v is None else format(v, spec)


def _markdown(doc: dict, names) -> str:
    a = doc["agent"]["agreement"]
    c, r = doc["counterfactuals"], doc["reconstruction"]
    pa, pr = PUBLISHED["agreement"], PUBLISHED["reconstruction"]
    lines = [
        f"# DiffExplainer on {doc['dataset']} ({doc['device']})\n",
        f"Teacher test accuracy {doc['teacher']['test_accuracy']:.4f}; diffusion autoencoder "
        f"trained {doc['diffusion']['train_steps']} steps (held-out noise loss "
        f"{doc['diffusion']['val_loss']:.4f}).\n",
        "| agent vs teacher (test set) | accuracy | AUC | sensitivity | specificity | F1 | KL |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| this run ({a['n']} images) | {_fmt(a['accuracy'])} | {_fmt(a['auc'])} | "
        f"{_fmt(a['sensitivity'])} | {_fmt(a['specificity'])} | {_fmt(a['f1'])} | "
        f"{_fmt(a['kl'])} |",
        f"| the paper | {pa['accuracy']:.2f} | {pa['auc']:.2f} | | | | {pa['kl']:.2f} |",
        "",
        f"Reconstruction of {r['n']} test images from their own codes: PSNR "
        f"{r['psnr_db']:.1f} dB, SSIM {r['ssim']:.3f} (the paper: {pr['psnr_db']:.1f} dB, "
        f"{pr['ssim']:.2f}).",
        "",
        f"Counterfactuals towards the other class: flip rate {100 * c['flip_rate']:.1f}% of "
        f"{c['n']}, L1 to the query {c['l1']:.2f} (to the reconstruction "
        f"{c['l1_to_reconstruction']:.2f}), mean alpha of the flipped "
        f"{_fmt(c['mean_alpha_flipped'], '.2f')}; the reconstruction keeps the teacher's class "
        f"for {100 * c['reconstruction_keeps_class']:.1f}%. The teacher's target probability "
        f"grows monotonically along the sweep for {100 * doc['monotone']['share']:.0f}% of "
        f"{doc['monotone']['n']} queries.",
        "",
        "Indeterminate test images (teacher p(class 1) "
        + ", ".join(f"{p:.2f}" for p in doc["indeterminate"]["teacher_p1"])
        + "): pushed to "
        + ", ".join(
            f"{names[int(k)] if names else k} reached by {100 * v:.0f}%"
            for k, v in doc["indeterminate"]["reached"].items()
        )
        + " at the largest alpha.",
        "",
        "Figures: `heatmaps.png` (difference maps beside saliency and HiResCAM), "
        "`sequences.png` (query, reconstruction, then the sweep), `indeterminate.png`.",
    ]
    return "\n".join(lines) + "\n"
