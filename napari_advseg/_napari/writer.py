"""napari writers: Image and Labels layers as NIfTI files in their source geometry.

Layer data are in the canonical ``(Z, Y, X)`` order of
:mod:`napari_advseg.io.geometry`. Where the layer came from the plugin's reader,
its ``metadata`` holds the source file's geometry, and the file is written
back in that file's own axis order, affine (sform and qform, with their codes)
and header with :func:`napari_advseg.io.nifti_save.save_volume`, so it overlays the
original exactly in any viewer. The geometry is taken from, in this order:

1. ``metadata['advseg_source']`` (a :class:`~napari_advseg.io.geometry.SourceGeometry`)
   when its grid has the layer's shape;
2. ``metadata['advseg_affine']`` (the canonical 4x4 affine), written as a
   RAS-stored file with a fresh header;
3. the layer's ``scale`` ``(dz, dy, dx)``, through
   :func:`~napari_advseg.io.geometry.volume_from_array` (RAS-stored, voxel
   ``(0, 0, 0)`` at the world origin; the layer's ``translate`` is ignored).

Both writers overwrite an existing file: napari's save dialog has already
asked. Problems raise :class:`~napari_advseg.errors.AdvsegError` with a
one-line message, which napari shows to the user.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from napari_advseg._napari.layers import AFFINE, SOURCE
from napari_advseg.errors import AdvsegError

__all__ = ["write_image", "write_labels"]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer for one Image layer.

    Parameters
    ----------
    path : str
        Output file ending in ``.nii`` or ``.nii.gz``.
    data : array_like
        The layer's ``(Z, Y, X)`` data (multiscale data: the full-resolution
        level is written).
    meta : dict
        The layer's attributes (``metadata``, ``scale``, ...).

    Returns
    -------
    list of str
        The written file. Whole-number values that fit int16 (a CT in HU)
        are stored as int16, anything else as float32.
    """
    array = _volume_array(data, meta, path)
    return [str(_save(array, meta, path, _image_dtype(array), intent=None))]


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer for one Labels layer.

    Parameters
    ----------
    path : str
        Output file ending in ``.nii`` or ``.nii.gz``.
    data : array_like
        The layer's ``(Z, Y, X)`` integer label map.
    meta : dict
        The layer's attributes (``metadata``, ``scale``, ...).

    Returns
    -------
    list of str
        The written file: uint8 when the values fit (0..255), else int16 or
        int32; the NIfTI intent is set to "label".
    """
    array = _volume_array(data, meta, path)
    return [str(_save(array, meta, path, _label_dtype(array, path), intent="label"))]


def _volume_array(data: Any, meta: dict, path) -> np.ndarray:
    """The layer data as a 3D numpy array (full resolution for multiscale layers)."""
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]
    array = np.asarray(data)
    if meta.get("rgb"):
        raise AdvsegError(f"{path}: RGB images cannot be saved as a CT volume; save a single-channel 3D layer")
    if array.ndim != 3:
        raise AdvsegError(
            f"{path}: only 3D (Z, Y, X) volumes can be saved as NIfTI by napari-advseg; "
            f"this layer has shape {array.shape}"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise AdvsegError(f"{path}: cannot save data of type {array.dtype}; expected real numbers")
    return array


def _fits(array: np.ndarray, dtype) -> bool:
    info = np.iinfo(dtype)
    return array.size == 0 or (array.min() >= info.min and array.max() <= info.max)


def _image_dtype(array: np.ndarray):
    if np.issubdtype(array.dtype, np.integer):
        return np.int16 if _fits(array, np.int16) else np.float32
    if np.all(np.isfinite(array)) and _fits(array, np.int16) and np.array_equal(array, np.rint(array)):
        return np.int16
    return np.float32


def _label_dtype(array: np.ndarray, path):
    if np.issubdtype(array.dtype, np.floating) and not (
        np.all(np.isfinite(array)) and np.array_equal(array, np.rint(array))
    ):
        raise AdvsegError(f"{path}: a label map must hold whole numbers")
    for dtype in (np.uint8, np.int16, np.int32):
        if _fits(array, dtype):
            return dtype
    raise AdvsegError(f"{path}: label values {array.min():g}..{array.max():g} do not fit a 32-bit integer")


def _canonical_grid(source) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the canonical array of a source file."""
    from nibabel import orientations as nio

    transform = np.asarray(source.ornt_to_canonical)
    shape = [0, 0, 0]
    for axis, (target, _flip) in enumerate(transform):
        shape[int(target)] = int(source.shape[axis])
    affine = np.asarray(source.affine, dtype=np.float64) @ nio.inv_ornt_aff(transform, tuple(source.shape))
    return tuple(shape), affine  # type: ignore[return-value]


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def _geometry_from_affine(array: np.ndarray, affine, path):
    """A CTVolume-like geometry that stores ``array`` RAS-ordered with the canonical ``affine``."""
    from nibabel import orientations as nio

    from napari_advseg.io.geometry import CTVolume, SourceGeometry

    try:
        canonical_affine = np.array(affine, dtype=np.float64)
    except (TypeError, ValueError):
        raise AdvsegError(f"{path}: the layer's {AFFINE} is not a 4x4 matrix of numbers") from None
    if canonical_affine.shape != (4, 4) or not np.all(np.isfinite(canonical_affine)):
        raise AdvsegError(f"{path}: the layer's {AFFINE} is not a finite 4x4 matrix")
    canonical_ornt = nio.io_orientation(canonical_affine)
    if not np.all(np.isfinite(canonical_ornt)) or min(_spacing(canonical_affine)) <= 0:
        raise AdvsegError(f"{path}: the layer's {AFFINE} is degenerate")
    to_ras = nio.ornt_transform(canonical_ornt, nio.axcodes2ornt(("R", "A", "S")))
    stored_affine = canonical_affine @ nio.inv_ornt_aff(to_ras, array.shape)
    stored_shape = tuple(int(array.shape[i]) for i in np.argsort(to_ras[:, 0]))
    source = SourceGeometry(
        affine=stored_affine,
        shape=stored_shape,  # type: ignore[arg-type]
        header=None,
        ornt_to_canonical=nio.ornt_transform(nio.io_orientation(stored_affine), canonical_ornt),
    )
    return CTVolume(hu=array, affine=canonical_affine, spacing=_spacing(canonical_affine), source=source)


def _like(array: np.ndarray, meta: dict, path):
    """The geometry to write ``array`` with (see the module docstring)."""
    from napari_advseg.io.geometry import CTVolume, SourceGeometry, volume_from_array

    metadata = meta.get("metadata") or {}
    source = metadata.get(SOURCE)
    if isinstance(source, SourceGeometry):
        shape, affine = _canonical_grid(source)
        if shape == tuple(array.shape):
            # CTVolume only carries the geometry here: save_volume reads like.shape and like.source.
            return CTVolume(hu=array, affine=affine, spacing=_spacing(affine), source=source)
    affine = metadata.get(AFFINE)
    if affine is not None:
        return _geometry_from_affine(array, affine, path)
    scale = tuple(meta.get("scale") or (1.0, 1.0, 1.0))[-3:]
    return volume_from_array(array, scale, path=path)


def _save(array: np.ndarray, meta: dict, path, dtype, intent: str | None):
    from napari_advseg.io.nifti_save import save_volume

    path = os.fspath(path)
    return save_volume(array, _like(array, meta, path), path, dtype=dtype, overwrite=True, intent=intent)
