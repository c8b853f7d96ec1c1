"""How the protocol measures counterfactuals: the modality's space (:class:`Space`: projection
to valid inputs, the MMD feature space, L1, L0, constraint violations, the diversity distance,
and for tabular rows the generator paper's units beside ours), one method's rows
(:class:`Rows`), their metrics (:func:`evaluate_rows`) and Wachter's search box on encoded
tabular rows (:func:`encoded_box`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from explain.amortised import units
from explain.amortised.config import ExplainConfig
from jaxcf.core import Results
from jaxcf.evaluation import distribution, metrics
from jaxcf.tabular import Constraints, violations


def encoded_box(wachter_config: Any, *arrays: np.ndarray) -> Any:
    """Wachter's config for encoded tabular rows: without a ``domain`` of its own it would take
    the classifier's, and jaxcf's MLP declares the image box ``[0, 1]`` whatever its inputs
    (encoded numeric columns go below 0); search in the box the given encodings span instead."""
    if wachter_config.domain is not None:
        return wachter_config
    lo = float(min(np.min(a) for a in arrays))
    hi = float(max(np.max(a) for a in arrays))
    return dataclasses.replace(wachter_config, domain=(lo, hi))


# -------------------------------------------------------------------------------- the space


class Space:
    """How one modality is measured: projection to valid inputs, the MMD/embedding feature
    space, per-row L1/L0, constraint violations and the distance diversity is measured in."""

    def __init__(self, classifier, generator, train, config: ExplainConfig):
        self.classifier = classifier
        self.fixed = config.fixed
        self.transform = getattr(generator, "transform", None)
        shape = tuple(train.inputs.shape[1:])
        if self.transform is not None:
            self.kind = "tabular"
            self.constraints = Constraints(**(generator.config.constraints or {}))
            decoded = self.transform.decode(train.inputs)
            self.numeric = [c.name for c in self.transform.schema.columns if c.kind == "numeric"]
            self.categorical = [c for c in self.transform.schema.columns if c.kind == "categorical"]
            self.std = {
                n: float(np.std(np.asarray(decoded[n], np.float64))) or 1.0 for n in self.numeric
            }
            # The paper's L1 units: numeric columns min-max scaled by their training range.
            self.range = {
                n: float(np.ptp(np.asarray(decoded[n], np.float64))) or 1.0 for n in self.numeric
            }
            self.train_table = decoded
        else:
            self.kind = "image" if len(shape) == 3 and shape[-1] in (1, 3) else "series"
            self.constraints = None
        self.elements = int(np.prod(shape))

    @property
    def feature_space(self) -> str:
        return {
            "image": "the paper's fixed random conv encoder (32-d, jaxcf.evaluation.distribution."
            "encode_images, seed 0)",
            "series": f"the raw series ({self.elements} values, standardised units)",
            "tabular": f"the {self.elements}-d encoding (one-hot categories, mode-specific "
            "normalisation of numeric columns) of valid rows",
        }[self.kind]

    def project(self, x: np.ndarray) -> np.ndarray:
        """Valid inputs: tabular rows through decode -> encode; other inputs as they are."""
        if self.transform is None:
            return np.asarray(x, np.float32)
        return self.transform.encode(self.transform.decode(x))

    def features(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "image":
            return distribution.encode_images(x)
        return np.asarray(x, np.float32).reshape(len(x), -1)

    def l1(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray:
        """Images/series: mean ``|x_cf - x|`` per element. Tabular: ``sum_numeric |v_cf -
        v_x| / std_train`` on decoded rows."""
        if self.transform is None:
            return metrics.l1(x, x_cf) / self.elements
        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return sum(
            np.abs(np.asarray(b[n], np.float64) - np.asarray(a[n], np.float64)) / self.std[n]
            for n in self.numeric
        )

    def l0(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray | None:
        """Tabular: features (of 12 for Adult) whose decoded value changed; None otherwise."""
        if self.transform is None:
            return None
        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return sum(
            (np.asarray(a[n]) != np.asarray(b[n])).astype(np.int64) for n in self.transform.names
        )

    def l0_categorical(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray | None:
        """Tabular: the paper's L0, categorical features (of 8 for Adult) whose decoded value
        changed; None otherwise."""
        if self.transform is None or not self.categorical:
            return None
        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return units.categorical_changes(a, b, [c.name for c in self.categorical])

    def l1_scaled(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray | None:
        """Tabular: the paper's L1, ``sum_numeric |v_cf - v_x| / range_train`` on decoded rows
        (each column's change in min-max units); None otherwise."""
        if self.transform is None or not self.numeric:
            return None
        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return units.scaled_l1(a, b, self.range)

    def violations(self, x: np.ndarray, x_cf: np.ndarray) -> np.ndarray | None:
        """Tabular: broken constraints per row (the job's constraints and fixed columns); None
        for other inputs and for a job without any (nothing to break)."""
        if self.transform is None:
            return None
        c = self.constraints
        if not (c.immutable or c.increasing or self.fixed):
            return None

        a, b = self.transform.decode(x), self.transform.decode(x_cf)
        return violations(self.transform, a, b, self.constraints, fixed=list(self.fixed))

    def distance_rows(self, x: np.ndarray) -> np.ndarray:
        """Rows whose L1 distance is the diversity distance: the inputs themselves for images
        and series (then divided by the element count), and for tabular rows the standardised
        numeric values next to the categorical one-hots halved, so that the L1 distance of two
        rows is their standardised numeric L1 plus the number of categories that differ."""
        if self.transform is None:
            return np.asarray(x, np.float64).reshape(len(x), -1)
        table = self.transform.decode(x)
        parts = [np.asarray(table[n], np.float64)[:, None] / self.std[n] for n in self.numeric]
        for column in self.categorical:
            idx = np.searchsorted(np.asarray(column.categories, object), table[column.name])
            parts.append(0.5 * np.eye(len(column.categories))[idx])
        return np.concatenate(parts, axis=1)

    @property
    def diversity_scale(self) -> float:
        return float(self.elements) if self.transform is None else 1.0


# ---------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class Rows:
    """One method's counterfactuals, one row each, over some of the protocol's queries."""

    label: str
    method: str
    x: np.ndarray  # [R, ...] the query of each row
    x_cf: np.ndarray  # [R, ...] as the method returned it
    target: np.ndarray  # [R]
    query: np.ndarray  # [R] index into the protocol's queries
    seconds_per_cf: float
    timing: dict[str, Any]
    num_cfs: int

    @classmethod
    def from_results(cls, label: str, results, timing: dict[str, Any], num_cfs: int) -> Rows:
        """The rows of a runner record, labelled ``label`` (also the method's name)."""
        return cls(
            label,
            label,
            np.asarray(results.x),
            np.asarray(results.x_cf),
            np.asarray(results.target),
            np.asarray(results.query),
            timing["seconds_per_cf"],
            timing,
            num_cfs,
        )


def finite_mean(a) -> float | None:
    """The mean of ``a``'s finite values; None when it has none."""
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def evaluate_rows(
    rows: Rows,
    space: Space,
    reference: tuple[np.ndarray, np.ndarray],
    bandwidth: float,
    num_classes: int,
    paper_reference: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One method's metrics (JSON-ready) and, for the figures, its evaluated rows.

    ``reference``: ``(features [M, F], labels [M])`` of real training instances in
    :meth:`Space.features`; ``paper_reference``: tabular only, ``(features, labels,
    bandwidth)`` for the paper's MMD² (the same instances, the paper's kernel bandwidth).
    """

    clf = space.classifier
    valid_raw = metrics.validity(clf, rows.x_cf, rows.target)
    x_eval = space.project(rows.x_cf)
    valid = metrics.validity(clf, x_eval, rows.target)
    feats = space.features(x_eval)
    pred_cf = metrics.predict(clf, x_eval)
    ref_feats, ref_labels = reference
    mmd = distribution.mmd2(feats, ref_feats, bandwidth) if len(feats) >= 2 else float("nan")
    cls = distribution.class_mmd2(feats, pred_cf, ref_feats, ref_labels, num_classes, bandwidth)
    l1 = space.l1(rows.x, x_eval)
    l0 = space.l0(rows.x, x_eval)
    viol = space.violations(rows.x, x_eval)
    diversity = diversity_valid = None
    if rows.num_cfs > 1:
        r = len(rows.x_cf)
        record = Results(
            x=space.distance_rows(rows.x),
            target=rows.target,
            x_cf=space.distance_rows(x_eval),
            success=valid,
            n_iter=np.zeros(r, np.int32),
            score=np.zeros(r, np.float32),
            query=rows.query,
            cf=np.zeros(r, np.int32),
            group=np.zeros(r, np.int32),
        )
        every = metrics.query_metrics(record, {"success": np.ones(r, bool)}, keys=())
        among_valid = metrics.query_metrics(record, {"success": valid}, keys=())
        div, div_valid = finite_mean(every["diversity"]), finite_mean(among_valid["diversity"])
        diversity = None if div is None else div / space.diversity_scale
        diversity_valid = None if div_valid is None else div_valid / space.diversity_scale
    paper = {}
    if space.kind == "tabular":
        l1_scaled = space.l1_scaled(rows.x, x_eval)
        l0_categorical = space.l0_categorical(rows.x, x_eval)
        paper = {
            "l1_scaled": None if l1_scaled is None else finite_mean(l1_scaled),
            "l0_categorical": None if l0_categorical is None else finite_mean(l0_categorical),
        }
        if paper_reference is not None:
            p_feats, p_labels, p_bandwidth = paper_reference
            paper["mmd2_paper"] = (
                distribution.mmd2(feats, p_feats, p_bandwidth) if len(feats) >= 2 else float("nan")
            )
            paper["class_mmd2_paper"] = [
                None if not np.isfinite(v) else float(v)
                for v in distribution.class_mmd2(
                    feats, pred_cf, p_feats, p_labels, num_classes, p_bandwidth
                )
            ]
            paper["bandwidth_paper"] = p_bandwidth
    out = {
        "method": rows.method,
        "queries": int(len(np.unique(rows.query))),
        "counterfactuals": int(len(rows.x_cf)),
        "num_cfs": rows.num_cfs,
        "validity": float(valid.mean()),
        "validity_raw": float(valid_raw.mean()),
        "mmd2": mmd,
        "class_mmd2": [None if not np.isfinite(v) else float(v) for v in cls],
        "class_counts": np.bincount(pred_cf, minlength=num_classes).tolist(),
        "l1": finite_mean(l1),
        "l1_valid": finite_mean(l1[valid]) if valid.any() else None,
        "l0": None if l0 is None else finite_mean(l0),
        "violations": None if viol is None else int(viol.sum()),
        "rows_violating": None if viol is None else int((viol > 0).sum()),
        "diversity": diversity,
        "diversity_valid": diversity_valid,
        "seconds_per_cf": rows.seconds_per_cf,
        "timing": rows.timing,
        "bandwidth": bandwidth,
        **paper,
    }
    return out, {"x_eval": x_eval, "features": feats, "pred_cf": pred_cf, "valid": valid}
