"""Dice per organ and attack success: the counts every report is made of.

- Dice per organ over a volume's slices, from voxel counts accumulated slice
  batch by slice batch (:class:`OverlapCounter`, from
  :mod:`napari_advseg.data.overlap`, where the attack's views count too); NaN
  where the organ is absent from the reference.
- An attack on an organ succeeds when ``Dice_adv <= 0.7 * Dice_clean``, on a
  volume (:func:`organ_row`) or slice by slice (:func:`slice_successes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from napari_advseg.data.overlap import SUCCESS_DROP, OverlapCounter, dice_from_counts, dice_per_organ, organ_row
from napari_advseg.errors import AdvsegError

__all__ = ["SUCCESS_DROP", "OverlapCounter", "dice_from_counts", "dice_per_organ", "dice_scores", "network_dice",
           "organ_row", "slice_successes"]


def dice_scores(pred: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, n_classes: int) -> dict[int, float]:
    """Dice overlap of each foreground class between a prediction and a reference.

    Parameters
    ----------
    pred, ref : np.ndarray or torch.Tensor
        Integer label maps of the same shape (any number of dimensions).
    n_classes : int
        Number of classes, background (0) included.

    Returns
    -------
    dict[int, float]
        For each class ``c`` in ``1..n_classes-1``: ``2|P∩R| / (|P|+|R|)``
        with ``P``, ``R`` the voxels labelled ``c``; ``nan`` when ``c`` is
        absent from the reference (leave those out of any average, e.g. with
        ``np.nanmean``).
    """
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    if isinstance(ref, torch.Tensor):
        ref = ref.detach().cpu().numpy()
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise AdvsegError(f"cannot score a prediction of shape {pred.shape} against a reference of shape {ref.shape}")
    counter = OverlapCounter(n_classes)
    counter.add(pred, ref)
    return {c: float(d) for c, d in counter.dice().items()}


def network_dice(model, images, labels, class_names: Sequence[str]) -> dict[str, float | None]:
    """Dice per organ of a network's prediction on a stack of slices (``predict_labels``); None where absent.

    ``model``: a module or a Target; ``images`` normalised ``(N, H, W)``; the
    values are plain floats, ready for a checkpoint's metrics or JSON.
    """
    from napari_advseg.models.unet import predict_labels

    prediction = predict_labels(model, np.asarray(images, dtype=np.float32))
    dice = dice_per_organ(prediction, np.asarray(labels), class_names)
    return {k: (None if math.isnan(v) else float(v)) for k, v in dice.items()}


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
