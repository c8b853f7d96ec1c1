"""A generator's learning curve: the protocol's generator metrics (class MMD², MMD², validity,
L1) of every copy of the EMA generator a training run kept (``GeneratorTrainConfig.keep_steps``,
in ``<workdir>/models/generator/snapshots``) and of its final checkpoint, against training
steps; JSON, markdown and a PNG of class MMD² per class against steps, with the paper's values
and a reference run's (the small config's recorded report) as horizontal lines.

Each point explains the protocol's own queries (the same seeded draw of test queries, flip
targets, counterfactuals per query, MMD reference instances and kernel bandwidth as
:func:`~explain.amortised.protocol.run_protocol`), so the last point of a finished run is its
report's generator row. The runs go to ``<workdir>/curve_runs`` (reused when run again)::

    python -m explain.amortised.curve \\
        --config explain/amortised/configs/generator_ecg_paper.py \\
        --workdir workdir/generator_ecg_paper \\
        --reference docs/results/generator_ecg.json \\
        --out docs/results/generator_ecg_curve

While a run is still training, its progress checkpoint says how far it got and in how many
seconds; the markdown projects the whole run's time from that pace. A hand-written
``## Reading`` section of the page survives rewriting it.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from explain.amortised import units
from explain.amortised.config import ExplainConfig
from explain.amortised.evaluation import Rows, Space, evaluate_rows
from explain.amortised.job import CLASSIFIER_DIR, GENERATOR_DIR
from explain.amortised.published import PUBLISHED
from jaxcf.core import load_config, to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.evaluation.distribution import class_mmd2, median_bandwidth, mmd2
from jaxcf.experiment import (
    ModelSpec,
    checkpoint_path,
    flip_targets,
    load_model,
    model_dir,
    run_explainer,
    steady_timing,
)
from jaxcf.methods import GeneratorConfig, make
from jaxcf.models import checkpoint, load_generator
from jaxcf.models.checkpoint import CHECKPOINT_DIR
from jaxcf.report import save_figure_atomic
from jaxcf.training import PROGRESS_DIR, SNAPSHOTS_DIR

READING = "## Reading"
"""Heading of the page's hand-written section, kept when the page is written again."""

CURVE_RUNS_DIR = "curve_runs"
"""Subfolder of the workdir holding the curve's runs (one per kept generator)."""

# A class MMD² that drops by less than this share over the last doubling of steps is flat.
FLAT_SHARE = 0.1

# Kernel bandwidths of the sensitivity table, as multiples of the protocol's: its own, the
# scale the Adult report calibrated on the paper's DiCE row (units.PAPER_BANDWIDTH_SCALE), and
# twice that.
KERNEL_SCALES = (1.0, units.PAPER_BANDWIDTH_SCALE, 2 * units.PAPER_BANDWIDTH_SCALE)


def kept_generators(workdir: str | Path) -> list[tuple[int, Path]]:
    """``(step, checkpoint folder)`` of every kept generator under ``workdir`` (the job's
    ``models/generator``), by step: the ``keep_steps`` snapshots and the final checkpoint (at the
    run's last step), once per step."""
    where = model_dir(workdir, GENERATOR_DIR)
    found: dict[int, Path] = {}
    for path in sorted((where / SNAPSHOTS_DIR).glob("step_*")):
        match = re.fullmatch(r"step_(\d+)", path.name)
        if match and (path / checkpoint.METADATA_FILE).is_file():
            found[int(match.group(1))] = path
    final = where / CHECKPOINT_DIR
    if final.is_dir():
        found.setdefault(int(checkpoint.read_metadata(final)["train_config"]["steps"]), final)
    return sorted(found.items())


def training_pace(workdir: str | Path) -> dict[str, Any] | None:
    """How far training got and its training-loop time (compiling, evaluation and saving
    included, summed over resumed runs): ``{"step", "train_seconds", "seconds_per_step",
    "finished"}`` from the final checkpoint, else the progress checkpoint; ``None`` without
    either."""
    where = model_dir(workdir, GENERATOR_DIR)
    for folder, finished in ((where / CHECKPOINT_DIR, True), (where / PROGRESS_DIR, False)):
        if (folder / checkpoint.METADATA_FILE).is_file():
            meta = checkpoint.read_metadata(folder)
            step = int(meta["train_config"]["steps"]) if finished else int(meta["step"])
            seconds = float(meta["train_seconds"])
            return {
                "step": step,
                "train_seconds": seconds,
                "seconds_per_step": seconds / step if step else None,
                "finished": finished,
            }
    return None


