"""Plausibility checks run before an attack: does the target segment the given labels at all?

A target that is handed intensities scaled otherwise than it was trained on
(or whose classes are read in another order) segments almost nothing, and
every attack figure on it is meaningless. :func:`clean_dice_warning` scores
the target on a few organ slices (a 3D target: a slab of consecutive
slices) and says so in one line, naming what was
assumed.
"""

from __future__ import annotations

import math

import numpy as np

from napari_advseg.evaluation.metrics import network_dice
from napari_advseg.models.target_meta import is_volumetric

__all__ = ["CLEAN_DICE_FLOOR", "CHECK_SLICES", "check_slices", "clean_dice_warning", "describe_normalisation", "organ_slices"]

CLEAN_DICE_FLOOR = 0.5
"""Mean clean Dice (0-1, over the organs present) under which the target is taken to misread its input."""

CHECK_SLICES = 8
"""Organ slices scored by the check (spread evenly over the slices that hold any organ)."""


def _slices_with_organs(labels: np.ndarray) -> np.ndarray:
    """Indices of the slices holding any organ label."""
    return np.flatnonzero(np.asarray(labels).reshape(len(labels), -1).any(axis=1))


def organ_slices(labels: np.ndarray, count: int = CHECK_SLICES) -> np.ndarray:
    """Indices of up to ``count`` slices with any organ, spread evenly along z (empty if none)."""
    present = _slices_with_organs(labels)
    if len(present) <= count:
        return present
    return present[np.linspace(0, len(present) - 1, count).round().astype(int)]


def check_slices(target, labels: np.ndarray, count: int = CHECK_SLICES) -> tuple[np.ndarray, str]:
    """The slices the check scores and how to name them: :func:`organ_slices` for a 2D target; for a 3D
    one (:func:`~napari_advseg.models.target_meta.is_volumetric`) a run of consecutive slices, at least its
    slab depth, around the middle organ slice, so that its network sees z context as it was trained to."""
    if not is_volumetric(target):
        index = organ_slices(labels, count)
        return index, f"{len(index)} organ slices"
    present = _slices_with_organs(labels)
    if len(present) == 0:
        return present, "0 organ slices"
    n, depth = len(labels), max(count, int(target.slab_depth))
    start = int(np.clip(int(present[len(present) // 2]) - depth // 2, 0, max(0, n - depth)))
    index = np.arange(start, min(n, start + depth))
    return index, f"{len(index)} consecutive slices"


def describe_normalisation(normalisation: dict) -> str:
    """The intensities a normalisation gives the network, in words (``zscore intensities per volume``)."""
    mode = normalisation.get("mode", "zscore")
    extra = {k: v for k, v in normalisation.items() if k not in ("mode", "window")}
    if mode == "zscore":
        text = "zscore intensities per volume"
    elif "window" in normalisation:
        lo, hi = normalisation["window"]
        text = f"{mode} intensities (HU window {float(lo):g}..{float(hi):g})"
    else:
        text = f"{mode} intensities"
    if extra:
        text += " (" + ", ".join(f"{k} {v}" for k, v in extra.items()) + ")"
    return text


def clean_dice_warning(target, images: np.ndarray, labels: np.ndarray | None, *, count: int = CHECK_SLICES,
                       floor: float = CLEAN_DICE_FLOOR) -> str | None:
    """One line when the target's clean Dice on a few organ slices is implausibly low, else None.

    ``images``: the normalised ``(N, H, W)`` slices the target is given;
    ``labels``: their reference labels (None: nothing to check). The line
    gives the mean clean Dice over the organs present, each organ's, and what
    was assumed: the target's normalisation and class names.
    """
    if labels is None:
        return None
    index, scored = check_slices(target, labels, count)
    if len(index) == 0:
        return None
    names = list(target.class_names)
    dice = network_dice(target, np.asarray(images)[index], np.asarray(labels)[index], names)
    present = {organ: d for organ, d in dice.items() if d is not None and not math.isnan(d)}
    if not present:
        return None
    mean = float(np.mean(list(present.values())))
    if mean >= floor:
        return None
    organs = ", ".join(f"{organ} {100 * d:.0f}" for organ, d in present.items())
    given = describe_normalisation(dict(target.normalisation))
    if getattr(target, "kind", None) in ("nnunet", "monai"):  # a folder declares its own normalisation
        return (f"clean Dice {100 * mean:.0f} % on the given labels ({organs}; {scored}): the "
                f"target folder gives its network {given} and names its classes {', '.join(names)}; check that "
                f"the CT is in HU and the labels' values are named as the folder's classes (--label-names)")
    return (f"clean Dice {100 * mean:.0f} % on the given labels ({organs}; {scored}): "
            f"wrong normalisation? the target was given {given} "
            f"and its classes were read as {', '.join(names)}; declare the target's normalisation with "
            f"--normalisation (classes with --class-names) or an advseg.json")
