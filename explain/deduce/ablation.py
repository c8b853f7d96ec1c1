"""Which part of DeDUCE makes it sparse? Variants of the search on one classifier and pair list.

    python -m explain.deduce.ablation --checkpoint workdir/cpu_paper/model/checkpoint \\
        --workdir workdir/ablation

Runs DeDUCE, DeDUCE without the cross-entropy term (density only), without momentum, with a
heavier cross-entropy term, without the density term (cross-entropy with DeDUCE's change cap
and momentum), and JSMA (or only the ``--variants`` named), all on the same classifier and the
first ``--sets`` sets of the protocol, then prints failure rates and the L0 / L1 / iterations
means over the pairs every variant solved (a markdown table, also written to
``<workdir>/ablation.md``). Each variant's results are a resumable runner directory
``<workdir>/<variant>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from explain.deduce import protocol_pairs
from jaxcf import runner
from jaxcf.core import write_text_atomic
from jaxcf.data import load_mnist
from jaxcf.evaluation import metrics
from jaxcf.methods import DeDUCEConfig, JSMAConfig, MethodSpec, make
from jaxcf.models import load_classifier

# name -> the method (its label is the key for --variants and the results directory).
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


def main(argv: list[str] | None = None) -> None:
    keys = [spec.key for spec in VARIANTS.values()]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--sets", type=int, default=1, help="sets of 100 test images")
    parser.add_argument(
        "--variants", nargs="+", choices=keys, default=keys, help="which variants to run"
    )
    args = parser.parse_args(argv)

    model, density, meta = load_classifier(args.checkpoint)
    test = load_mnist("test", dataset=meta["dataset"])
    index, target, _ = protocol_pairs(test.labels, args.sets, 100, seed=0)
    x = test.images[index]
    config = runner.RunnerConfig(chunk_size=900, slots=128)
    outs = {}
    for name, spec in VARIANTS.items():
        if spec.key in args.variants:
            explainer = make(spec, classifier=model, density=density)
            outs[name] = runner.run(
                explainer, x, target, args.workdir / spec.key, config=config, desc=name
            )
    solved = np.logical_and.reduce([o.success for o in outs.values()])
    rows = [
        f"| {name} | {100 * (1 - o.success.mean()):.2f} "
        f"| {metrics.l0(x[solved], o.x_cf[solved]).mean():.2f} "
        f"| {metrics.l1(x[solved], o.x_cf[solved]).mean():.2f} "
        f"| {o.n_iter[solved].mean():.1f} |"
        for name, o in outs.items()
    ]
    table = (
        f"{len(x)} pairs; L0, L1 and iterations are means over the {int(solved.sum())} pairs "
        f"every variant solved.\n\n| variant | failure % | L0 | L1 | iterations |\n"
        "| :--- | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n"
    )
    write_text_atomic(args.workdir / "ablation.md", table)
    print(table)


if __name__ == "__main__":
    main()
