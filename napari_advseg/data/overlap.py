"""Per-class voxel overlap of two label maps, and the per-organ row every report is made of.

The counting primitive below the attack and the evaluation: Dice per class
from voxel counts accumulated slice batch by slice batch
(:class:`OverlapCounter`; NaN where the class is absent from the reference),
and an organ's row (clean and adversarial Dice, relative drop, success: an
attack on an organ succeeds when ``Dice_adv <= 0.7 * Dice_clean``).
:mod:`napari_advseg.evaluation.metrics` builds the reports on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

SUCCESS_DROP = 0.30
"""Relative Dice decrease at which an attack on an organ counts as a success."""


def dice_from_counts(intersection: float, predicted: float, reference: float) -> float:
    """``2|A n B| / (|A| + |B|)``; NaN when the organ is absent from the reference."""
    if reference == 0:
        return math.nan
    return 2.0 * intersection / (predicted + reference)


class OverlapCounter:
    """Accumulates per-class voxel counts over the slices of one volume."""

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.intersection = np.zeros(n_classes, dtype=np.int64)
        self.predicted = np.zeros(n_classes, dtype=np.int64)
        self.reference = np.zeros(n_classes, dtype=np.int64)

    def add(self, prediction: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray) -> None:
        pred = torch.as_tensor(prediction).flatten().long().cpu()
        ref = torch.as_tensor(reference).flatten().long().cpu()
        n = self.n_classes
        # values outside 0..n-1 belong to no scored class: negatives fold into background, larger
        # values fall off the end of the counts
        self.predicted += torch.bincount(pred.clamp(min=0), minlength=n).numpy()[:n]
        self.reference += torch.bincount(ref.clamp(min=0), minlength=n).numpy()[:n]
        same = pred[pred == ref]
        self.intersection += torch.bincount(same.clamp(min=0), minlength=n).numpy()[:n]

    def dice(self) -> dict[int, float]:
        return {c: dice_from_counts(self.intersection[c], self.predicted[c], self.reference[c])
                for c in range(1, self.n_classes)}


def dice_per_organ(prediction, reference, class_names: Sequence[str]) -> dict[str, float]:
    """Dice of each organ (class > 0) over a whole volume or slice stack; NaN where absent."""
    counter = OverlapCounter(len(class_names))
    counter.add(prediction, reference)
    return {class_names[c]: d for c, d in counter.dice().items()}


def organ_row(dice_clean: float, dice_adv: float) -> dict[str, Any]:
    """One organ's entry of a report: clean and adversarial Dice, relative drop, success."""
    drop = (dice_clean - dice_adv) / dice_clean if dice_clean > 0 else math.nan
    return {"dice_clean": float(dice_clean), "dice_adv": float(dice_adv), "drop": float(drop),
            "success": bool(dice_clean > 0 and dice_adv <= (1.0 - SUCCESS_DROP) * dice_clean)}
