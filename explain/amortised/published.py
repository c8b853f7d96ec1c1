"""The conditional generator paper's published numbers (Van Looveren, Klaise, Vacanti & Cobb,
2021, "Conditional Generative Models for Counterfactual Explanations"), by data set.

The one place these numbers live: the protocol copies its data set's entry into ``report.json``
(``published``), the report prints it as the row "paper (generator)" and each of its ``peers`` as
"paper (<name>)", and the tests read it from here. Each entry is the paper's own generator;
``peers`` holds rows of other methods from the same table, where quoted (Adult: DiCE and
CFProto; ECG5000: CFProto); ``table`` names the paper's table they come from.

``class_mmd2`` is per class index (Adult: <=50K, >50K; ECG5000: normal, abnormal). The paper's
Adult units differ from the protocol's own: its L1 is on scaled numeric columns (the protocol's
``l1_scaled``: min-max units), its L0 counts changed categorical features (``l0_categorical``)
and its MMD² is on its preprocessed rows (``mmd2_paper``).
"""

from typing import Any

PUBLISHED: dict[str, dict[str, Any]] = {
    # The Adult results table (Table 3), the conditional generator's row: MMD², class MMD²
    # (<=50K, >50K), L1, L0.
    "adult": {
        "table": "Table 3",
        "mmd2": 0.021,
        "class_mmd2": (0.023, 0.015),
        "l1": 0.065,
        "l0": 2.13,
        "peers": {
            # The same table's DiCE row.
            "dice": {"mmd2": 0.047, "class_mmd2": (0.030, 0.090), "l1": 0.311, "l0": 0.425},
            # The same table's CFProto row (Van Looveren & Klaise 2019).
            "cfproto": {"mmd2": 0.059, "class_mmd2": (0.054, 0.092), "l1": 0.124, "l0": 4.95},
        },
    },
    # The ECG5000 results table (Table 2), the conditional generator's row: MMD², class MMD²
    # (normal, abnormal), L1.
    "ecg5000": {
        "table": "Table 2",
        "mmd2": 0.035,
        "class_mmd2": (0.096, 0.15),
        "l1": 0.57,
        "peers": {
            # The same table's CFProto row.
            "cfproto": {"mmd2": 0.027, "class_mmd2": (0.22, 0.21), "l1": 0.45},
        },
    },
}
