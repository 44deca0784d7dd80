"""Reading NIfTI files: CT volumes and label maps, checked and reoriented to canonical order.

Volumes come back in the canonical ``(Z, Y, X)`` order described in
:mod:`napari_advseg.io.geometry`, with the file's geometry kept for writing
results back (:func:`napari_advseg.io.nifti_save.save_volume`).

Every problem with a user's file raises :class:`~napari_advseg.errors.InputFileError`
whose one-line message names the file and the problem.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import warnings
import zlib
from collections.abc import Sequence

import nibabel
import numpy as np
from nibabel import orientations as nio
from nibabel.filebasedimages import ImageFileError

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.errors import InputFileError, first_line
from napari_advseg.io.geometry import (
    AFFINE_ATOL_MM,
    CTVolume,
    canonical_transform,
    canonical_volume,
    count_nonfinite,
    reoriented_affine,
)
from napari_advseg.io.labels import check_labels

__all__ = ["load_ct", "load_labels"]


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------


def _is_broken_gzip(path: pathlib.Path) -> bool:
    """True when ``path`` starts like a gzip file but cannot be decompressed to the end."""
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != b"\x1f\x8b":
                return False
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, zlib.error, OSError):
        return True
    return False


def _open_nifti(path: pathlib.Path) -> nibabel.Nifti1Image:
    """Open a NIfTI file's header (data stay on disk), with plain-language errors."""
    if not path.exists():
        raise InputFileError(path, "file not found")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not a NIfTI file")
    try:
        image = nibabel.load(path)
    except MemoryError:
        raise
    except ImageFileError as error:
        if _is_broken_gzip(path):
            raise InputFileError(path, "could not be read: the gzip data are truncated or corrupt") from None
        raise InputFileError(
            path, f"not a NIfTI file (.nii or .nii.gz) that nibabel can read ({first_line(error, path)})"
        ) from None
    except (EOFError, zlib.error, OSError) as error:
        raise InputFileError(
            path, f"could not be read: the file is truncated or corrupt ({first_line(error, path)})"
        ) from None
    except Exception as error:  # noqa: BLE001 - nibabel raises many kinds on bad headers
        raise InputFileError(
            path, f"could not be read as NIfTI: bad or corrupt header ({first_line(error, path)})"
        ) from None
    if not isinstance(image, nibabel.Nifti1Image):
        raise InputFileError(
            path, f"not a NIfTI file: nibabel read it as {type(image).__name__}, expected .nii or .nii.gz"
        )
    return image


def _spatial_shape(path: pathlib.Path, image: nibabel.Nifti1Image) -> tuple[int, int, int]:
    """The image's 3D shape, squeezing trailing size-1 dimensions after the third."""
    shape = tuple(int(n) for n in image.shape)
    squeezed = shape
    while len(squeezed) > 3 and squeezed[-1] == 1:
        squeezed = squeezed[:-1]
    if len(squeezed) != 3:
        raise InputFileError(path, f"expected a 3D volume, got shape {shape}")
    if min(squeezed) < 1:
        raise InputFileError(path, f"has an axis of size 0 (shape {shape}): the volume is empty")
    return squeezed  # type: ignore[return-value]


def _check_file_dtype(path: pathlib.Path, image: nibabel.Nifti1Image) -> None:
    dtype = image.get_data_dtype()
    if np.issubdtype(dtype, np.complexfloating):
        raise InputFileError(path, f"holds complex values (data type {dtype}); expected real numbers")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputFileError(path, f"data type {dtype} is not numeric (e.g. RGB); expected one intensity per voxel")


def _read_data(path: pathlib.Path, image: nibabel.Nifti1Image, dtype=None) -> np.ndarray:
    """Read the voxel data (scaling applied), turning read errors into InputFileError."""
    try:
        if dtype is None:
            data = np.asanyarray(image.dataobj)
        else:
            data = image.get_fdata(dtype=dtype, caching="unchanged")
    except MemoryError:
        raise
    except (EOFError, zlib.error, OSError, ValueError) as error:
        raise InputFileError(
            path, f"could not read the voxel data: the file is truncated or corrupt ({first_line(error, path)})"
        ) from None
    except Exception as error:  # noqa: BLE001
        raise InputFileError(path, f"could not read the voxel data ({first_line(error, path)})") from None
    return np.asarray(data)


