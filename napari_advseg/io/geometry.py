"""Canonical volume geometry: the array order, CT volumes and orientation transforms.

Canonical array order
---------------------
Every volume in this package is held as a numpy array of shape ``(Z, Y, X)``
in one fixed orientation, whatever the orientation of the file it came from:

- axis 0 (``Z``, slices) runs from inferior to superior (feet -> head),
- axis 1 (``Y``, rows) runs from anterior to posterior (front -> back),
- axis 2 (``X``, columns) runs from the patient's right to the patient's left.

In nibabel axis codes (each code names the direction in which the index
grows) this is ``('S', 'P', 'L')``. ``array[z]`` shown with row 0 at the top
and column 0 at the left is then an axial slice in the radiological
convention: anterior up, the patient's left on the right of the screen, as if
looking up from the patient's feet.

Files in any orientation are reoriented to this order on loading
(:func:`napari_advseg.io.nifti.load_ct`) with :mod:`nibabel.orientations`
(``io_orientation``, ``axcodes2ornt``, ``ornt_transform``,
``apply_orientation``, ``inv_ornt_aff``). The flips and axis swaps are exact
(no resampling); an oblique affine is mapped to the nearest canonical axes and
stays oblique in :attr:`CTVolume.affine`. What is needed to undo this -- the
stored affine, shape, header and orientation transform -- is kept in
:class:`SourceGeometry`, and :func:`napari_advseg.io.nifti_save.save_volume`
writes arrays back in the input's own orientation, shape, affine (sform and
qform, with their codes) and header, so a saved volume overlays the original
exactly in any viewer.

Affines map voxel indices to world coordinates in RAS+ millimetres, as in
nibabel. Label maps are ``uint8`` arrays on the same canonical grid, with the
values of the class map (by default
:data:`napari_advseg.organs.ORGAN_CLASSES`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel
import numpy as np
from nibabel import orientations as nio

from napari_advseg.errors import AdvsegError, InputFileError

__all__ = [
    "AFFINE_ATOL_MM",
    "CANONICAL_AXCODES",
    "CTVolume",
    "SourceGeometry",
    "affine_spacing",
    "canonical_transform",
    "canonical_volume",
    "count_nonfinite",
    "invert_ornt",
    "reoriented_affine",
    "volume_from_array",
]

CANONICAL_AXCODES: tuple[str, str, str] = ("S", "P", "L")
"""nibabel axis codes of the canonical ``(Z, Y, X)`` array order."""

_RAS_AXCODES: tuple[str, str, str] = ("R", "A", "S")

AFFINE_ATOL_MM = 1e-3
"""Largest difference (mm) between two affines that still counts as the same grid."""


# ---------------------------------------------------------------------------
# Data classes
# ---------------------------------------------------------------------------


@dataclass
class SourceGeometry:
    """What is needed to write canonical arrays back in the input file's geometry.

    Attributes
    ----------
    affine : numpy.ndarray
        ``(4, 4)`` float64 affine of the file as stored: voxel indices of the
        stored array -> RAS+ world coordinates in mm.
    shape : tuple of int
        Spatial shape ``(I, J, K)`` of the stored array (voxels).
    header : nibabel.Nifti1Header or None
        The file's header (a copy), reused when saving. ``None`` for volumes
        made in memory: :func:`~napari_advseg.io.nifti_save.save_volume` then writes a fresh header.
    ornt_to_canonical : numpy.ndarray
        ``(3, 2)`` nibabel orientation transform taking the stored array to
        the canonical ``(Z, Y, X)`` array with ``apply_orientation``.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    header: nibabel.Nifti1Header | None
    ornt_to_canonical: np.ndarray


