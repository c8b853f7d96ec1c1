"""The protocol's report: ``report.md`` (the scores table, the retries, the LPR sweep, the
attribute rankings, the augmentation table) and the figure of LPR against L1."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from explain.aip.job import AIPJob
from explain.aip.published import augmentation_sentence
from jaxcf import report


def _pct(v: Any, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}"


def _num(v: Any, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def scores_markdown(scores: Mapping[str, Any], timing: Mapping[str, Any]) -> str:
    """The scores table in markdown: one row per method (percentages, L1 per pixel, seconds)."""
    lines = [
        "| method | FR % | LPR % (AttGAN code) | LPR % (VAE code) | LPR % from start (AttGAN "
        "code) | LPR % from start (VAE code) | L1 per pixel | MMD^2 realism | s / query | "
        "s / query steady |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, s in scores.items():
        t = timing.get(label, {})
        lines.append(
            f"| {label} | {_pct(s['fr'])} | {_pct(s['lpr_attgan'])} | {_pct(s['lpr_vae'])} | "
            f"{_pct(s['lpr_start_attgan'])} | {_pct(s['lpr_start_vae'])} | "
            f"{_num(s['l1'], '.4f')} | {_num(s['mmd2'], '.4f')} | "
            f"{_num(t.get('seconds_per_query'), '.3f')} | "
            f"{_num(t.get('steady_seconds_per_query'), '.3f')} |"
        )
    return "\n".join(lines) + "\n"


def _direction_markdown(by_direction: Mapping[str, Mapping[str, Any]]) -> str:
    """The age ranking split by the direction of the flip: the top attributes with their signed
    mean change, and where Male ranks and which way it moves."""
    rows = []
    for direction, d in by_direction.items():
        top = ", ".join(f"{r['attribute']} {r['mean_change']:+.2f}" for r in d["ranking"][:3])
        rank = d["male_rank"]
        change = f"{d['ranking'][rank - 1]['mean_change']:+.3f}" if rank else "-"
        rows.append(f"| {direction} | {d['flipped']} | {top or '-'} | {rank or '-'} | {change} |")
    return (
        "\nThe age classifier's ranking split by the direction of the flip (signed mean change "
        "a* - a0; Male > 0 means towards male):\n\n"
        "| direction | flipped | top 3 attributes (mean change) | Male rank | Male mean change |\n"
        "| :--- | ---: | :--- | ---: | ---: |\n" + "\n".join(rows) + "\n"
    )


def _ranking_markdown(ranking: list[dict], title: str) -> str:
    if not ranking:
        return f"\n{title}: no flipped queries.\n"
    rows = "\n".join(
        f"| {i + 1} | {r['attribute']} | {r['mean_abs_change']:.3f} | {r['mean_change']:+.3f} | "
        f"{100 * r['top_share']:.0f} |"
        for i, r in enumerate(ranking)
    )
    return (
        f"\n{title}\n\n| rank | attribute | mean abs change | mean change | most changed on % |\n"
        "| ---: | :--- | ---: | ---: | ---: |\n" + rows + "\n"
    )


def _retries_markdown(retries: Mapping[str, Any]) -> str:
    lines = []
    for label, r in retries.items():
        parts = [
            f"{q} at {r['field']} {v:g} ({f} flipped)"
            for v, q, f in zip(r["values"], r["queries"], r["flipped"], strict=True)
        ]
        lines.append(f"{label}'s counterfactuals by attempt: " + ", ".join(parts) + ".")
    return "\n".join(lines) + ("\n" if lines else "")


def _sweep_markdown(scores: Mapping[str, Any], tolerance: float, sweep: list) -> str:
    """The AttGAN code's LPR at the main tolerance and each of the sweep's."""
    if not sweep:
        return ""
    tols = [f"{t:g}" for t in sweep]
    head = " / ".join([f"{tolerance:g}", *tols])

    def cells(row, key):
        values = [row.get(key), *(row.get(f"{key}_at", {}).get(t) for t in tols)]
        return " / ".join(_pct(v) for v in values)

    lines = [
        f"\nLPR % (AttGAN code) at tolerances {head} standard deviations:\n",
        "| method | from the query | from the start |",
        "| :--- | ---: | ---: |",
    ]
    for label, row in scores.items():
        if row.get("lpr_attgan") is not None and label != "query":
            lines.append(
                f"| {label} | {cells(row, 'lpr_attgan')} | {cells(row, 'lpr_start_attgan')} |"
            )
    return "\n".join(lines) + "\n"


def _settings(config: Mapping[str, Any]) -> str:
    """An AIP config's steps and weights as ``"mu 2.0, gamma 3.0, ..."`` (and its retries'
    step factors, if any)."""
    keys = ("mu", "gamma", "alpha", "beta")
    text = ", ".join(f"{k} {config[k]}" for k in keys if k in config)
    if config.get("step_scale", 1.0) != 1.0:
        text += f", both steps x{config['step_scale']:g}"
    if config.get("schedule"):
        text += "; unflipped faces retried with steps x" + ", x".join(
            f"{f:g}" for f in config["schedule"]
        )
    return text


def _fixed_fgsm_note(methods: list[Mapping[str, Any]]) -> str:
    """A sentence naming the FGSM rows that take one fixed step (no retries), if any."""
    fixed = [
        m["key"]
        for m in methods
        if m["key"] != "fgsm" and m.get("name") == "fgsm" and not m["config"]["schedule"]
    ]
    if not fixed:
        return ""
    return (
        f" {', '.join(fixed)}: FGSM with one step of that fixed size and no retries, for the LPR "
        "at a like amount of image change."
    )


def report_markdown(doc: Mapping[str, Any]) -> str:
    """``report.md`` from the report's dict (what ``report.json`` holds)."""
    info = doc["models"]
    clf, age = info["classifier"], info["classifier_young"]
    att = doc["attributes"]
    aip_config = next(m["config"] for m in doc["config"]["methods"] if m["key"] == "aip")
    text = (
        f"# AIP protocol on CelebA: {doc['queries']} held-out faces\n\n"
        f"Gender classifier test accuracy {clf['test_accuracy']:.4f}; age classifier "
        f"{age['test_accuracy']:.4f}. Models: "
        + ", ".join(f"{k} `{v['dir']}`" for k, v in info.items())
        + ". Each query is explained towards the class the gender "
        "classifier does not predict. FR: flip ratio. LPR: fraction of code dimensions that "
        f"moved by more than {doc['lpr_tolerance']} standard deviations (over real faces) when "
        "the query and its counterfactual are encoded by the same encoder, over flipped queries; "
        "the reconstruction rows are the floor re-encoding alone gives. LPR from start: the same "
        "count between the counterfactual and the image the method perturbs (AIP and AIP_R: the "
        "AttGAN's reconstruction; xGEMs and REVISE: the VAE's; FGSM: the query), which takes that "
        "floor out. L1: mean absolute change "
        "per pixel and channel. Realism: MMD^2 to real held-out faces of the target class "
        f"({doc['real_faces']} faces) through a fixed random conv encoder, one bandwidth; the "
        "query row is the unchanged queries. Seconds include compilation; steady: chunks after "
        "the first."
        + _fixed_fgsm_note(doc["config"]["methods"])
        + "\n\n"
        + scores_markdown(doc["scores"], doc["timing"])
        + "\nThe paper's ordering (AIP's FR at least xGEMs' and REVISE's; its LPR, AttGAN code, "
        "below FGSM's and AIP_R's, from the query and from the start) here: "
        + ", ".join(f"{k} {v}" for k, v in doc["ordering_holds"].items())
        + ".\n\n"
        + _retries_markdown(doc.get("retries", {}))
        + _sweep_markdown(doc["scores"], doc["lpr_tolerance"], doc.get("lpr_sweep", []))
        + "\n![LPR against L1](aip_lpr_l1.png)\n\n![faces](aip_faces.png)\n"
        + _ranking_markdown(
            att["gender_classifier"],
            f"Attributes AIP ({_settings(aip_config)}) changes to flip the gender classifier:",
        )
        + _ranking_markdown(
            att["age_classifier"],
            f"Attributes AIP ({_settings(att['age_method'])}) changes to flip the age "
            f"classifier ({att['age_flipped']} of {att['age_queries']} queries flipped):",
        )
        + (
            f"\nFor the age classifier, Male ranks {att['male_rank_for_age']} of "
            f"{len(att['names'])}.\n"
            if att["male_rank_for_age"] is not None
            else ""
        )
        + _direction_markdown(att["age_by_direction"])
        + "\n![attributes](aip_attributes.png)\n\n![per query](aip_attributes_queries.png)\n"
    )
    aug = doc["augmentation"]
    if aug:
        rows = "\n".join(
            f"| {s['seed']} | {s['train_faces']} | {s['counterfactuals_added']} | "
            f"{100 * s['accuracy_without']:.2f} | {100 * s['accuracy_with']:.2f} |"
            for s in aug["seeds"]
        )
        a, b, g = aug["accuracy_without"], aug["accuracy_with"], aug["gain"]
        settings = _settings(aug["seeds"][0].get("method", {}).get("config", {}))
        text += (
            "\n## Counterfactual data augmentation (age classifier)\n\n"
            f"Counterfactuals from AIP with {settings}; each seed's age classifier is trained "
            f"on its {aug['seeds'][0]['train_faces']:,} faces, then again with the flipped "
            "counterfactuals added under the other class.\n\n"
            "| seed | training faces | counterfactuals added | test accuracy % without | "
            "with |\n| ---: | ---: | ---: | ---: | ---: |\n" + rows + "\n\n"
            f"Without: {100 * a['mean']:.2f} ± {100 * a['std']:.2f}; with: "
            f"{100 * b['mean']:.2f} ± {100 * b['std']:.2f}; gain {100 * g['mean']:+.2f} ± "
            f"{100 * g['std']:.2f} points (mean ± standard deviation over seeds). "
            + augmentation_sentence()
            + "\n"
        )
    return text


def lpr_against_l1(path: Path, scores: Mapping[str, Any], job: AIPJob) -> None:
    """Each method's LPR (AttGAN code, from the query) against its L1; the FGSM rows (the
    retried one and those of one fixed step) joined in order of L1."""
    points = {
        label: (s["l1"], 100 * s["lpr_attgan"])
        for label, s in scores.items()
        if label != "query" and s["l1"] is not None and s["lpr_attgan"] is not None
    }
    fgsm = sorted(
        (s.key for s in job.methods if s.name == "fgsm" and s.key in points),
        key=lambda k: points[k][0],
    )
    report.method_scatter(
        path,
        points,
        series=[fgsm] if len(fgsm) > 1 else [],
        xlabel="L1 per pixel and channel (image change)",
        ylabel=f"LPR % (AttGAN code, tolerance {job.lpr_tolerance:g} sd)",
        title="Code dimensions moved against image change (flipped queries)",
    )
