"""The conditional generator paper's published numbers (Van Looveren, Klaise, Vacanti & Cobb,
2021, "Conditional Generative Models for Counterfactual Explanations"), by data set.

The one place these numbers live: the protocol copies its data set's entry into ``report.json``
(``published``), the report prints it as the row "paper (generator)", and the tests read it from
here. Each entry is the paper's own generator; ``peers`` holds rows of other methods from the
same table, where quoted (Adult: DiCE).

``class_mmd2`` is per class index (Adult: <=50K, >50K; ECG5000: normal, abnormal). The paper's
Adult units differ from the protocol's own: its L1 is on scaled numeric columns (the protocol's
``l1_scaled``: min-max units), its L0 counts changed categorical features (``l0_categorical``)
and its MMD² is on its preprocessed rows (``mmd2_paper``).
"""

from typing import Any

PUBLISHED: dict[str, dict[str, Any]] = {
    # The Adult results table, the conditional generator's row: MMD², class MMD² (<=50K, >50K),
    # L1, L0. (Its table number, 3 or 4, was not re-checked against the paper.)
    "adult": {
        "mmd2": 0.021,
        "class_mmd2": (0.023, 0.015),
        "l1": 0.065,
        "l0": 2.13,
        # The same table's DiCE row.
        "peers": {"dice": {"mmd2": 0.047, "class_mmd2": (0.030, 0.090), "l1": 0.311, "l0": 0.425}},
    },
    # The ECG5000 results table (Table 2), the conditional generator's row: only its class
    # MMD² (normal, abnormal) is quoted.
    "ecg5000": {"class_mmd2": (0.096, 0.15)},
}
