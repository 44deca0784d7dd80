"""Label maps checked against their CT and the class map: one uint8 value per voxel, in canonical order.

Independent of the file format: :func:`napari_advseg.io.nifti.load_labels`
reads a file and checks it here, and label layers made in memory are checked
the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.io.geometry import CTVolume
from napari_advseg.organs import ORGAN_CLASSES

__all__ = ["check_labels"]

_MAX_LISTED_VALUES = 8


def _list_values(values: np.ndarray) -> str:
    """The distinct values, at most :data:`_MAX_LISTED_VALUES` of them, for an error message."""
    values = np.unique(values)
    shown = ", ".join(f"{v:g}" for v in values[:_MAX_LISTED_VALUES].tolist())
    more = len(values) - _MAX_LISTED_VALUES
    return shown + (f" and {more} more" if more > 0 else "")


def check_labels(
    labels: np.ndarray,
    like: CTVolume,
    class_names: Sequence[str] = ORGAN_CLASSES,
    name: str = "labels",
) -> np.ndarray:
    """Check an in-memory label map that is already in canonical order.

    Parameters
    ----------
    labels : array_like
        ``(Z, Y, X)`` label values on the grid of ``like``, any integer or
        float dtype (floats must hold whole numbers).
    like : CTVolume
        The CT the labels belong to.
    class_names : sequence of str, optional
        The class map; allowed values are ``0 .. len(class_names) - 1``.
        Classes that do not occur are fine.
    name : str, optional
        What to call the labels in error messages (e.g. the file name).

    Returns
    -------
    numpy.ndarray
        C-contiguous ``uint8`` ``(Z, Y, X)`` copy (or the input when it is
        already such an array).

    Raises
    ------
    InputFileError
        Wrong shape, non-numeric data, NaN/inf, non-integral values or values
        outside the class map; the message names ``name`` and the bad values.
    """
    n_classes = len(class_names)
    if n_classes < 1 or n_classes > 256:
        raise AdvsegError(f"the class map must have 1 to 256 classes, got {n_classes}")
    array = np.asarray(labels)
    if array.shape != like.shape:
        raise InputFileError(name, f"label map has shape {array.shape}, but the CT has shape {like.shape} (Z, Y, X)")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputFileError(name, f"label data type {array.dtype} is not numeric")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise InputFileError(name, f"holds {int(array.size - finite.sum())} NaN or infinite label value(s)")
        fractional = array != np.round(array)
        if fractional.any():
            raise InputFileError(
                name, f"label values must be whole numbers, found {_list_values(array[fractional])}"
            )
    outside = (array < 0) | (array > n_classes - 1)
    if outside.any():
        raise InputFileError(
            name,
            f"label values must be 0..{n_classes - 1} ({', '.join(class_names)}), "
            f"found {_list_values(array[outside])}",
        )
    return np.ascontiguousarray(array, dtype=np.uint8)