def evaluate_curve(config: ExplainConfig, workdir: str | Path) -> dict[str, Any]:
    """The metrics of every kept generator of ``config``'s job under ``workdir`` on the
    protocol's queries; returns the JSON-ready document :func:`write_curve` writes."""
    workdir = Path(workdir)
    job = config.resolved_job()
    kept = kept_generators(workdir)
    if not kept:
        raise FileNotFoundError(
            f"no kept generator under {model_dir(workdir, GENERATOR_DIR)}: train with "
            "GeneratorTrainConfig.keep_steps first"
        )
    clf_path = checkpoint_path(ModelSpec(train=job.classifier), workdir, CLASSIFIER_DIR)
    classifier, clf_meta, _ = load_model("classifier", clf_path)
    train = load_dataset(job.dataset, "train")
    test = load_dataset(job.dataset, "test")
    num_classes = test.num_classes or int(np.max(train.labels)) + 1

    # The protocol's draws (run_protocol): queries, targets, MMD reference, bandwidth.
    n = len(test) if config.queries is None else min(config.queries, len(test))
    order = np.random.default_rng(config.seed).permutation(len(test))[:n]
    x = np.asarray(test.inputs[order], np.float32)
    target = flip_targets(metrics.predict(classifier, x), num_classes, config.seed + 1)
    ref_idx = np.sort(
        np.random.default_rng(config.seed + 2).permutation(len(train))[
            : min(config.mmd_reference, len(train))
        ]
    )
    space = None
    points = []
    for step, path in kept:
        generator, meta = load_generator(path, classifier)
        if space is None:
            space = Space(classifier, generator, train, config)
            ref_feats = space.features(np.asarray(train.inputs[ref_idx], np.float32))
            half = len(ref_feats) // 2
            bandwidth = median_bandwidth(ref_feats[:half], ref_feats[half:])
            reference = (ref_feats, np.asarray(train.labels[ref_idx]).astype(np.int64))
        explainer = make(
            "generator",
            GeneratorConfig(fixed=config.fixed),
            classifier=classifier,
            generator=generator,
        )
        res = run_explainer(
            f"step_{step:06d}",
            explainer,
            x,
            target,
            workdir,
            config=config.runner,
            num_cfs=config.num_cfs,
            seed=config.seed,
            progress=config.progress,
            store=workdir / CURVE_RUNS_DIR,
            meta={"method": "generator", "dataset": job.dataset, "step": step},
        )
        rows = Rows.from_results("generator", res, steady_timing(res), config.num_cfs)
        ev, _ = evaluate_rows(rows, space, reference, bandwidth, num_classes)
        point = {
            "step": step,
            "validity": ev["validity"],
            "mmd2": ev["mmd2"],
            "class_mmd2": ev["class_mmd2"],
            "l1": ev["l1"],
            "diversity": ev["diversity"],
        }
        points.append(point)
        print(f"step {step}: " + ", ".join(f"{k} {v}" for k, v in point.items()), flush=True)
    # How the last point and two real references read at wider kernels (the paper does not
    # restate its bandwidth): real test instances of each class against the training instances
    # of that class (about 0) and of the other classes' test instances against them (how far
    # apart the classes are; a counterfactual that stays like its query scores near this).
    test_feats = space.features(np.asarray(test.inputs, np.float32))
    test_labels = np.asarray(test.labels).astype(np.int64)
    x_eval = space.project(rows.x_cf)
    cf_feats, cf_pred = space.features(x_eval), metrics.predict(classifier, x_eval)
    ref_feats, ref_labels = reference
    kernels = []
    for scale in KERNEL_SCALES:
        b = bandwidth * scale
        kernels.append(
            {
                "scale": scale,
                "bandwidth": b,
                "step": step,
                "class_mmd2": class_mmd2(cf_feats, cf_pred, ref_feats, ref_labels, num_classes, b),
                "real_same_class": [
                    mmd2(test_feats[test_labels == c], ref_feats[ref_labels == c], b)
                    for c in range(num_classes)
                ],
                "real_other_classes": [
                    mmd2(test_feats[test_labels != c], ref_feats[ref_labels == c], b)
                    for c in range(num_classes)
                ],
            }
        )
    return to_jsonable(
        {
            "dataset": job.dataset,
            "job": _job_label(config.job),
            "generator": meta["configs"]["generator"],
            "train_steps": int(job.generator.steps),
            "batch_size": int(job.generator.batch_size),
            "classifier_test_accuracy": clf_meta.get("test_accuracy"),
            "queries": n,
            "num_cfs": config.num_cfs,
            "class_names": list(test.class_names) or [str(c) for c in range(num_classes)],
            "bandwidth": bandwidth,
            "points": points,
            "kernels": kernels,
            "pace": training_pace(workdir),
            "published": PUBLISHED.get(job.dataset),
        }
    )


