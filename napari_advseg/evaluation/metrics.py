"""Dice per organ and attack success: the counts every report is made of.

- Dice per organ over a volume's slices, from voxel counts accumulated slice
  batch by slice batch (:class:`OverlapCounter`); NaN where the organ is
  absent from the reference.
- An attack on an organ succeeds when ``Dice_adv <= 0.7 * Dice_clean``.
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


def network_dice(model, images, labels, class_names: Sequence[str]) -> dict[str, float | None]:
    """Dice per organ of a network's prediction on a stack of slices (``predict_labels``); None where absent.

    ``model``: a module or a Target; ``images`` normalised ``(N, H, W)``; the
    values are plain floats, ready for a checkpoint's metrics or JSON.
    """
    from napari_advseg.models.unet import predict_labels

    prediction = predict_labels(model, np.asarray(images, dtype=np.float32))
    dice = dice_per_organ(prediction, np.asarray(labels), class_names)
    return {k: (None if math.isnan(v) else float(v)) for k, v in dice.items()}


def organ_row(dice_clean: float, dice_adv: float) -> dict[str, Any]:
    """One organ's entry of a report: clean and adversarial Dice, relative drop, success."""
    drop = (dice_clean - dice_adv) / dice_clean if dice_clean > 0 else math.nan
    return {"dice_clean": float(dice_clean), "dice_adv": float(dice_adv), "drop": float(drop),
            "success": bool(dice_clean > 0 and dice_adv <= (1.0 - SUCCESS_DROP) * dice_clean)}


def slice_successes(pred_clean: torch.Tensor, reference: torch.Tensor, pred_adv: torch.Tensor,
                    warped_reference: torch.Tensor, n_classes: int) -> tuple[int, int]:
    """(successes, trials) over the (slice, organ) pairs of a batch.

    A trial is an organ present in a slice's reference whose clean Dice on that
    slice is above 0; it succeeds when the slice's adversarial Dice (against the
    warped reference) is at most 70 % of the clean one, the 30 % line of Table 1
    applied slice by slice.
    """
    def dice(ref: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Per-slice Dice of two (N, H, W) masks (0 where both are empty)."""
        ref, pred = ref.flatten(1), pred.flatten(1)
        return 2 * (ref & pred).sum(1).double() / (ref.sum(1) + pred.sum(1)).double().clamp_min(1)

    successes = trials = 0
    for c in range(1, n_classes):
        clean = dice(reference == c, pred_clean == c)
        adv = dice(warped_reference == c, pred_adv == c)
        counted = (reference == c).flatten(1).any(1) & (clean > 0)
        trials += int(counted.sum())
        successes += int((counted & (adv <= (1.0 - SUCCESS_DROP) * clean)).sum())
    return successes, trials
