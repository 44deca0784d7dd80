"""napari reader: NIfTI CT volumes and label maps as Image and Labels layers.

Every file is read with :func:`napari_advseg.io.nifti.load_ct`, so an image and
a label map from the same voxel grid come out in the same canonical
``(Z, Y, X)`` order (inferior -> superior, anterior -> posterior, patient
right -> left). ``layer.data[z]`` shown by napari with row 0 at the top is then
an axial slice in the radiological convention: anterior up, the patient's
left on the right of the screen.

The layer's ``metadata`` keeps what the writer (:mod:`napari_advseg._napari.writer`)
needs to put the data back in the file's own orientation and header: its kind,
the file, the canonical affine and the source geometry (the ``advseg_*``
entries of :mod:`napari_advseg._napari.layers`).

napari and nibabel are imported inside the functions, so that importing this
module (which napari does when it looks for a reader) stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from napari_advseg._napari import layers as meta
from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.data.intensity import DEFAULT_WINDOW

__all__ = [
    "CT_CONTRAST_LIMITS",
    "MAX_LABEL_VALUES",
    "NIFTI_SUFFIXES",
    "get_reader",
    "layer_name",
    "looks_like_labels",
    "read_layer",
    "read_nifti",
]

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
"""File name endings the reader accepts (case-insensitive)."""

MAX_LABEL_VALUES = 64
"""A file with more distinct values than this is read as an image, never as labels."""

MAX_LABEL_VALUE = 65535
"""Largest value a file may hold to be read as labels (float32 holds it exactly)."""

CT_CONTRAST_LIMITS: tuple[float, float] = DEFAULT_WINDOW
"""Initial display window of CT images: an abdominal soft-tissue window in HU."""

KINDS = meta.FILE_KINDS
"""Values of the ``advseg_kind`` metadata entry of a layer read from a file."""

LayerDataTuple = tuple


def layer_name(path: str | os.PathLike) -> str | None:
    """The file name without ``.nii`` / ``.nii.gz``, or None for other files.

    Parameters
    ----------
    path : str or path-like
        A file path.

    Returns
    -------
    str or None
        The stem (``"ct"`` for ``/data/ct.nii.gz``); None when the name does
        not end in a NIfTI suffix or is nothing but the suffix.
    """
    name = os.path.basename(os.fspath(path))
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def get_reader(path) -> Callable[[str], list[LayerDataTuple]] | None:
    """npe2 reader contribution: a reader function for a NIfTI file, else None.

    Parameters
    ----------
    path : str, path-like or list
        What napari asks about. Lists (stacks of files) and folders are
        declined, as are names that do not end in ``.nii`` or ``.nii.gz``.

    Returns
    -------
    callable or None
        :func:`read_nifti` when the path names a NIfTI file; None otherwise,
        so that napari offers the path to other readers.
    """
    if isinstance(path, (list, tuple)):
        return None
    try:
        name = layer_name(path)
    except TypeError:
        return None
    if name is None or os.path.isdir(path):
        return None
    return read_nifti


def read_nifti(path) -> list[LayerDataTuple]:
    """Read one NIfTI file as a layer; problems become a napari notification.

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file (a one-element list is accepted too).

    Returns
    -------
    list of tuple
        ``[(data, kwargs, layer_type)]``, see :func:`read_layer`. When the
        file cannot be read (missing, corrupt, not NIfTI, not 3D, ...), the
        one-line message is shown with ``napari.utils.notifications.show_error``
        and ``[(None,)]`` is returned: npe2's "read, but no layers" value, so
        napari adds nothing and raises nothing (an empty list would make
        ``viewer.open`` raise "returned no data").
    """
    if isinstance(path, (list, tuple)) and len(path) == 1:
        path = path[0]
    try:
        return [read_layer(path)]
    except AdvsegError as error:
        message = str(error)
    except MemoryError:
        message = f"{path}: not enough memory to read this volume"
    from napari.utils.notifications import show_error

    show_error(message)
    return [(None,)]


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


def _label_array(values: np.ndarray, path) -> np.ndarray:
    """Whole non-negative numbers as the smallest fitting integer array."""
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


def _organ_colormap(n_values: int):
    """The shared organ colours as a napari colormap, or None when they do not cover the labels."""
    from napari_advseg.data.organs import ORGAN_COLOURS

    if n_values > len(ORGAN_COLOURS):
        return None
    from napari.utils.colormaps import DirectLabelColormap

    colours = {int(value): tuple(rgba) for value, rgba in ORGAN_COLOURS.items()}
    colours[None] = (0.6, 0.6, 0.6, 1.0)  # values painted outside the class map
    return DirectLabelColormap(color_dict=colours)


def read_layer(path: str | os.PathLike, kind: str | None = None, name: str | None = None) -> LayerDataTuple:
    """Read a NIfTI file as one napari layer data tuple, in canonical order.

    Parameters
    ----------
    path : str or path-like
        ``.nii`` or ``.nii.gz`` file holding a 3D volume (a 4D file whose
        extra dimensions have size 1 is accepted).
    kind : {'ct', 'labels'}, optional
        Force the layer type. Default: decided from the values with
        :func:`looks_like_labels` (labels -> Labels layer, else Image).
    name : str, optional
        Layer name; default the file name without ``.nii`` / ``.nii.gz``.

    Returns
    -------
    tuple
        ``(data, kwargs, layer_type)``. ``layer_type`` is ``"image"`` (data:
        float32 HU, gray colormap, contrast limits :data:`CT_CONTRAST_LIMITS`)
        or ``"labels"`` (data: uint8, or int16 / int32 for values above 255;
        the shared organ colours when the values fit the organ class map).
        ``kwargs`` has ``name``, ``scale`` (the voxel spacing ``(dz, dy, dx)``
        in mm) and ``metadata`` (see the module docstring).

    Raises
    ------
    InputFileError
        The file is missing, not NIfTI, corrupt or truncated, not 3D, holds
        NaN/inf, has a degenerate affine; or ``kind='labels'`` for a file
        that does not hold whole non-negative numbers.
    AdvsegError
        Unknown ``kind``.
    """
    from napari_advseg.io.nifti import load_ct

    if kind is not None and kind not in KINDS:
        raise AdvsegError(f"unknown layer kind {kind!r}: choose one of {', '.join(KINDS)}")
    volume = load_ct(path)
    if kind is None:
        kind = meta.LABELS if looks_like_labels(volume.hu) else meta.CT
    if name is None:
        name = layer_name(path) or os.path.basename(os.fspath(path))
    metadata = meta.file_metadata(volume, kind, path)
    kwargs: dict = {"name": name, "scale": tuple(float(s) for s in volume.spacing), "metadata": metadata}
    if kind == meta.LABELS:
        data = _label_array(volume.hu, path)
        colormap = _organ_colormap(int(data.max()) + 1 if data.size else 1)
        if colormap is not None:
            kwargs["colormap"] = colormap
        return (data, kwargs, "labels")
    kwargs["colormap"] = "gray"
    kwargs["contrast_limits"] = list(CT_CONTRAST_LIMITS)
    return (volume.hu, kwargs, "image")
