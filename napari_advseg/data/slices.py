"""Axial slice selections: the fixed train/test split and the slices that hold organs."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from napari_advseg.errors import AdvsegError

__all__ = ["SPLIT_PARTS", "organ_slices", "split_slices"]

SPLIT_PARTS = ("all", "train", "test")
"""Parts accepted by :func:`split_slices`."""


def split_slices(n_slices: int, part: str = "all") -> np.ndarray:
    """Axial slice indices of one part of the train/test split.

    The rule: slice ``z`` is a test slice when ``z % 3 == 2`` (every third
    slice, starting at slice 2); all other slices are training slices. The
    two parts are disjoint and together hold every slice; neighbouring test
    slices are two slices apart, with training slices between them.

    Parameters
    ----------
    n_slices : int
        Number of axial slices ``Z`` (>= 0).
    part : {'all', 'train', 'test'}, optional

    Returns
    -------
    numpy.ndarray
        Sorted int64 slice indices.

    Raises
    ------
    AdvsegError
        Unknown part or a negative / non-integer number of slices.
    """
    if isinstance(n_slices, bool) or not isinstance(n_slices, (int, np.integer)) or n_slices < 0:
        raise AdvsegError(f"the number of slices must be a whole number >= 0, got {n_slices!r}")
    if part not in SPLIT_PARTS:
        raise AdvsegError(f"unknown slice split {part!r}: choose one of {', '.join(SPLIT_PARTS)}")
    z = np.arange(int(n_slices), dtype=np.int64)
    if part == "test":
        return z[z % 3 == 2]
    if part == "train":
        return z[z % 3 != 2]
    return z


def organ_slices(labels: np.ndarray, classes: int | Iterable[int] | None = None) -> np.ndarray:
    """Indices of the axial slices that hold any voxel of the given classes.

    Parameters
    ----------
    labels : array_like
        ``(Z, Y, X)`` integer label map, canonical order.
    classes : int or iterable of int, optional
        Label values to look for; default every value > 0 (any organ).

    Returns
    -------
    numpy.ndarray
        Sorted int64 indices ``z`` with at least one such voxel in ``labels[z]``.
    """
    array = np.asarray(labels)
    if array.ndim != 3:
        raise AdvsegError(f"expected a (Z, Y, X) label map, got shape {array.shape}")
    if classes is None:
        mask = array > 0
    else:
        wanted = [int(classes)] if np.isscalar(classes) else [int(c) for c in classes]
        mask = np.isin(array, wanted)
    return np.flatnonzero(mask.any(axis=(1, 2))).astype(np.int64)