def _job_label(job: Any) -> str:
    """A job config file relative to the working directory when under it (no machine paths in
    recorded results), else its name."""
    if not isinstance(job, str | Path):
        return type(job).__name__
    path = Path(job).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def add_reference(doc: dict[str, Any], report: str | Path) -> dict[str, Any]:
    """``doc`` with ``reference``: another run's generator row from its protocol report JSON
    (e.g. the small config's recorded one): its steps and metrics."""
    with open(report) as f:
        rep = json.load(f)
    gen = rep["methods"]["generator"]
    keys = ("validity", "mmd2", "class_mmd2", "l1", "diversity")
    return {
        **doc,
        "reference": {
            "report": Path(report).name,
            "step": rep["generator"]["train_steps"],
            "generator": rep["generator"]["config"],
            **{k: gen[k] for k in keys},
        },
    }


def trend(points: list[dict[str, Any]], num_classes: int) -> list[float | None]:
    """Per class, the relative change of class MMD² from the last point at or below half the
    last point's step to the last point (over the last doubling of steps or more); ``None``
    with too few points."""
    if len(points) < 2:
        return [None] * num_classes
    last = points[-1]
    earlier = [p for p in points[:-1] if p["step"] <= last["step"] / 2] or points[:-1]
    base = earlier[-1]
    out = []
    for c in range(num_classes):
        a, b = base["class_mmd2"][c], last["class_mmd2"][c]
        out.append(None if a is None or b is None or a == 0 else (b - a) / a)
    return out


def curve_figure(doc: dict[str, Any], path: str | Path) -> None:
    """Class MMD² per class against training steps (log axis), the paper's values and the
    reference run's as horizontal lines."""
    names = doc["class_names"]
    steps = [p["step"] for p in doc["points"]]
    fig = Figure(figsize=(7.0, 4.2), dpi=110)
    ax = fig.add_subplot()
    colours = ("tab:blue", "tab:red", "tab:green", "tab:purple")
    for c, name in enumerate(names):
        colour = colours[c % len(colours)]
        values = [
            np.nan if p["class_mmd2"][c] is None else p["class_mmd2"][c] for p in doc["points"]
        ]
        ax.plot(steps, values, "o-", color=colour, label=f"{name}: this run")
        published = (doc.get("published") or {}).get("class_mmd2")
        if published is not None:
            ax.axhline(published[c], color=colour, ls="--", lw=1, label=f"{name}: paper")
        ref = doc.get("reference")
        if ref is not None and ref["class_mmd2"][c] is not None:
            ax.axhline(
                ref["class_mmd2"][c],
                color=colour,
                ls=":",
                lw=1.2,
                label=f"{name}: small config ({ref['step']} steps)",
            )
    # Validity beside it: class MMD² groups counterfactuals by predicted class, so a generator
    # that has not yet moved its queries scores low (they still look like their own class).
    right = ax.twinx()
    validity = [np.nan if p["validity"] is None else 100 * p["validity"] for p in doc["points"]]
    right.plot(steps, validity, ".-", color="0.55", lw=1, label="validity % (right axis)")
    right.set_ylim(0, 105)
    right.set_ylabel("validity %", color="0.4")
    ax.set_xscale("log")
    ax.set_xticks(steps, [f"{s:,}" for s in steps], fontsize=7)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"training steps (batch {doc['batch_size']}, log scale)")
    ax.set_ylabel("class MMD²")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{doc['dataset']}: class MMD² of the EMA generator against training steps")
    ax.grid(alpha=0.3, which="major")
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, fontsize=7, loc="center right")
    fig.tight_layout()
    save_figure_atomic(fig, path)


