"""Label maps among the volumes napari opens: telling them from CT by their values, and their integer array.

Pure numpy, so the decision can be tested without napari.
"""

from __future__ import annotations

import numpy as np

from napari_advseg.errors import InputFileError

__all__ = ["MAX_LABEL_VALUE", "MAX_LABEL_VALUES", "label_array", "looks_like_labels"]

MAX_LABEL_VALUES = 64
"""A file with more distinct values than this is read as an image, never as labels."""

MAX_LABEL_VALUE = 65535
"""Largest value a file may hold to be read as labels (float32 holds it exactly)."""


def looks_like_labels(values: np.ndarray) -> bool:
    """Whether an array's values look like a label map rather than a CT.

    Labels hold whole, non-negative numbers (at most :data:`MAX_LABEL_VALUE`)
    with at most :data:`MAX_LABEL_VALUES` distinct values. A CT in HU has
    negative values (air is -1000) or hundreds of distinct values, so it
    stays an image even when stored as integers.

    Parameters
    ----------
    values : numpy.ndarray
        The volume (any shape, real numbers). It is scanned slice by slice
        along the first axis, so no full-size temporary copy is made.

    Returns
    -------
    bool
    """
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return True
    if values.size == 0 or not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        return False
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > MAX_LABEL_VALUE:
        return False
    floating = np.issubdtype(values.dtype, np.floating)
    seen = np.zeros(int(high) + 1, dtype=bool)
    for chunk in values.reshape(values.shape[0] if values.ndim > 1 else 1, -1):
        if floating and not np.array_equal(chunk, np.rint(chunk)):
            return False
        seen |= np.bincount(chunk.astype(np.int64), minlength=seen.size) > 0
        if np.count_nonzero(seen) > MAX_LABEL_VALUES:
            return False
    return True


def label_array(values: np.ndarray, path) -> np.ndarray:
    """Whole non-negative numbers as the smallest fitting integer array (uint8, int16 or int32).

    Raises InputFileError naming ``path`` for fractional, non-finite or out-of-range values.
    """
    if values.size and (not np.all(np.isfinite(values)) or not np.array_equal(values, np.rint(values))):
        raise InputFileError(path, "a label map must hold whole numbers")
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if low < 0 or high > MAX_LABEL_VALUE:
        raise InputFileError(path, f"label values must lie in 0..{MAX_LABEL_VALUE}, found {low:g}..{high:g}")
    if high <= np.iinfo(np.uint8).max:
        dtype = np.uint8
    elif high <= np.iinfo(np.int16).max:
        dtype = np.int16
    else:
        dtype = np.int32
    return np.ascontiguousarray(values, dtype=dtype)
