"""The in-memory record every data-set loader returns: inputs, labels and a little metadata."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One split of a data set, in memory.

    Attributes:
      inputs: ``[N, *input_shape]`` model inputs, e.g. ``float32 [N, 28, 28, 1]`` images (NHWC)
        or ``float32 [N, D]`` tabular features / ``[N, T, C]`` time series. Loaders make them
        read-only when they are cached and shared between calls; ``.copy()`` to modify.
      labels: ``int32 [N]`` class indices ``0..num_classes-1``, or ``None`` for unlabelled data.
      name: the registry name, e.g. ``"mnist"``.
      split: e.g. ``"train"`` or ``"test"``.
      source: where the arrays came from (a directory, or e.g. ``"tfds"``).
      class_names: one name per class, indexed by label (empty for unlabelled data).
      domain: ``(low, high)`` bounds every input value lies in, in the inputs' units (e.g.
        ``(0.0, 1.0)`` for images scaled from bytes), or ``None`` when the inputs are unbounded
        (e.g. standardised features). Counterfactual methods clip to it; take it from here
        rather than hard-coding it.
    """

    inputs: np.ndarray
    labels: np.ndarray | None
    name: str
    split: str
    source: str
    class_names: tuple[str, ...] = ()
    domain: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.inputs.ndim < 2:
            raise ValueError(f"inputs must be [N, ...] with N examples, got {self.inputs.shape}")
        if self.labels is not None:
            if self.labels.shape != (self.inputs.shape[0],):
                raise ValueError(
                    f"labels must be [N] = [{self.inputs.shape[0]}], got {self.labels.shape}"
                )
            if not np.issubdtype(self.labels.dtype, np.integer):
                raise ValueError(f"labels must be integers, got {self.labels.dtype}")
        if self.domain is not None:
            low, high = self.domain
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"domain must be finite (low, high), low < high: {self.domain}")
            object.__setattr__(self, "domain", (float(low), float(high)))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def images(self) -> np.ndarray:
        """``inputs`` under the name image data sets have always used."""
        return self.inputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(28, 28, 1)``."""
        return tuple(self.inputs.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``; 0 for unlabelled data)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, source={self.source!r})"
        )