def _fmt(v: Any, digits: int = 4) -> str:
    return "—" if v is None else f"{round(v, digits) + 0.0:.{digits}f}"  # no "-0.000"


def kept_reading(path: str | Path) -> str | None:
    """The hand-written ``## Reading`` section of an existing curve page (up to its next
    ``## `` heading), which :func:`write_curve` keeps when it rewrites the page; ``None``
    without one."""
    path = Path(path)
    if not path.is_file():
        return None
    text = path.read_text()
    start = text.find(f"\n{READING}\n")
    if start < 0:
        return None
    section = text[start + 1 :]
    end = section.find("\n## ", len(READING))
    return (section if end < 0 else section[:end]).strip() + "\n"


def curve_markdown(doc: dict[str, Any], figure: str, reading: str | None = None) -> str:
    """The curve's markdown page: the table of points, the reference rows, the trend over the
    last doubling of steps, the kernel table, the pace of training and its projection to the
    whole run; ``reading`` (a hand-written ``## Reading`` section) after the introduction."""
    names = doc["class_names"]
    g = doc["generator"]
    embed = g.get("cond_embed") or "none"
    lines = [
        f"# Learning curve of the {doc['dataset']} generator",
        "",
        f"The EMA generator of `{Path(doc['job']).name}` ({g['kind']}, hidden {g.get('hidden')}, "
        f"noise {g.get('noise_dim')} per step, condition embeddings {embed}; "
        f"{doc['train_steps']:,} steps planned at batch {doc['batch_size']}) at the steps it was "
        f"kept, each on the protocol's {doc['queries']} test queries, {doc['num_cfs']} "
        f"counterfactuals each (MMD² kernel bandwidth {doc['bandwidth']:.3f}, shared with the "
        "protocol's report).",
        "",
        *([reading] if reading else []),
        "## Points",
        "",
        f"![class MMD² against steps]({figure})",
        "",
        "| steps | validity % | MMD² | "
        + " | ".join(f"class MMD² {n}" for n in names)
        + " | L1 | diversity |",
        "| ---: | ---: | ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: |",
    ]

    def row(label, p):
        cls = " | ".join(_fmt(v) for v in p["class_mmd2"])
        validity = "—" if p.get("validity") is None else f"{100 * p['validity']:.1f}"
        return (
            f"| {label} | {validity} | {_fmt(p.get('mmd2'))} | {cls} | {_fmt(p.get('l1'))} | "
            f"{_fmt(p.get('diversity'), 3)} |"
        )

    for p in doc["points"]:
        lines.append(row(f"{p['step']:,}", p))
    ref = doc.get("reference")
    if ref is not None:
        lines.append(row(f"small config ({ref['step']:,}; {ref['report']})", ref))
    pub = doc.get("published")
    if pub is not None:
        label = f"paper ({pub['table']})" if "table" in pub else "paper"
        lines.append(row(label, {**pub, "diversity": None}))
    lines.append("")
    change = trend(doc["points"], len(names))
    if any(c is not None for c in change):
        last = doc["points"][-1]["step"]
        verdicts = []
        for name, c in zip(names, change, strict=True):
            if c is None:
                continue
            state = "still falling" if c <= -FLAT_SHARE else "flat" if c < FLAT_SHARE else "rising"
            verdicts.append(f"{name} {100 * c:+.0f}% ({state})")
        lines += [
            f"Change of class MMD² over the last doubling of steps (to step {last:,}): "
            + ", ".join(verdicts)
            + f"; 'flat' is a change within ±{100 * FLAT_SHARE:.0f}%.",
            "",
        ]
    kernels = doc.get("kernels") or []
    if kernels:
        lines += [
            f"The last point (step {kernels[0]['step']:,}) at wider kernels, beside real test "
            "instances of each class (same class: test instances labelled c against training "
            "instances labelled c; other classes: test instances not labelled c against them). "
            f"{units.PAPER_BANDWIDTH_SCALE}x is the scale the Adult report calibrated on the "
            "paper's DiCE row (`explain/amortised/units.py`).",
            "",
            "| kernel | bandwidth | "
            + " | ".join(f"class MMD² {n}" for n in names)
            + " | "
            + " | ".join(f"real, not {n}, vs {n}" for n in names)
            + " | "
            + " | ".join(f"real {n} vs {n}" for n in names)
            + " |",
            "| ---: | ---: | " + " | ".join("---:" for _ in range(3 * len(names))) + " |",
        ]
        for k in kernels:
            cells = [*k["class_mmd2"], *k["real_other_classes"], *k["real_same_class"]]
            lines.append(
                f"| {k['scale']:g}x | {k['bandwidth']:.2f} | "
                + " | ".join(_fmt(v, 3) for v in cells)
                + " |"
            )
        shares = [
            None if a is None or not b else a / b
            for a, b in zip(kernels[0]["class_mmd2"], kernels[0]["real_other_classes"], strict=True)
        ]
        if any(v is not None for v in shares):
            lines += [
                "",
                "At the protocol's kernel the last point's class MMD² is "
                + ", ".join(
                    f"{100 * v:.0f}% ({n})" for n, v in zip(names, shares, strict=True) if v
                )
                + " of what real instances of the other classes score against each class: 0% "
                "would be counterfactuals distributed like real instances of the class they are "
                "predicted as, 100% like real instances of the class they came from.",
            ]
        lines.append("")
    pace = doc.get("pace")
    if pace is not None and pace["seconds_per_step"]:
        total = pace["seconds_per_step"] * doc["train_steps"]
        lines += [
            f"Training {'finished' if pace['finished'] else 'reached'} step {pace['step']:,} of "
            f"{doc['train_steps']:,} in {pace['train_seconds']:.0f} s of training loop time "
            f"({pace['seconds_per_step']:.2f} s a step, compiling, validation and checkpoints "
            "included; a resumed part's start-up and the steps an interrupted part did after "
            f"its last checkpoint are not): the whole run at this pace takes {total / 3600:.1f} "
            "h.",
            "",
        ]
    lines += [
        "Columns as in the protocol's report: validity is the share of counterfactuals the "
        "classifier puts at the target; MMD² is between all counterfactuals and real training "
        "instances; class MMD² per class c between counterfactuals predicted as c and training "
        "instances labelled c; L1 the mean |x_cf - x| per element; the paper's row is its own "
        "generator (another classifier, its full budget).",
        "",
    ]
    return "\n".join(lines)


def write_curve(doc: dict[str, Any], out: str | Path) -> list[Path]:
    """Writes ``<out>.json``, ``<out>.md`` (keeping the ``## Reading`` section of the page it
    replaces) and ``<out>.png``; returns their paths."""
    out = Path(out)
    json_path, md_path, png_path = (out.with_name(out.name + s) for s in (".json", ".md", ".png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, doc)
    curve_figure(doc, png_path)
    write_text_atomic(md_path, curve_markdown(doc, png_path.name, kept_reading(md_path)))
    return [json_path, md_path, png_path]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m explain.amortised.curve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", required=True, help="the explain config (ExplainConfig)")
    parser.add_argument("--workdir", required=True, help="the training workdir")
    parser.add_argument("--out", required=True, help="output path without suffix")
    parser.add_argument("--reference", help="a protocol report.json to show as a reference")
    args = parser.parse_args(argv)
    doc = evaluate_curve(load_config(args.config), args.workdir)
    if args.reference:
        doc = add_reference(doc, args.reference)
    for path in write_curve(doc, args.out):
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
