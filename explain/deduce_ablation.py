"""Which part of DeDUCE makes it sparse? Variants of the search on one classifier and pair list.

    python -m explain.deduce_ablation --checkpoint workdir/cpu_paper/model/checkpoint \\
        --workdir workdir/ablation

Runs DeDUCE, DeDUCE without the cross-entropy term (density only), without momentum, with a
heavier cross-entropy term, without the density term (cross-entropy with DeDUCE's change cap
and momentum), and JSMA, all on the same classifier and the first ``--sets`` sets
of the protocol, then prints failure rates and the L0 / L1 / iterations means over the pairs
every variant solved (a markdown table, also written to ``<workdir>/ablation.md``). Each
variant's results are resumable runner directories under ``<workdir>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from explain.deduce_protocol import protocol_pairs
from jaxcf import metrics, report, runner
from jaxcf.data import load_mnist
from jaxcf.methods import DeDUCEConfig, JSMAConfig, deduce_search, jsma_search
from jaxcf.training import load_classifier


def variants(model, density) -> dict:
    """The searches compared: name -> jittable search on ``model``."""
    return {
        "deduce": deduce_search(model, density, DeDUCEConfig()),
        "density only (ce_weight 0)": deduce_search(model, density, DeDUCEConfig(ce_weight=0.0)),
        "no momentum": deduce_search(model, density, DeDUCEConfig(momentum=0.0)),
        "ce_weight 3": deduce_search(model, density, DeDUCEConfig(ce_weight=3.0)),
        "cross-entropy only (density_weight 0)": deduce_search(
            model, density, DeDUCEConfig(density_weight=0.0)
        ),
        "jsma": jsma_search(model, JSMAConfig()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--sets", type=int, default=1, help="sets of 100 test images")
    args = parser.parse_args(argv)

    model, density, meta = load_classifier(args.checkpoint)
    test = load_mnist("test", dataset=meta["dataset"])
    index, target, _ = protocol_pairs(test.labels, args.sets, 100, seed=0)
    x = test.images[index]
    config = runner.RunnerConfig(chunk_size=900, slots=128)
    outs = {}
    for k, (name, search) in enumerate(variants(model, density).items()):
        outs[name] = runner.run(
            search, x, target, args.workdir / f"variant_{k}", config=config, desc=name
        )
    solved = np.logical_and.reduce([o["success"] for o in outs.values()])
    rows = [
        f"| {name} | {100 * (1 - o['success'].mean()):.2f} "
        f"| {metrics.l0(x[solved], o['counterfactuals'][solved]).mean():.2f} "
        f"| {metrics.l1(x[solved], o['counterfactuals'][solved]).mean():.2f} "
        f"| {o['iterations'][solved].mean():.1f} |"
        for name, o in outs.items()
    ]
    table = (
        f"{len(x)} pairs; L0, L1 and iterations are means over the {int(solved.sum())} pairs "
        f"every variant solved.\n\n| variant | failure % | L0 | L1 | iterations |\n"
        "| :--- | ---: | ---: | ---: | ---: |\n" + "\n".join(rows) + "\n"
    )
    report.write_text_atomic(args.workdir / "ablation.md", table)
    print(table)


if __name__ == "__main__":
    main()
