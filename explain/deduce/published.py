"""The DeDUCE paper's published MNIST numbers (Höltgen, Schut, Brauner & Gal, 2021, Table 1).

The one place these numbers live: reports, the README's demo table and tests read them from
:data:`PUBLISHED`.

5 sets of 100 test images x 9 other targets = 4,500 pairs. ``l0``: changed pixels; ``l1``:
summed absolute change. The paper's evaluation notebooks take both means over the pairs that
*all four* of its methods solved (DeDUCE, JSMA, CFProto and REVISE, which fails on 27%), then
average the five per-set means: compare them with a "pairs every method solved" mean, not with
a method's own successes. ``failure_rate``: fraction of a method's own pairs without a
counterfactual; ``seconds_per_cf``: time per single counterfactual on an NVIDIA T4. DeDUCE ran
on the spectrally normalised ResNet-18 (c = 4), the baselines on a plain ResNet-18. Wachter et
al. and FGSM have no published number in that paper and are absent.

Checked against the authors' public evaluation notebook (``nb_eval_testset2-5.ipynb`` of
benedikthoeltgen/DeDUCE, the five-set means it prints): every L0, L1 and failure rate below
agrees with it to the digits kept, except JSMA's L0, which Table 1 prints 0.06 higher than the
notebook's mean (within the notebook's spread of 0.65 over the five sets); the table's value is
kept. The times per counterfactual are not in the notebook and are quoted from the table alone.
"""

PUBLISHED: dict[str, dict[str, float]] = {
    # Table 1, row "DeDUCE" (spectrally normalised ResNet-18, c = 4).
    "deduce": {"l0": 21.16, "l1": 10.72, "failure_rate": 0.0, "seconds_per_cf": 2.99},
    # Table 1, row "JSMA".
    "jsma": {"l0": 25.65, "l1": 12.63, "failure_rate": 0.0309, "seconds_per_cf": 1.01},
    # Table 1, row "VLK" (Van Looveren & Klaise's prototype-guided search: alibi's CFProto).
    "cfproto": {"l0": 155.43, "l1": 38.95, "failure_rate": 0.0009, "seconds_per_cf": 109.9},
    # Table 1, row "REVISE" (L0 and L1 kept to 752 and 53.9; the notebook's five-set means are
    # 752.46 and 53.86).
    "revise": {"l0": 752.0, "l1": 53.9, "failure_rate": 0.268, "seconds_per_cf": 46.7},
}

# Table 1, column "AGAN": the AnoGAN realism score (lower is more typical), means over the
# pairs every method solved; "original": the unchanged test images.
PUBLISHED_AGAN: dict[str, float] = {
    "original": 15.44,
    "deduce": 22.51,
    "jsma": 23.90,
    "cfproto": 22.95,
    "revise": 20.09,
}