@dataclass
class CTVolume:
    """A CT volume in canonical ``(Z, Y, X)`` order (see the module docstring).

    Attributes
    ----------
    hu : numpy.ndarray
        float32 ``(Z, Y, X)`` array of Hounsfield units (HU), with the file's
        ``scl_slope`` / ``scl_inter`` applied. C-contiguous.
    affine : numpy.ndarray
        ``(4, 4)`` affine of the canonical array: voxel ``(z, y, x)`` -> RAS+
        world coordinates in mm. ``nibabel.aff2axcodes(affine)`` is
        ``('S', 'P', 'L')``.
    spacing : tuple of float
        Voxel size ``(dz, dy, dx)`` in mm along the canonical axes.
    source : SourceGeometry
        Geometry of the file the volume came from, for :func:`~napari_advseg.io.nifti_save.save_volume`.
    path : str or None
        The file the volume was read from, if any (for a DICOM series: the
        folder, or the file given).
    series_uid : str or None
        The DICOM SeriesInstanceUID when the volume was read from a DICOM
        series (:mod:`napari_advseg.io.dicom`); None for NIfTI and in-memory
        volumes. Written to the JSON sidecars of outputs.
    """

    hu: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    source: SourceGeometry
    path: str | None = None
    series_uid: str | None = None

    def __post_init__(self) -> None:
        if np.ndim(self.hu) != 3:
            raise AdvsegError(f"CTVolume needs a 3D (Z, Y, X) array, got shape {np.shape(self.hu)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Canonical shape ``(Z, Y, X)`` in voxels."""
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def n_slices(self) -> int:
        """Number of axial slices ``Z``."""
        return int(self.hu.shape[0])


# ---------------------------------------------------------------------------
# Orientation helpers
# ---------------------------------------------------------------------------


def invert_ornt(ornt: np.ndarray) -> np.ndarray:
    """Inverse of a nibabel orientation transform (as used by ``apply_orientation``).

    ``ornt[i] = (j, f)`` sends input axis ``i`` to output axis ``j``, flipped
    when ``f == -1``; the inverse sends output axis ``j`` back to ``i`` with
    the same flip.
    """
    ornt = np.asarray(ornt)
    inverse = np.empty_like(ornt)
    for i, (j, flip) in enumerate(ornt):
        inverse[int(j)] = (i, flip)
    return inverse


def _stored_orientation(affine: np.ndarray) -> np.ndarray | None:
    """Orientation of a stored array's axes, or ``None`` for a degenerate affine."""
    try:
        ornt = nio.io_orientation(affine)
    except Exception:  # noqa: BLE001 - any failure means an unusable affine
        return None
    if not np.all(np.isfinite(ornt)):
        return None
    return ornt


def canonical_transform(affine: np.ndarray) -> np.ndarray | None:
    """Orientation transform stored -> canonical ``('S', 'P', 'L')``, or ``None``."""
    ornt = _stored_orientation(affine)
    if ornt is None:
        return None
    return nio.ornt_transform(ornt, nio.axcodes2ornt(CANONICAL_AXCODES))


def reoriented_affine(affine: np.ndarray, transform: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Affine of ``apply_orientation(array, transform)`` for an array with ``affine``."""
    return np.asarray(affine, dtype=np.float64) @ nio.inv_ornt_aff(transform, tuple(shape))


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis: the lengths of the affine's columns."""
    sizes = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN or infinite values in ``array`` (0 for integer arrays)."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


# ---------------------------------------------------------------------------
# Stored arrays -> canonical volumes
# ---------------------------------------------------------------------------


def canonical_volume(
    data: np.ndarray,
    affine: np.ndarray,
    header: nibabel.Nifti1Header | None,
    path: str | os.PathLike,
    series_uid: str | None = None,
) -> CTVolume:
    """A CTVolume from a stored 3D float32 array and its RAS+ affine, reoriented to canonical order.

    The one place where a file's array (NIfTI, or a DICOM series stacked as
    if it were a NIfTI with ``affine``) becomes the canonical ``(Z, Y, X)``
    volume, so both inputs give the same array and affine for the same scan.

    Parameters
    ----------
    data : numpy.ndarray
        Stored ``(I, J, K)`` array, float32 Hounsfield units (any memory
        layout; the result is C-contiguous, copied only when needed).
    affine : numpy.ndarray
        ``(4, 4)`` affine of ``data``: voxel ``(i, j, k)`` -> RAS+ mm.
    header : nibabel.Nifti1Header or None
        Kept in the :class:`SourceGeometry` for writing outputs back.
    path : str or path-like
        Named in error messages and kept in :attr:`CTVolume.path`.
    series_uid : str, optional
        DICOM SeriesInstanceUID of the volume.

    Raises
    ------
    InputFileError
        A degenerate affine or a zero voxel size.
    """
    affine = np.asarray(affine, dtype=np.float64)
    shape = tuple(int(n) for n in data.shape)
    transform = canonical_transform(affine)
    if transform is None:
        raise InputFileError(path, "the affine (sform/qform) is degenerate: its voxel axes do not span 3D space")
    hu = np.ascontiguousarray(nio.apply_orientation(data, transform), dtype=np.float32)
    canonical_affine = reoriented_affine(affine, transform, shape)
    spacing = affine_spacing(canonical_affine)
    if min(spacing) <= 0:
        raise InputFileError(path, f"the affine gives a zero voxel size (spacing {spacing} mm)")
    source = SourceGeometry(affine=affine, shape=shape, header=header, ornt_to_canonical=transform)  # type: ignore[arg-type]
    return CTVolume(hu=hu, affine=canonical_affine, spacing=spacing, source=source, path=str(path),
                    series_uid=series_uid)


# ---------------------------------------------------------------------------
# Volumes made in memory
# ---------------------------------------------------------------------------


def volume_from_array(
    hu: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    path: str | os.PathLike | None = None,
) -> CTVolume:
    """Wrap an array that is already in canonical ``(Z, Y, X)`` order as a CTVolume.

    Parameters
    ----------
    hu : array_like
        ``(Z, Y, X)`` Hounsfield units, canonical order (inferior -> superior,
        anterior -> posterior, patient right -> left). Copied to float32.
    spacing : sequence of 3 float, optional
        Voxel size ``(dz, dy, dx)`` in mm.
    path : str or path-like, optional
        A name to record in :attr:`CTVolume.path` and to use in messages.

    Returns
    -------
    CTVolume
        Its canonical affine maps voxel ``(z, y, x)`` to RAS+ mm
        ``(-dx * x, -dy * y, dz * z)``: voxel ``(0, 0, 0)`` lies at the world
        origin and ``nibabel.aff2axcodes`` gives ``('S', 'P', 'L')``. Its
        source geometry is that of a plain RAS-stored file with no header:
        :func:`~napari_advseg.io.nifti_save.save_volume` writes such a volume as an ``(X, Y, Z)`` array
        reoriented to ``('R', 'A', 'S')`` with the matching RAS affine (sform
        and qform, code 1 "scanner"), which nibabel and viewers read back to
        the same world positions.

    Raises
    ------
    AdvsegError
        The array is not 3D, empty, not real numbers, or holds NaN or
        infinite values; or the spacing is not three positive numbers.
    """
    name = str(path) if path is not None else "array"
    array = np.asarray(hu)
    if array.ndim != 3:
        raise InputFileError(name, f"expected a 3D (Z, Y, X) volume, got shape {array.shape}")
    if array.size == 0:
        raise InputFileError(name, f"has an axis of size 0 (shape {array.shape}): the volume is empty")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputFileError(name, f"data type {array.dtype} is not real numbers")
    data = np.array(array, dtype=np.float32, copy=True, order="C")
    bad = count_nonfinite(data)
    if bad:
        raise InputFileError(name, f"holds {bad} NaN or infinite voxel value(s)")

    try:
        dz, dy, dx = (float(s) for s in spacing)
    except (TypeError, ValueError):
        raise AdvsegError(f"{name}: spacing must be three numbers (dz, dy, dx) in mm, got {spacing!r}") from None
    if not all(np.isfinite(s) and s > 0 for s in (dz, dy, dx)):
        raise AdvsegError(f"{name}: spacing must be three positive numbers (dz, dy, dx) in mm, got {spacing!r}")

    canonical_affine = np.array(
        [
            [0.0, 0.0, -dx, 0.0],
            [0.0, -dy, 0.0, 0.0],
            [dz, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    # A RAS-stored file: transform canonical -> RAS, and its inverse.
    to_ras = nio.ornt_transform(nio.axcodes2ornt(CANONICAL_AXCODES), nio.axcodes2ornt(_RAS_AXCODES))
    stored_affine = reoriented_affine(canonical_affine, to_ras, data.shape)
    stored_shape = tuple(int(data.shape[int(j)]) for j in np.argsort(to_ras[:, 0]))
    source = SourceGeometry(
        affine=stored_affine,
        shape=stored_shape,  # type: ignore[arg-type]
        header=None,
        ornt_to_canonical=invert_ornt(to_ras),
    )
    return CTVolume(
        hu=data,
        affine=canonical_affine,
        spacing=(dz, dy, dx),
        source=source,
        path=None if path is None else str(path),
    )
