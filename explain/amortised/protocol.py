"""The explanation protocol's orchestration, :func:`run_protocol` (Van Looveren et al. 2021).

:func:`run_protocol` (an :class:`~explain.amortised.config.ExplainConfig`) explains test queries
with the trained generator (``num_cfs`` diverse counterfactuals each, through the runner into the
run store, where a finished run is reused) and with its peers (Wachter's and CFProto's per-query
searches through the runner; DiCE on tabular data), then evaluates every method on the same
queries: validity, MMD^2 to real training instances overall and per predicted class (one kernel
bandwidth per data set, shared by every method), L1, L0 and constraint violations (tabular; also
in the paper's units, see ``units``), diversity and steady-state seconds per counterfactual. Further
generators of the same classifier (``extra_generators``) explain the same queries as rows of
their own. It writes ``<workdir>/report/{report.md, report.json}``
and figures; :data:`~explain.amortised.published.PUBLISHED` holds the paper's numbers shown beside
ours. The steps live beside it: the models in ``job``, the measures in ``evaluation``, DiCE in
``dice``, CFProto in ``cfproto``, the soft targets in ``soft``, the figures in ``figures``, the
markdown in ``report``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import numpy as np

from explain.amortised import units
from explain.amortised.cfproto import run_cfproto
from explain.amortised.config import ExplainConfig
from explain.amortised.dice import run_dice
from explain.amortised.evaluation import Rows, Space, encoded_box, evaluate_rows
from explain.amortised.figures import write_figures
from explain.amortised.job import GENERATOR_DIR, GeneratorJob, load_models
from explain.amortised.published import PUBLISHED
from explain.amortised.report import conventions, main_table, report_markdown
from explain.amortised.soft import run_soft_targets
from jaxcf import peers
from jaxcf.core import to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.evaluation.distribution import class_mmd2, median_bandwidth, mmd2
from jaxcf.experiment import RUNS_DIR, flip_targets, run_explainer, steady_timing
from jaxcf.methods import GeneratorConfig, make

REPORT_DIR = "report"


def run_protocol(config: ExplainConfig, workdir: str | Path) -> dict[str, Any]:
    """Explains test queries with the trained generator and its peers; evaluates and reports.

    Runs the generator (``num_cfs`` counterfactuals per query), Wachter and CFProto through the
    runner (chunked, sharded over every device, resumable) and DiCE through
    :class:`jaxcf.peers.dice.DicePeer`, into the run store ``<workdir>/runs`` (finished runs are
    reused); evaluates every method (validity, MMD^2 overall and per predicted class with one shared
    bandwidth, L1, L0, constraint violations, diversity, seconds per counterfactual) and writes
    ``<workdir>/report/{report.md, report.json}`` and figures.

    Returns:
      The dict written to ``report.json``.
    """

    workdir = Path(workdir)
    job = config.resolved_job()
    out = workdir / REPORT_DIR
    runs = workdir / RUNS_DIR
    classifier, generator, gen_meta, clf_meta = load_models(
        job, workdir, train=config.train_missing
    )
    train = load_dataset(job.dataset, "train")
    test = load_dataset(job.dataset, "test")
    num_classes = test.num_classes or int(np.max(train.labels)) + 1
    class_names = list(test.class_names) or [str(c) for c in range(num_classes)]
    space = Space(classifier, generator, train, config)
    extra_jobs = config.resolved_extra_jobs(job)
    extra_models = {
        name: load_models(
            extra, workdir, train=config.train_missing, generator_dir=f"{GENERATOR_DIR}_{name}"
        )[1:3]
        for name, extra in extra_jobs
    }

    n = len(test) if config.queries is None else min(config.queries, len(test))
    order = np.random.default_rng(config.seed).permutation(len(test))[:n]
    x = np.asarray(test.inputs[order], np.float32)
    pred = metrics.predict(classifier, x)
    target = flip_targets(pred, num_classes, config.seed + 1)

    # One bandwidth for every method, from real training data alone.
    ref_idx = np.sort(
        np.random.default_rng(config.seed + 2).permutation(len(train))[
            : min(config.mmd_reference, len(train))
        ]
    )
    ref_x = np.asarray(train.inputs[ref_idx], np.float32)
    ref_feats = space.features(ref_x)
    half = len(ref_feats) // 2
    bandwidth = median_bandwidth(ref_feats[:half], ref_feats[half:])
    reference = (ref_feats, np.asarray(train.labels[ref_idx]).astype(np.int64))
    # The paper's MMD (tabular): the same instances and space, the paper's wider kernel.
    paper_reference = None
    if space.kind == "tabular":
        paper_reference = (ref_feats, reference[1], bandwidth * units.PAPER_BANDWIDTH_SCALE)

    explainer = make(
        "generator", GeneratorConfig(fixed=config.fixed), classifier=classifier, generator=generator
    )
    gen = run_explainer(
        "generator",
        explainer,
        x,
        target,
        workdir,
        config=config.runner,
        num_cfs=config.num_cfs,
        seed=config.seed,
        progress=config.progress,
        meta={"method": "generator", "dataset": job.dataset},
    )
    gen_timing = steady_timing(gen)
    method_rows = {"generator": Rows.from_results("generator", gen, gen_timing, config.num_cfs)}
    for name, (extra_generator, _) in extra_models.items():
        label = f"generator ({name})"
        res = run_explainer(
            f"generator_{name}",
            make(
                "generator",
                GeneratorConfig(fixed=config.fixed),
                classifier=classifier,
                generator=extra_generator,
            ),
            x,
            target,
            workdir,
            config=config.runner,
            num_cfs=config.num_cfs,
            seed=config.seed,
            progress=config.progress,
            meta={"method": label, "dataset": job.dataset},
        )
        method_rows[label] = dataclasses.replace(
            Rows.from_results(label, res, steady_timing(res), config.num_cfs), method=label
        )

    def generator_subset(k: int) -> None:
        if k >= n:
            return
        keep = np.asarray(gen.query) < k
        base = method_rows["generator"]
        method_rows[f"generator (first {k})"] = dataclasses.replace(
            base,
            label=f"generator (first {k})",
            x=base.x[keep],
            x_cf=base.x_cf[keep],
            target=base.target[keep],
            query=base.query[keep],
        )

    peer_queries: dict[str, int] = {}
    if "wachter" in config.peers:
        k = n if config.wachter_queries is None else min(config.wachter_queries, n)
        peer_queries["wachter"] = k
        generator_subset(k)
        wachter_config = config.wachter
        if space.kind == "tabular":
            wachter_config = encoded_box(wachter_config, train.inputs, x)
        wachter = make("wachter", wachter_config, classifier=classifier)
        res = run_explainer(
            "wachter",
            wachter,
            x[:k],
            target[:k],
            workdir,
            config=config.wachter_runner,
            num_cfs=1,
            seed=config.seed,
            progress=config.progress,
            meta={"method": "wachter", "config": dataclasses.asdict(wachter_config)},
        )
        timing = {**steady_timing(res), "config": dataclasses.asdict(wachter_config)}
        method_rows["wachter"] = Rows.from_results("wachter", res, timing, 1)
    if "cfproto" in config.peers:
        k = n if config.cfproto_queries is None else min(config.cfproto_queries, n)
        peer_queries["cfproto"] = k
        generator_subset(k)
        method_rows["cfproto"] = run_cfproto(
            config, space, classifier, train.inputs, x[:k], target[:k], workdir
        )
    left_out: dict[str, str] = {}
    if "dice" in config.peers and not peers.available("dice"):
        left_out["dice"] = peers.missing_message("dice")
        print(left_out["dice"], flush=True)
    elif "dice" in config.peers:
        if space.transform is None:
            raise ValueError("the DiCE peer explains tabular data only")
        k = min(config.dice_queries, n)
        peer_queries["dice"] = k
        generator_subset(k)
        method_rows["dice"] = run_dice(config, space, classifier, train, x[:k], target[:k], runs)

    evaluation, extras = {}, {}
    for label, rows in method_rows.items():
        evaluation[label], extras[label] = evaluate_rows(
            rows, space, reference, bandwidth, num_classes, paper_reference
        )
    gen_s = evaluation["generator"]["seconds_per_cf"]
    for ev in evaluation.values():
        ev["generator_speedup"] = (
            ev["seconds_per_cf"] / gen_s if gen_s and ev["seconds_per_cf"] else None
        )

    # The noise floor: the real test queries themselves, by their predicted class.
    query_feats = space.features(x)
    real = {
        "mmd2": mmd2(query_feats, ref_feats, bandwidth),
        "class_mmd2": [
            None if not np.isfinite(v) else float(v)
            for v in class_mmd2(query_feats, pred, ref_feats, reference[1], num_classes, bandwidth)
        ],
        "queries": n,
    }
    if paper_reference is not None:
        p_bandwidth = paper_reference[2]
        real["mmd2_paper"] = mmd2(query_feats, ref_feats, p_bandwidth)
        real["class_mmd2_paper"] = [
            None if not np.isfinite(v) else float(v)
            for v in class_mmd2(
                query_feats, pred, ref_feats, reference[1], num_classes, p_bandwidth
            )
        ]

    soft = None
    if config.soft_queries:
        soft = run_soft_targets(
            config, explainer, classifier, x, pred, target, num_classes, out, workdir
        )

    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(
        config, space, out, method_rows, extras, x, pred, query_feats, class_names, soft
    )
    published = PUBLISHED.get(job.dataset)
    doc = {
        "dataset": job.dataset,
        "job": _job_name(config.job),
        "classifier": {
            "model": clf_meta.get("model"),
            "test_accuracy": clf_meta.get("test_accuracy"),
        },
        "generator": _generator_json(gen_meta),
        "extra_generators": {
            name: _generator_json(meta) for name, (_, meta) in extra_models.items()
        },
        "queries": n,
        "num_cfs": config.num_cfs,
        "target_rule": config.target,
        "seed": config.seed,
        "peer_queries": peer_queries,
        "left_out": left_out,
        "class_names": class_names,
        "bandwidth": {
            "value": bandwidth,
            "space": space.feature_space,
            "reference_instances": len(ref_idx),
            "rule": "median heuristic on real training instances only, shared by every method",
        },
        "bandwidth_paper": None
        if paper_reference is None
        else {
            "value": paper_reference[2],
            "scale": units.PAPER_BANDWIDTH_SCALE,
            "space": space.feature_space,
            "reference_instances": len(ref_idx),
            "rule": f"{units.PAPER_BANDWIDTH_SCALE} x the median-heuristic bandwidth, calibrated "
            "on the paper's DiCE row (explain/amortised/units.py)",
        },
        "conventions": conventions(space),
        "methods": evaluation,
        "real_queries": real,
        "soft_targets": soft,
        "published": published,
        "figures": figures,
        "config": _config_json(config),
        "devices": [str(d) for d in jax.devices()],
    }
    write_json_atomic(out / "report.json", doc)
    text = report_markdown(doc, space)
    write_text_atomic(out / "report.md", text)
    print(main_table(doc, space), flush=True)
    return to_jsonable(doc)


def _generator_json(meta: dict[str, Any]) -> dict[str, Any]:
    """What the report says of a trained generator: its config, budget and last validation."""
    train_config = meta.get("train_config", {})
    return {
        "config": meta.get("configs", {}).get("generator"),
        "train_steps": train_config.get("steps"),
        "batch_size": train_config.get("batch_size"),
        "train_seconds": meta.get("train_seconds"),
        "last_validation": (meta.get("history") or [None])[-1],
    }


def _job_name(job: Any) -> str:
    """A job config file as a path relative to the working directory (when under it)."""
    if isinstance(job, GeneratorJob):
        return "GeneratorJob"
    path = Path(job).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def _config_json(config: ExplainConfig) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.name == "job":
            v = _job_name(v)
        elif f.name == "extra_generators":
            v = [[name, _job_name(j)] for name, j in v]
        elif dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        out[f.name] = v
    return to_jsonable(out)
