"""The DeDUCE paper's published MNIST numbers (Höltgen, Schut, Brauner & Gal, 2021, Table 1).

5 sets of 100 test images x 9 other targets = 4,500 pairs. ``l0``: changed pixels; ``l1``:
summed absolute change. The paper's evaluation notebooks take both means over the pairs that
*all four* of its methods solved (DeDUCE, JSMA, CFProto and REVISE, which fails on 27%), then
average the five per-set means: compare them with a "pairs every method solved" mean, not with
a method's own successes. ``failure_rate``: fraction of a method's own pairs without a
counterfactual; ``seconds_per_cf``: time per single counterfactual on an NVIDIA T4. DeDUCE ran
on the spectrally normalised ResNet-18 (c = 4), the baselines on a plain ResNet-18. Wachter et
al. and FGSM have no published number in that paper and are absent.
"""

PUBLISHED: dict[str, dict[str, float]] = {
    "deduce": {"l0": 21.16, "l1": 10.72, "failure_rate": 0.0, "seconds_per_cf": 2.99},
    "jsma": {"l0": 25.59, "l1": 12.63, "failure_rate": 0.0309, "seconds_per_cf": 1.01},
    "cfproto": {"l0": 155.4, "l1": 38.95, "failure_rate": 0.0009, "seconds_per_cf": 109.9},
    "revise": {"l0": 752.0, "l1": 53.9, "failure_rate": 0.268, "seconds_per_cf": 46.7},
}
