"""The AIP paper's CelebA protocol (Yang et al. 2021, *Generative counterfactuals for neural
networks via attribute-informed perturbation*): a gender classifier on 64x64 faces explained
by AIP, xGEMs, REVISE, FGSM and AIP's random search AIP_R on held-out faces, the attribute
analysis, and counterfactual data augmentation; :func:`run_aip_protocol` runs it.

Steps (each skipped when its result is in the workdir already, so an interrupted run resumes):

1. the models, each trained into ``<workdir>/models/<name>`` from its config when missing (or
   taken from a checkpoint the job names): ``classifier`` (gender, the model explained),
   ``classifier_young`` (age), ``vae`` (REVISE's and xGEMs' generative model), ``attgan``
   (AIP's attribute-informed encoder-decoder);
2. every method on the first ``queries`` test faces, each towards the class the gender
   classifier does *not* predict, through the runner into the run store (``<workdir>/runs``;
   a finished run is reused);
3. AIP (the job's ``attribute_method``: steps of its own) on the first ``attribute_queries``
   test faces against the age classifier (the run ``aip_young``);
4. the augmentation experiment, one folder per seed under ``<workdir>/augment``.

The job is in ``job``, the models in ``models``, the metrics (FR, LPR, L1, realism, time) in
``scores``, the attribute analysis in ``attributes``, the augmentation in ``augmentation``, and
``<workdir>/report/report.{json,md}`` with its figures in ``report``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from explain.aip.attributes import attribute_changes, attribute_ranking, direction_ranking, rank_of
from explain.aip.augmentation import finished_seeds, recorded_method, run_augmentation
from explain.aip.job import AIPJob
from explain.aip.models import apply_batched, load_models, reconstruct
from explain.aip.report import lpr_against_l1, report_markdown, scores_markdown
from explain.aip.scores import (
    PAPER_ORDERING,
    ordering_holds,
    per_query_seconds,
    retry_summary,
    score_methods,
)
from jaxcf import experiment, report
from jaxcf.core import to_jsonable, write_json_atomic, write_text_atomic
from jaxcf.data import load_dataset
from jaxcf.evaluation import metrics
from jaxcf.methods import make

# The model whose reconstruction each latent method starts from (the LPR from start); any
# other method starts from the query itself.
_STARTS = {"aip": "attgan", "aip_random": "attgan", "xgems": "vae", "revise": "vae"}


def run_aip_protocol(job: AIPJob, workdir: str | Path) -> dict[str, Any]:
    """Runs the protocol; writes ``<workdir>/report/report.{json,md}`` and its figures and
    returns what the JSON holds."""
    workdir = Path(workdir)
    aip_spec = next(s for s in job.methods if s.key == "aip")
    age_spec = job.attribute_method or aip_spec
    if job.augment is not None:  # a mismatched finished seed fails now, not after the runs
        finished_seeds(job.augment, workdir / "augment", *recorded_method(job.augment, age_spec))
    out = workdir / experiment.REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    models, info = load_models(job, workdir)
    attgan = models["attribute_model"]
    names = tuple(attgan.attribute_names)
    test = load_dataset("celeba", "test")
    if job.queries >= len(test.labels) - 1:
        raise ValueError(
            f"queries ({job.queries}) must leave at least 2 of the {len(test.labels)} test "
            "faces as the real faces realism is measured against"
        )
    x = test.inputs[: job.queries]
    target = (1 - metrics.predict(models["classifier"], x)).astype(np.int32)
    stop = None if job.real_faces is None else job.queries + job.real_faces
    real = (test.inputs[job.queries : stop], test.labels[job.queries : stop])

    # The age classifier: which attributes does AIP move to flip it? Run first: it is short, and
    # a workdir holding a run of another attribute_method stops here, not after the long runs.
    xa = test.inputs[: job.attribute_queries]
    age_target = (1 - metrics.predict(models["age"], xa)).astype(np.int32)
    age_run = experiment.run_explainer(
        "aip_young",
        make(age_spec, classifier=models["age"], attribute_model=attgan),
        xa,
        age_target,
        workdir,
        config=job.runner,
        seed=job.seed,
    )
    resources = {k: models[k] for k in ("classifier", "vae", "attribute_model")}
    results = experiment.run_methods(
        job.methods, resources, x, target, workdir, config=job.runner, seed=job.seed
    )
    clf = models["classifier"]
    outputs = {
        m: (r.x_cf, metrics.validity(clf, r.x_cf, r.target) & r.success.astype(bool))
        for m, r in results.items()
    }
    for name, model in (("attgan", attgan), ("vae", models["vae"])):
        x_rec = apply_batched(reconstruct, model, x)
        outputs[f"{name} reconstruction"] = (x_rec, metrics.predict(clf, x_rec) == target)
    starts = {
        s.key: f"{_STARTS[s.name]} reconstruction" if s.name in _STARTS else "query"
        for s in job.methods
        if s.key in results
    }
    scores = score_methods(
        outputs, x, target, models, real, job.lpr_tolerance, starts, sweep=job.lpr_sweep
    )
    timing = {m: per_query_seconds(r) for m, r in results.items()}

    aip = results["aip"]
    aip_ok = outputs["aip"][1]
    gender_delta = attribute_changes(aip)
    gender_ranking = attribute_ranking(gender_delta, aip_ok, names)

    age_ok = metrics.validity(models["age"], age_run.x_cf, age_target) & age_run.success.astype(
        bool
    )
    age_delta = attribute_changes(age_run)
    age_ranking = attribute_ranking(age_delta, age_ok, names)
    # Split by direction: what moves a face towards "young" need not be what moves it towards
    # "old", and the pooled mean change of an attribute can cancel between the two.
    age_by_direction = {
        direction: direction_ranking(age_delta, age_ok & (age_target == young), names)
        for direction, young in (("towards young", 1), ("towards old", 0))
    }

    augmentation = None
    if job.augment is not None:
        augmentation = run_augmentation(job, attgan, workdir / "augment", age_spec)

    # Figures.
    show = experiment.grid_rows(len(x), job.grid)
    labels = list(results)
    report.counterfactual_grid(
        out / "aip_faces.png",
        x[show],
        {m: results[m].x_cf[show] for m in labels},
        target[show],
        pred=1 - target[show],
        n=len(show),
        title="Gender classifier (0 female, 1 male): query, counterfactual, difference",
        extras={
            m: {"success": outputs[m][1][show], "score": results[m].score[show]} for m in labels
        },
    )
    flipped = np.flatnonzero(aip_ok)[:4]
    if len(flipped):
        report.attribute_change_figure(
            out / "aip_attributes_queries.png",
            x[flipped],
            aip.x_cf[flipped],
            gender_delta[flipped],
            names,
            title="AIP on the gender classifier: attributes ranked by |a* - a0| per query",
        )
    lpr_against_l1(out / "aip_lpr_l1.png", scores, job)
    report.attribute_ranking_plot(
        out / "aip_attributes.png",
        {
            f"gender classifier ({int(aip_ok.sum())} queries)": gender_ranking,
            f"age classifier ({int(age_ok.sum())} queries)": age_ranking,
            **{
                f"age, {direction} ({d['flipped']})": d["ranking"]
                for direction, d in age_by_direction.items()
            },
        },
        names,
        title="Mean |a* - a0| of AIP's counterfactuals, per attribute",
    )

    doc = {
        "queries": len(x),
        "real_faces": len(real[1]),
        "models": info,
        "scores": scores,
        "timing": timing,
        "retries": {
            m: retry_summary(r, outputs[m][1]) for m, r in results.items() if "attempt" in r.extras
        },
        "paper_ordering": list(PAPER_ORDERING),
        "ordering_holds": ordering_holds(scores),
        "lpr_tolerance": job.lpr_tolerance,
        "lpr_sweep": list(job.lpr_sweep),
        "attributes": {
            "names": list(names),
            "gender_classifier": gender_ranking,
            "age_classifier": age_ranking,
            "age_flipped": int(age_ok.sum()),
            "age_queries": len(xa),
            "male_rank_for_age": rank_of(age_ranking, "Male"),
            "age_by_direction": age_by_direction,
            "age_method": dataclasses.asdict(age_spec.resolved_config()),
        },
        "augmentation": augmentation,
        "config": {
            "methods": [
                {"key": s.key, "name": s.name, "config": dataclasses.asdict(s.resolved_config())}
                for s in job.methods
            ],
            "queries": job.queries,
            "attribute_queries": job.attribute_queries,
            "seed": job.seed,
        },
    }
    doc = to_jsonable(doc)
    write_json_atomic(out / "report.json", doc)
    write_text_atomic(out / "report.md", report_markdown(doc))
    print(scores_markdown(scores, timing), flush=True)
    print(f"wrote {out}/report.json, report.md and figures", flush=True)
    return doc
