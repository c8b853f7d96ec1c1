"""Which part of DeDUCE makes it sparse? Variants of the search on one classifier and pair list.

    jaxcf explain explain/deduce/configs/ablation.py --workdir workdir/ablation \\
        --config.classifier.checkpoint=workdir/cpu_paper/models/classifier

Runs DeDUCE, DeDUCE without the cross-entropy term (density only), without momentum, with a
heavier cross-entropy term, without the density term (cross-entropy with DeDUCE's change cap
and momentum), and JSMA (or only the ``variants`` named), all on the same classifier and the
first ``sets`` sets of the protocol's pairs, then reports failure rates and the L0 / L1 /
iterations means over the pairs every variant solved (``<workdir>/report/report.md``). The
runs go to the run store, so a variant that is also a protocol's method (DeDUCE, JSMA on the
same classifier and pairs) is reused from a shared store.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from explain.deduce.protocol import protocol_pairs
from jaxcf.core import validation, write_text_atomic
from jaxcf.data import load_mnist
from jaxcf.evaluation import metrics
from jaxcf.experiment import REPORT_DIR, ModelSpec, is_main_process, resolve_model, run_methods
from jaxcf.methods import DeDUCEConfig, JSMAConfig, MethodSpec
from jaxcf.runner import RunnerConfig

# name -> the method (its label is the key of AblationConfig.variants and of its run).
VARIANTS = {
    "deduce": MethodSpec("deduce", DeDUCEConfig()),
    "density only (ce_weight 0)": MethodSpec(
        "deduce", DeDUCEConfig(ce_weight=0.0), label="density_only"
    ),
    "no momentum": MethodSpec("deduce", DeDUCEConfig(momentum=0.0), label="no_momentum"),
    "ce_weight 3": MethodSpec("deduce", DeDUCEConfig(ce_weight=3.0), label="ce_weight_3"),
    "cross-entropy only (density_weight 0)": MethodSpec(
        "deduce", DeDUCEConfig(density_weight=0.0), label="ce_only"
    ),
    "jsma": MethodSpec("jsma", JSMAConfig()),
}
KEYS = tuple(spec.key for spec in VARIANTS.values())


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """Attributes:
    classifier: the classifier (with its feature density) every variant explains.
    sets: sets of 100 test images of the protocol's pairs (each image towards its 9 other
      classes).
    variants: the variants to run, by key (``deduce``, ``density_only``, ``no_momentum``,
      ``ce_weight_3``, ``ce_only``, ``jsma``).
    runner: chunking and slots.
    runs: a run store shared with other experiments (default ``<workdir>/runs``).
    """

    classifier: ModelSpec
    sets: int = 1
    variants: tuple[str, ...] = KEYS
    runner: RunnerConfig = RunnerConfig(chunk_size=900, slots=128)
    runs: str | None = None

    def __post_init__(self):
        validation.at_least(self, 1, "sets")
        object.__setattr__(self, "variants", tuple(self.variants))
        unknown = set(self.variants) - set(KEYS)
        if unknown or not self.variants:
            raise ValueError(f"AblationConfig.variants must be among {KEYS}, got {self.variants}")

    def run(self, workdir: str | Path) -> str:
        """Runs the variants and writes ``<workdir>/report/report.md``; returns the table."""
        workdir = Path(workdir)
        clf = resolve_model("classifier", "classifier", self.classifier, workdir)
        test = load_mnist("test", dataset=clf.metadata["dataset"])
        index, target, _ = protocol_pairs(test.labels, self.sets, 100, seed=0)
        x = test.images[index]
        named = {name: s for name, s in VARIANTS.items() if s.key in self.variants}
        results = run_methods(
            tuple(named.values()),
            {"classifier": clf.model, "density": clf.density},
            x,
            target,
            workdir,
            config=self.runner,
            store=self.runs,
        )
        if not is_main_process():
            return ""
        outs = {name: results[spec.key] for name, spec in named.items()}
        solved = np.logical_and.reduce([o.success for o in outs.values()])
        rows = [
            f"| {name} | {100 * (1 - o.success.mean()):.2f} "
            f"| {metrics.l0(x[solved], o.x_cf[solved]).mean():.2f} "
            f"| {metrics.l1(x[solved], o.x_cf[solved]).mean():.2f} "
            f"| {o.n_iter[solved].mean():.1f} |"
            for name, o in outs.items()
        ]
        table = (
            f"# DeDUCE ablation\n\n{len(x)} pairs on the classifier at {clf.source}; L0, L1 and "
            f"iterations are means over the {int(solved.sum())} pairs every variant solved.\n\n"
            "| variant | failure % | L0 | L1 | iterations |\n"
            "| :--- | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n"
        )
        write_text_atomic(workdir / REPORT_DIR / "report.md", table)
        print(table, flush=True)
        return table