def _image_affine(path: pathlib.Path, image: nibabel.Nifti1Image) -> np.ndarray:
    header = image.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        warnings.warn(
            f"{path}: the header has neither an sform nor a qform; using nibabel's default "
            "orientation (a guess: check left and right)",
            stacklevel=3,
        )
    affine = np.array(image.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputFileError(path, "the affine (sform/qform) holds non-finite values")
    return affine




def load_ct(path: str | os.PathLike) -> CTVolume:
    """Load a CT volume from a NIfTI file and reorient it to canonical order.

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file holding one 3D volume in Hounsfield
        units. A 4D file whose trailing dimensions have size 1 is accepted.

    Returns
    -------
    CTVolume
        ``hu`` is float32 ``(Z, Y, X)`` in canonical order (see the module
        docstring), HU with ``scl_slope`` / ``scl_inter`` applied; ``spacing``
        is ``(dz, dy, dx)`` in mm.

    Raises
    ------
    InputFileError
        The file is missing, not NIfTI, corrupt or truncated; the data are not
        3D, not real numbers, or hold NaN or infinite values; an axis has size
        0; or the affine is degenerate.
    """
    path = pathlib.Path(path)
    image = _open_nifti(path)
    shape = _spatial_shape(path, image)
    _check_file_dtype(path, image)
    affine = _image_affine(path, image)
    if canonical_transform(affine) is None:
        raise InputFileError(path, "the affine (sform/qform) is degenerate: its voxel axes do not span 3D space")

    data = _read_data(path, image, dtype=np.float32).reshape(shape)
    bad = count_nonfinite(data)
    if bad:
        raise InputFileError(path, f"holds {bad} NaN or infinite voxel value(s) (after scl_slope/scl_inter)")
    return canonical_volume(data, affine, image.header.copy(), path)


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def load_labels(
    path: str | os.PathLike,
    like: CTVolume,
    class_names: Sequence[str] = ORGAN_CLASSES,
) -> np.ndarray:
    """Load a label map from a NIfTI file on the grid of a CT, in canonical order.

    Parameters
    ----------
    path : str or path-like
        ``.nii`` or ``.nii.gz`` label map, integer values (floats holding
        whole numbers are accepted).
    like : CTVolume
        The CT the labels belong to. The file's voxel grid must be the CT's:
        same shape and same affine (within 1e-3 mm). A file that stores the
        same grid with its axes in another order or direction is also
        accepted, since it reorients to exactly the same canonical grid.
    class_names : sequence of str, optional
        Class map; values must lie in ``0 .. len(class_names) - 1``. Classes
        that do not occur are not an error.

    Returns
    -------
    numpy.ndarray
        C-contiguous ``uint8`` ``(Z, Y, X)`` label map in canonical order.

    Raises
    ------
    InputFileError
        Any problem :func:`load_ct` checks for, a grid that differs from the
        CT's (the message names both shapes), non-integral values or values
        outside the class map (the message names them).
    """
    path = pathlib.Path(path)
    image = _open_nifti(path)
    shape = _spatial_shape(path, image)
    _check_file_dtype(path, image)
    affine = _image_affine(path, image)
    source = like.source

    same_stored = shape == tuple(source.shape) and np.allclose(affine, source.affine, rtol=0, atol=AFFINE_ATOL_MM)
    if same_stored:
        transform = source.ornt_to_canonical
    else:
        transform = canonical_transform(affine)
        same_canonical = False
        if transform is not None:
            canonical_shape = nio.apply_orientation(np.empty(shape, dtype=np.uint8), transform).shape
            canonical_affine = reoriented_affine(affine, transform, shape)
            same_canonical = canonical_shape == like.shape and np.allclose(
                canonical_affine, like.affine, rtol=0, atol=AFFINE_ATOL_MM
            )
        if not same_canonical:
            if shape != tuple(source.shape):
                problem = f"label map has shape {shape}, but the CT has shape {tuple(source.shape)}"
            else:
                worst = float(np.max(np.abs(affine - source.affine)))
                problem = (
                    f"label map has the CT's shape {shape}, but its affine "
                    f"differs from the CT's by up to {worst:.4g} mm"
                )
            raise InputFileError(path, problem + ": the labels are on another voxel grid")

    data = _read_data(path, image).reshape(shape)
    canonical = nio.apply_orientation(data, transform)
    return check_labels(canonical, like, class_names, name=str(path))

