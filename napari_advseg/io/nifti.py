"""CT volumes and label maps: loading, checking, reorienting, saving, scaling.

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

Files in any orientation are reoriented to this order on loading with
:mod:`nibabel.orientations` (``io_orientation``, ``axcodes2ornt``,
``ornt_transform``, ``apply_orientation``, ``inv_ornt_aff``). The flips and
axis swaps are exact (no resampling); an oblique affine is mapped to the
nearest canonical axes and stays oblique in :attr:`CTVolume.affine`. What is
needed to undo this -- the stored affine, shape, header and orientation
transform -- is kept in :class:`SourceGeometry`, and :func:`save_volume`
writes arrays back in the input's own orientation, shape, affine (sform and
qform, with their codes) and header, so a saved volume overlays the original
exactly in any viewer.

Affines map voxel indices to world coordinates in RAS+ millimetres, as in
nibabel. Label maps are ``uint8`` arrays on the same canonical grid, with the
values of the class map (by default :data:`napari_advseg.ORGAN_CLASSES`).

Every problem with a user's file raises :class:`~napari_advseg.errors.InputFileError`
whose one-line message names the file and the problem.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import uuid
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import nibabel
import numpy as np
from nibabel import orientations as nio
from nibabel.filebasedimages import ImageFileError

from napari_advseg.data.organs import ORGAN_CLASSES
from napari_advseg.errors import AdvsegError, InputFileError, first_line

__all__ = [
    "CANONICAL_AXCODES",
    "SPLIT_PARTS",
    "CTVolume",
    "IntensityScale",
    "SourceGeometry",
    "check_labels",
    "fit_intensity_scale",
    "load_ct",
    "load_labels",
    "organ_slices",
    "save_volume",
    "split_slices",
    "volume_from_array",
]

CANONICAL_AXCODES: tuple[str, str, str] = ("S", "P", "L")
"""nibabel axis codes of the canonical ``(Z, Y, X)`` array order."""

_RAS_AXCODES: tuple[str, str, str] = ("R", "A", "S")

AFFINE_ATOL_MM = 1e-3
"""Largest difference (mm) between two affines that still counts as the same grid."""

SPLIT_PARTS = ("all", "train", "test")
"""Parts accepted by :func:`split_slices`."""

_MAX_LISTED_VALUES = 8


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
        made in memory: :func:`save_volume` then writes a fresh header.
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
        Geometry of the file the volume came from, for :func:`save_volume`.
    path : str or None
        The file the volume was read from, if any.
    """

    hu: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    source: SourceGeometry
    path: str | None = None

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


def _invert_ornt(ornt: np.ndarray) -> np.ndarray:
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


def _canonical_transform(affine: np.ndarray) -> np.ndarray | None:
    """Orientation transform stored -> canonical ``('S', 'P', 'L')``, or ``None``."""
    ornt = _stored_orientation(affine)
    if ornt is None:
        return None
    return nio.ornt_transform(ornt, nio.axcodes2ornt(CANONICAL_AXCODES))


