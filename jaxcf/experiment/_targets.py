"""Per-query targets by rule: which class each query is explained towards.

Rules take the classifier's predictions (``pred [N]``) or, for ``"second"``, its logits, and
give ``int32`` class targets:

* ``"other"``: every class but the prediction, one pair per (query, other class):
  :func:`every_other_class` (the DeDUCE protocol's pairs);
* ``"flip"``: for two classes the other one; with more, one class drawn uniformly (seeded)
  among the others;
* ``"next"``: ``(pred + 1) % C``;
* ``"second"``: the classifier's second most likely class;
* ``"opposite"``: the other class of a two-class problem (refused with more classes);
* an ``int``: that class for every query.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RULES = ("other", "flip", "next", "second", "opposite")


def flip_targets(pred: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """The ``"flip"`` rule: ``1 - pred`` for two classes; otherwise a class drawn uniformly
    (seeded) among the ``num_classes - 1`` others. ``int32 [N]``."""
    pred = np.asarray(pred)
    if num_classes == 2:
        return (1 - pred).astype(np.int32)
    shift = np.random.default_rng(seed).integers(1, num_classes, size=len(pred))
    return ((pred + shift) % num_classes).astype(np.int32)


def soft_targets(
    pred: np.ndarray, flip: np.ndarray, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Soft targets: ``p ~ U(0, 1)`` (seeded) on the ``flip`` class, ``1 - p`` on the predicted
    one.

    Returns:
      ``(target [N, C] float32, p [N])``.
    """
    p = np.random.default_rng(seed).uniform(0.0, 1.0, size=len(pred))
    t = np.zeros((len(pred), num_classes), np.float64)
    rows = np.arange(len(pred))
    t[rows, flip] = p
    t[rows, pred] += 1.0 - p
    return t.astype(np.float32), p


def every_other_class(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pair per query and class other than its label: ``(query index [M], target [M])``,
    ``M = N * (num_classes - 1)``, a query's pairs consecutive and in class order."""
    labels = np.asarray(labels)
    classes = np.arange(num_classes)
    index = np.repeat(np.arange(len(labels)), num_classes - 1)
    target = np.stack([classes[classes != y] for y in labels]).reshape(-1)
    return index, target.astype(np.int32)


def targets_by_rule(
    rule: str | int, pred: np.ndarray, num_classes: int, *, seed: int = 0, logits: Any = None
) -> np.ndarray:
    """``int32 [N]`` targets for predictions ``pred [N]`` by a one-target-per-query rule
    (everything in :data:`RULES` but ``"other"``, or a class index).

    Raises:
      ValueError: an unknown rule, a class out of range, ``"opposite"`` with more than two
        classes, or ``"second"`` without ``logits``.
    """
    pred = np.asarray(pred)
    if isinstance(rule, int | np.integer) and not isinstance(rule, bool):
        if not 0 <= int(rule) < num_classes:
            raise ValueError(f"target class {rule} is not among the {num_classes} classes")
        return np.full(len(pred), int(rule), np.int32)
    if rule == "flip":
        return flip_targets(pred, num_classes, seed)
    if rule == "next":
        return ((pred + 1) % num_classes).astype(np.int32)
    if rule == "opposite":
        if num_classes != 2:
            raise ValueError(f"the 'opposite' rule needs two classes, the model has {num_classes}")
        return (1 - pred).astype(np.int32)
    if rule == "second":
        if logits is None:
            raise ValueError("the 'second' rule needs the classifier's logits")
        return np.argsort(np.asarray(logits), axis=-1)[:, -2].astype(np.int32)
    raise ValueError(f"unknown target rule {rule!r}; expected a class index or one of {RULES}")
