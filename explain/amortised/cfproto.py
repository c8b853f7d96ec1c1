"""The CFProto peer (Van Looveren & Klaise 2019; the generator paper's CFProto rows): jaxcf's
``cfproto`` search on the protocol's queries and targets, through the runner into the run store
like Wachter (a finished run is reused).

Its class prototypes live in input space (no autoencoder: the paper's k-d-tree fallback, see
docs/methods/cfproto.md): a :class:`~jaxcf.methods.PrototypeBank` of training instances labelled
by the explained classifier, as the paper and alibi label them. On encoded tabular rows the
search stays in the box the encodings span (:func:`~explain.amortised.evaluation.encoded_box`,
as Wachter's), and its rows are measured after decode -> encode like every method's; with
``config.cfproto_rows`` (the default) the search itself checks and keeps those decoded rows
(``project=transform.projection()``), so its counterfactuals are valid rows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from explain.amortised.config import ExplainConfig
from explain.amortised.evaluation import Rows, Space, encoded_box
from jaxcf.experiment import run_explainer, steady_timing
from jaxcf.methods import SearchExplainer, cfproto_search, prototype_bank


def run_cfproto(
    config: ExplainConfig,
    space: Space,
    classifier,
    train_inputs: np.ndarray,
    x: np.ndarray,
    target: np.ndarray,
    workdir: str | Path,
) -> Rows:
    """CFProto on queries ``x [K, ...]`` towards ``target [K]``, one counterfactual each (its
    search is deterministic), as the protocol's rows labelled ``cfproto``.

    The prototype bank holds the first ``config.prototype_examples`` training inputs (all when
    ``None``), labelled by ``classifier``'s predictions.
    """
    cf_config, project = config.cfproto, None
    if space.kind == "tabular":
        cf_config = encoded_box(cf_config, train_inputs, x)
        if config.cfproto_rows:
            project = space.transform.projection()
    m = len(train_inputs) if config.prototype_examples is None else config.prototype_examples
    bank_inputs = np.asarray(train_inputs[:m], np.float32)
    bank = prototype_bank(bank_inputs, classifier=classifier)
    explainer = SearchExplainer(cfproto_search(classifier, bank, cf_config, project=project))
    checks = "decoded rows" if project is not None else "iterates"
    res = run_explainer(
        "cfproto",
        explainer,
        x,
        target,
        workdir,
        config=config.cfproto_runner,
        num_cfs=1,
        seed=config.seed,
        progress=config.progress,
        meta={
            "method": "cfproto",
            "config": dataclasses.asdict(cf_config),
            "prototype_examples": len(bank_inputs),
            **({"checks": checks} if project is not None else {}),
        },
    )
    timing = {
        **steady_timing(res),
        "config": dataclasses.asdict(cf_config),
        "prototypes": {
            "space": "input",
            "instances": len(bank_inputs),
            "per_class": list(bank.counts),
            "labels": "the classifier's predictions",
        },
        "checks": checks,
        "n_iter_mean": float(np.mean(np.asarray(res.n_iter))),
        "success_rate": float(np.mean(np.asarray(res.success))),
    }
    return Rows.from_results("cfproto", res, timing, 1)