def _reoriented_affine(affine: np.ndarray, transform: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Affine of ``apply_orientation(array, transform)`` for an array with ``affine``."""
    return np.asarray(affine, dtype=np.float64) @ nio.inv_ornt_aff(transform, tuple(shape))


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) along each array axis: the lengths of the affine's columns."""
    sizes = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


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


def _count_nonfinite(array: np.ndarray) -> int:
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


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
    transform = _canonical_transform(affine)
    if transform is None:
        raise InputFileError(path, "the affine (sform/qform) is degenerate: its voxel axes do not span 3D space")

    data = _read_data(path, image, dtype=np.float32).reshape(shape)
    bad = _count_nonfinite(data)
    if bad:
        raise InputFileError(path, f"holds {bad} NaN or infinite voxel value(s) (after scl_slope/scl_inter)")

    hu = np.ascontiguousarray(nio.apply_orientation(data, transform), dtype=np.float32)
    canonical_affine = _reoriented_affine(affine, transform, shape)
    spacing = _spacing(canonical_affine)
    if min(spacing) <= 0:
        raise InputFileError(path, f"the affine gives a zero voxel size (spacing {spacing} mm)")
    source = SourceGeometry(
        affine=affine,
        shape=shape,
        header=image.header.copy(),
        ornt_to_canonical=transform,
    )
    return CTVolume(hu=hu, affine=canonical_affine, spacing=spacing, source=source, path=str(path))


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
        :func:`save_volume` writes such a volume as an ``(X, Y, Z)`` array
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
    bad = _count_nonfinite(data)
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
    stored_affine = _reoriented_affine(canonical_affine, to_ras, data.shape)
    stored_shape = tuple(int(data.shape[int(j)]) for j in np.argsort(to_ras[:, 0]))
    source = SourceGeometry(
        affine=stored_affine,
        shape=stored_shape,  # type: ignore[arg-type]
        header=None,
        ornt_to_canonical=_invert_ornt(to_ras),
    )
    return CTVolume(
        hu=data,
        affine=canonical_affine,
        spacing=(dz, dy, dx),
        source=source,
        path=None if path is None else str(path),
    )


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def _list_values(values: np.ndarray) -> str:
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
        transform = _canonical_transform(affine)
        same_canonical = False
        if transform is not None:
            canonical_shape = nio.apply_orientation(np.empty(shape, dtype=np.uint8), transform).shape
            canonical_affine = _reoriented_affine(affine, transform, shape)
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


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------


def _nifti_suffix(path: pathlib.Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    if name.endswith(".nii"):
        return ".nii"
    raise AdvsegError(f"{path}: the output file name must end in .nii or .nii.gz")


def _cast_for_saving(array: np.ndarray, dtype, path: pathlib.Path) -> np.ndarray:
    """Cast to the on-disk type so that nibabel writes the values as they are (no scaling)."""
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise AdvsegError(f"{path}: cannot save data of type {array.dtype}; expected real numbers")
    if dtype is None:
        target = array.dtype
        if target in (np.dtype(np.int64), np.dtype(np.uint64)):
            target = np.dtype(np.int32)  # 64-bit integers are poorly supported by NIfTI readers
    else:
        try:
            target = np.dtype(dtype)
        except TypeError:
            raise AdvsegError(f"{path}: unknown data type {dtype!r}") from None
    if target == np.bool_:
        target = np.dtype(np.uint8)

    if np.issubdtype(array.dtype, np.floating):
        bad = _count_nonfinite(array)
        if bad:
            raise AdvsegError(f"{path}: refusing to save {bad} NaN or infinite value(s)")
    if np.issubdtype(target, np.integer):
        values = np.rint(array) if np.issubdtype(array.dtype, np.floating) else array
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise AdvsegError(
                f"{path}: values {values.min():g}..{values.max():g} do not fit data type {target} "
                f"({info.min}..{info.max})"
            )
        return values.astype(target)
    if np.issubdtype(target, np.floating):
        out = array.astype(target)
        if _count_nonfinite(out):
            raise AdvsegError(f"{path}: values overflow data type {target}")
        return out
    raise AdvsegError(f"{path}: cannot save as data type {target}; choose an integer or float type")


def _fresh_header(affine: np.ndarray) -> nibabel.Nifti1Header:
    header = nibabel.Nifti1Header()
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header.set_xyzt_units(xyz="mm")
    return header


def save_volume(
    array: np.ndarray,
    like: CTVolume,
    path: str | os.PathLike,
    *,
    dtype=None,
    overwrite: bool = False,
    intent: str | None = None,
) -> pathlib.Path:
    """Write a canonical array back in the geometry of the file ``like`` came from.

    Parameters
    ----------
    array : array_like
        ``(Z, Y, X)`` or ``(Z, Y, X, C)`` array on the canonical grid of
        ``like`` (always the whole volume). The voxel axes are flipped and
        permuted back to the source file's order; a component axis ``C``
        stays last (so the file is 4D). Only the grid is reoriented: vector
        components (e.g. a ``(dy, dx)`` displacement in canonical voxels) are
        stored as they are, still in canonical-axis terms.
    like : CTVolume
        Supplies the source affine, shape and header.
    path : str or path-like
        Output file; ``.nii`` or ``.nii.gz`` (gzip compressed). Missing
        parent folders are created.
    dtype : numpy dtype, optional
        On-disk data type; default the array's own (bool -> uint8, 64-bit
        integers -> int32). Float data saved as an integer type are rounded
        to the nearest integer; values must fit the type. No intensity
        scaling (``scl_slope``) is ever applied, so values are stored exactly.
    overwrite : bool, optional
        Replace an existing file. Default False: an existing file is an error.
    intent : str, optional
        NIfTI intent to record (e.g. ``"label"``, ``"vector"``, as accepted by
        ``Nifti1Header.set_intent``). Default: none (the source header's
        intent is cleared, as are its display range ``cal_min``/``cal_max``).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    AdvsegError
        Wrong shape, unsupported values or type, existing file without
        ``overwrite``, a bad file name, or a failed write. The file is written
        atomically (to a temporary file in the same folder, then renamed over
        ``path``), so a failure never leaves a partial or temporary file.

    Notes
    -----
    The header is a copy of the source header, so the sform and qform keep
    their values and codes, along with units, ``descrip`` and the like. For
    volumes from :func:`volume_from_array` (no source header) a fresh header
    is written with the RAS affine as both sform and qform (code 1).
    """
    path = pathlib.Path(path)
    suffix = _nifti_suffix(path)
    if path.is_dir():
        raise AdvsegError(f"{path}: is a folder; give a file name ending in .nii or .nii.gz")
    if path.exists() and not overwrite:
        raise AdvsegError(f"{path}: file already exists (pass overwrite=True to replace it)")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AdvsegError(f"{path}: cannot create the output folder {folder} ({first_line(error)})") from None

    data = np.asarray(array)
    if data.ndim not in (3, 4) or data.shape[:3] != like.shape:
        raise AdvsegError(
            f"{path}: expected an array of shape {like.shape} or {like.shape + ('C',)} (Z, Y, X[, C]), "
            f"got {data.shape}"
        )
    data = _cast_for_saving(data, dtype, path)

    source = like.source
    stored = nio.apply_orientation(data, _invert_ornt(source.ornt_to_canonical))
    if tuple(stored.shape[:3]) != tuple(source.shape):  # pragma: no cover - internal consistency
        raise AdvsegError(f"{path}: internal error: reoriented shape {stored.shape} != source {source.shape}")
    stored = np.ascontiguousarray(stored)

    if source.header is not None:
        header = source.header.copy()
    else:
        header = _fresh_header(source.affine)
    try:
        image = nibabel.Nifti1Image(stored, source.affine, header=header, dtype=stored.dtype)
        out_header = image.header
        # Keep the sform and qform exactly as in the source, with their codes.
        if source.header is not None:
            for key in (
                "sform_code",
                "qform_code",
                "srow_x",
                "srow_y",
                "srow_z",
                "quatern_b",
                "quatern_c",
                "quatern_d",
                "qoffset_x",
                "qoffset_y",
                "qoffset_z",
            ):
                out_header[key] = source.header[key]
            out_header["pixdim"][0] = source.header["pixdim"][0]
        out_header["cal_min"] = 0
        out_header["cal_max"] = 0
        if intent is None:
            out_header.set_intent("none")
        else:
            out_header.set_intent(intent)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - nibabel header errors
        raise AdvsegError(f"{path}: cannot build the NIfTI image ({first_line(error, path)})") from None

    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp{suffix}"
    try:
        nibabel.save(image, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if path.exists() and not overwrite:
            raise AdvsegError(f"{path}: file already exists (pass overwrite=True to replace it)")
        os.replace(tmp, path)
    except BaseException as error:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(error, AdvsegError) or not isinstance(error, Exception):
            raise
        raise AdvsegError(f"{path}: could not write the file ({first_line(error, path)})") from error
    return path


# ---------------------------------------------------------------------------
# Intensity scaling
# ---------------------------------------------------------------------------

NORMALISATION_MODES = ("zscore", "window")
"""How HU become network intensities: per-volume z-score, or an HU window mapped to [-1, 1]."""

DEFAULT_WINDOW: tuple[float, float] = (-200.0, 300.0)
"""The default soft-tissue HU window (window normalisation and the CT display range)."""


@dataclass(frozen=True)
class IntensityScale:
    """Map between Hounsfield units and the network's input intensities.

    ``x = (clip(hu, clip_low, clip_high) - offset) / scale``; the inverse
    (:meth:`to_hu`) is ``hu = x * scale + offset`` (values clipped away are
    not recovered).

    Attributes
    ----------
    mode : str
        ``'zscore'`` (per-volume zero mean, unit standard deviation) or
        ``'window'`` (clip to an HU window, map it to [-1, 1]).
    offset : float
        HU subtracted first (the mean, or the window centre).
    scale : float
        HU per unit of ``x`` (the standard deviation, or half the window
        width); positive.
    clip_low, clip_high : float or None
        HU clipping bounds applied before scaling; ``None`` for no bound.
    """

    mode: str
    offset: float
    scale: float
    clip_low: float | None = None
    clip_high: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in NORMALISATION_MODES:
            raise AdvsegError(f"unknown intensity scaling mode {self.mode!r}: choose one of {', '.join(NORMALISATION_MODES)}")
        try:
            offset, scale = float(self.offset), float(self.scale)
            low = None if self.clip_low is None else float(self.clip_low)
            high = None if self.clip_high is None else float(self.clip_high)
        except (TypeError, ValueError):
            raise AdvsegError(f"intensity scale values must be numbers, got {self!r}") from None
        if not (np.isfinite(offset) and np.isfinite(scale) and scale > 0):
            raise AdvsegError(
                f"intensity scale needs a finite offset and a positive scale, got offset={offset}, scale={scale}"
            )
        for bound in (low, high):
            if bound is not None and not np.isfinite(bound):
                raise AdvsegError(f"intensity clip bounds must be finite, got {low}, {high}")
        if low is not None and high is not None and low >= high:
            raise AdvsegError(f"intensity clip_low ({low}) must be below clip_high ({high})")
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "clip_low", low)
        object.__setattr__(self, "clip_high", high)

    def apply(self, hu) -> np.ndarray:
        """Hounsfield units -> network intensities.

        Parameters
        ----------
        hu : array_like
            Values in HU.

        Returns
        -------
        numpy.ndarray
            float32 array of the same shape, dimensionless.
        """
        values = np.asarray(hu, dtype=np.float32)
        if self.clip_low is not None or self.clip_high is not None:
            low = -np.inf if self.clip_low is None else self.clip_low
            high = np.inf if self.clip_high is None else self.clip_high
            values = np.clip(values, np.float32(low), np.float32(high))
        return ((values - np.float32(self.offset)) / np.float32(self.scale)).astype(np.float32, copy=False)

    def to_hu(self, x) -> np.ndarray:
        """Network intensities -> Hounsfield units (``x * scale + offset``).

        Parameters
        ----------
        x : array_like
            Dimensionless network intensities.

        Returns
        -------
        numpy.ndarray
            float32 array of HU, same shape.
        """
        values = np.asarray(x, dtype=np.float32)
        return (values * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable dictionary of the fields (HU as floats)."""
        return {
            "mode": self.mode,
            "offset": self.offset,
            "scale": self.scale,
            "clip_low": self.clip_low,
            "clip_high": self.clip_high,
        }

    @classmethod
    def from_dict(cls, d: dict) -> IntensityScale:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        AdvsegError
            Missing or unknown keys, or invalid values.
        """
        if not isinstance(d, dict):
            raise AdvsegError(f"intensity scale must be a dictionary, got {type(d).__name__}")
        allowed = {"mode", "offset", "scale", "clip_low", "clip_high"}
        missing = {"mode", "offset", "scale"} - d.keys()
        unknown = d.keys() - allowed
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(sorted(missing))}")
            if unknown:
                parts.append(f"unknown {', '.join(sorted(map(str, unknown)))}")
            raise AdvsegError(f"bad intensity scale dictionary: {'; '.join(parts)}")
        return cls(
            mode=d["mode"],
            offset=d["offset"],
            scale=d["scale"],
            clip_low=d.get("clip_low"),
            clip_high=d.get("clip_high"),
        )


def fit_intensity_scale(
    hu,
    mode: str = "zscore",
    window: tuple[float, float] = DEFAULT_WINDOW,
) -> IntensityScale:
    """Choose the intensity scaling for a volume.

    Parameters
    ----------
    hu : array_like
        The volume in HU (any shape).
    mode : {'zscore', 'window'}, optional
        ``'zscore'``: offset and scale are the mean and standard deviation of
        the whole volume (normalised per volume to zero mean and unit standard
        deviation), no clipping. ``'window'``: clip to ``window`` and map it
        linearly to [-1, 1] (offset = window centre, scale = half width);
        the data are then only checked, not used.
    window : (float, float), optional
        ``(low, high)`` HU window for ``'window'`` mode.

    Returns
    -------
    IntensityScale

    Raises
    ------
    AdvsegError
        Unknown mode, empty or non-finite data, a constant volume (standard
        deviation 0) in ``'zscore'`` mode, or a window with ``low >= high``.
    """
    if mode not in NORMALISATION_MODES:
        raise AdvsegError(f"unknown intensity scaling mode {mode!r}: choose one of {', '.join(NORMALISATION_MODES)}")
    values = np.asarray(hu)
    if values.size == 0:
        raise AdvsegError("cannot fit an intensity scale to an empty volume")
    if not np.all(np.isfinite(values)):
        raise AdvsegError("cannot fit an intensity scale: the volume holds NaN or infinite values")
    if mode == "zscore":
        mean = float(np.mean(values, dtype=np.float64))
        std = float(np.std(values, dtype=np.float64))
        if not std > 0:
            raise AdvsegError(f"cannot z-score a constant volume (every voxel is {mean:g} HU)")
        return IntensityScale(mode="zscore", offset=mean, scale=std)
    try:
        low, high = (float(w) for w in window)
    except (TypeError, ValueError):
        raise AdvsegError(f"the HU window must be two numbers (low, high), got {window!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise AdvsegError(f"the HU window must have low < high, got {window!r}")
    return IntensityScale(
        mode="window",
        offset=(low + high) / 2.0,
        scale=(high - low) / 2.0,
        clip_low=low,
        clip_high=high,
    )


# ---------------------------------------------------------------------------
# Slices
# ---------------------------------------------------------------------------


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
