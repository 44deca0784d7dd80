"""Reading DICOM CT series: checked, stacked and reoriented to canonical order like a NIfTI file.

A CT series is a folder of single-frame DICOM files, one axial (or sagittal,
coronal, oblique) slice each. :func:`load_dicom` reads one with pydicom:

1. :func:`find_series` (in :mod:`napari_advseg.io.dicom_series`) groups the DICOM files of a folder (searched
   recursively), of a list of files, or of a file's own folder by
   SeriesInstanceUID. Files that are not DICOM, and DICOM objects without an
   image (DICOMDIR, structured reports), are ignored. A folder with several
   image series needs a choice (:func:`choose_series`, ``advseg --series UID``,
   the napari Data tab's series list); otherwise :class:`SeveralSeriesError`
   lists them.
2. Every slice must be CT, one frame of one sample per pixel, with the first
   slice's size (Rows x Columns), pixel spacing and orientation
   (ImageOrientationPatient). The slices are sorted by the position of
   ImagePositionPatient along the slice normal (the cross product of the row
   and column directions), never by file name or InstanceNumber; they must be
   stacked straight along that normal (no gantry tilt), at distinct positions
   and evenly spaced: a gap of a whole number of spacings is reported as
   missing slices, anything else as uneven spacing. Each problem raises
   :class:`~napari_advseg.errors.InputFileError` naming the file (or the
   folder) and what is wrong.
3. Pixel values are decoded by pydicom, compressed transfer syntaxes through
   its plugins (pylibjpeg with pylibjpeg-openjpeg for JPEG 2000, and
   pylibjpeg-libjpeg for JPEG lossless and JPEG-LS; RLE by pydicom itself),
   and RescaleSlope / RescaleIntercept of each slice turn them into
   Hounsfield units.
4. The slices are stacked as a stored ``(I, J, K)`` array, ``I`` the column
   index, ``J`` the row index and ``K`` the slice (in the order of increasing
   position along the normal), with the affine DICOM defines, converted from
   its LPS patient coordinates to the RAS+ coordinates of NIfTI and nibabel
   (x and y negated). That array and affine -- what a NIfTI of the same scan
   holds -- go through :func:`napari_advseg.io.geometry.canonical_volume`,
   the same code as :func:`napari_advseg.io.nifti.load_ct`, so a DICOM series
   and the equivalent NIfTI file give the same canonical array and affine,
   and :func:`napari_advseg.io.nifti_save.save_volume` writes outputs as NIfTI
   in the series' own patient geometry (a fresh NIfTI header holds the affine
   as sform and qform, code 1 "scanner").

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import nibabel
import numpy as np

from napari_advseg.errors import InputFileError, first_line
from napari_advseg.io.geometry import CTVolume, canonical_volume
from napari_advseg.io.dicom_series import (  # noqa: F401 - the series API is part of this module's
    DICOM_SUFFIXES,
    DicomSeries,
    SeveralSeriesError,
    _Slice,
    choose_series,
    find_series,
    is_dicom_file,
    is_dicom_path,
    looks_like_dicom,
)

__all__ = [
    "DICOM_SUFFIXES",
    "DicomSeries",
    "SeveralSeriesError",
    "choose_series",
    "find_series",
    "is_dicom_file",
    "is_dicom_path",
    "load_dicom",
    "looks_like_dicom",
    "read_series",
]


ORIENTATION_ATOL = 1e-4
"""Largest difference between two slices' direction cosines that still counts as the same orientation."""

PIXEL_SPACING_ATOL_MM = 1e-4
"""Largest difference between two slices' PixelSpacing (mm) that still counts as the same."""

POSITION_TOLERANCE = 0.01
"""Slice positions may deviate from an even grid by this fraction of the slice spacing ..."""

POSITION_ATOL_MM = 0.01
"""... or by this many mm, whichever is larger (positions are written as decimal strings)."""


# ---------------------------------------------------------------------------
# Checking a series and its geometry
# ---------------------------------------------------------------------------


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v + 0.0:.6g}" for v in values) + ")"


def _most_common(slices: Sequence[_Slice], key) -> _Slice:
    """The first slice whose ``key`` most slices share: the odd ones out are then the ones named."""
    counts: dict = {}
    for s in slices:
        counts[key(s)] = counts.get(key(s), 0) + 1
    best = max(counts.values())
    return next(s for s in slices if counts[key(s)] == best)


def _check_slices(slices: Sequence[_Slice]) -> None:
    """Modality, frames, samples, size, spacing and orientation: the same and usable in every file."""
    for s in slices:
        if s.modality.upper() != "CT":
            raise InputFileError(
                s.path, f"modality {s.modality or '(none)'}, not CT: only CT series (Hounsfield units) can be read"
            )
        if s.frames != 1:
            raise InputFileError(
                s.path, f"holds {s.frames} frames (a multi-frame or enhanced CT object); only series of "
                        "single-frame slices are supported")
        if s.samples != 1:
            raise InputFileError(s.path, f"has {s.samples} samples per pixel (a colour image), not a CT slice")
        for name, value in (("ImageOrientationPatient", s.orientation), ("ImagePositionPatient", s.position),
                            ("PixelSpacing", s.pixel_spacing)):
            if value is None:
                raise InputFileError(s.path, f"has no valid {name}: the slice cannot be placed in the patient")

    size = _most_common(slices, lambda s: (s.rows, s.columns))
    spacing = _most_common(slices, lambda s: tuple(np.round(s.pixel_spacing, 4)))
    orientation = _most_common(slices, lambda s: tuple(np.round(s.orientation, 4)))
    for s in slices:
        if (s.rows, s.columns) != (size.rows, size.columns):
            raise InputFileError(
                s.path, f"is {s.rows} x {s.columns} pixels (rows x columns) but {size.path.name} is "
                        f"{size.rows} x {size.columns}: the slices differ in size")
        if not np.allclose(s.pixel_spacing, spacing.pixel_spacing, rtol=0, atol=PIXEL_SPACING_ATOL_MM):
            raise InputFileError(
                s.path, f"has PixelSpacing {_fmt(s.pixel_spacing)} mm but {spacing.path.name} has "
                        f"{_fmt(spacing.pixel_spacing)}: the slices differ in pixel size")
        if not np.allclose(s.orientation, orientation.orientation, rtol=0, atol=ORIENTATION_ATOL):
            raise InputFileError(
                s.path, f"has ImageOrientationPatient {_fmt(s.orientation)} but {orientation.path.name} has "
                        f"{_fmt(orientation.orientation)}: the slices are not parallel (mixed orientations)")
    first = slices[0]
    if min(first.rows or 0, first.columns or 0) < 1:
        raise InputFileError(first.path, f"has an empty image ({first.rows} x {first.columns} pixels)")
    if not np.all(first.pixel_spacing > 0):
        raise InputFileError(first.path, f"has PixelSpacing {_fmt(first.pixel_spacing)}: pixel sizes must be positive")
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    if (abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3
            or abs(float(row_dir @ col_dir)) > 1e-3):
        raise InputFileError(
            first.path, f"has ImageOrientationPatient {_fmt(first.orientation)}: the row and column directions "
                        "are not two perpendicular unit vectors")


def _stack_geometry(slices: Sequence[_Slice]) -> tuple[np.ndarray, np.ndarray]:
    """Sort the slices along the normal and check their spacing.

    Returns ``(order, affine_ras)``: the indices of ``slices`` from the
    lowest position along the slice normal to the highest, and the RAS+
    affine of the stored ``(column, row, slice)`` array.
    """
    first = slices[0]
    if len(slices) < 2:
        raise InputFileError(first.path, "is the only slice of its series: a CT volume needs at least 2 slices")
    row_dir = first.orientation[:3] / np.linalg.norm(first.orientation[:3])
    col_dir = first.orientation[3:] / np.linalg.norm(first.orientation[3:])
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    positions = np.array([s.position for s in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    steps = np.diff(along)
    names = [slices[i].path for i in order]

    duplicate = np.flatnonzero(steps <= POSITION_ATOL_MM)
    if duplicate.size:
        i = int(duplicate[0])
        raise InputFileError(
            names[i + 1], f"lies at the same position along the slice normal as {names[i].name} "
                          f"({along[i]:.4g} mm): duplicated slices, or several acquisitions in one series")
    typical = float(np.median(steps))
    tolerance = max(POSITION_ATOL_MM, POSITION_TOLERANCE * typical)
    for i, step in enumerate(steps):
        if abs(step - typical) <= tolerance:
            continue
        ratio = step / typical
        whole = int(round(ratio))
        if whole >= 2 and abs(step - whole * typical) <= tolerance * whole:
            raise InputFileError(
                names[i + 1], f"missing slice(s): {step:.4g} mm from the previous slice {names[i].name}, "
                              f"{whole} times the slice spacing of {typical:.4g} mm (about {whole - 1} slice(s) "
                              "missing)")
        raise InputFileError(
            names[i + 1], f"uneven slice spacing: {step:.4g} mm from the previous slice {names[i].name}, while "
                          f"the slices are {typical:.4g} mm apart elsewhere")

    # Slices must be stacked straight along the normal (no gantry tilt or shear).
    offsets = positions[order] - positions[order[0]]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    worst = int(np.argmax(drift))
    if drift[worst] > tolerance:
        raise InputFileError(
            names[worst], f"is shifted {drift[worst]:.4g} mm within the slice plane relative to {names[0].name}: "
                          "the slices are not stacked along their normal (gantry tilt or a sheared series), "
                          "which needs resampling")

    spacing = (along[-1] - along[0]) / (len(slices) - 1)
    row_spacing, column_spacing = (float(v) for v in first.pixel_spacing)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * column_spacing  # I: the column index runs along the row direction
    lps[:3, 1] = col_dir * row_spacing  # J: the row index runs along the column direction
    lps[:3, 2] = normal * spacing  # K: the slices, by increasing position along the normal
    lps[:3, 3] = positions[order[0]]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return order, ras


# ---------------------------------------------------------------------------
# Reading pixels
# ---------------------------------------------------------------------------


def _read_pixels(s: _Slice, rows: int, columns: int) -> np.ndarray:
    """One slice's pixels in HU (float64, ``(rows, columns)``), RescaleSlope/Intercept applied."""
    import pydicom

    try:
        ds = pydicom.dcmread(s.path, force=True)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001
        raise InputFileError(s.path, f"could not be read as DICOM: corrupt or truncated ({first_line(error, s.path)})") from None
    if "PixelData" not in ds:
        raise InputFileError(s.path, "holds no pixel data")
    try:
        syntax = ds.file_meta.TransferSyntaxUID
        syntax_name = f"{syntax.name} ({syntax})"
    except AttributeError:
        syntax_name = "unknown transfer syntax"
    try:
        pixels = ds.pixel_array
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - missing decoder, corrupt stream, ...
        # pydicom lists each plugin's failure (or missing dependency) on a line of its own: keep them all
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = f"{type(error).__name__}: {' '.join(lines)}" if lines else type(error).__name__
        detail = detail if len(detail) <= 400 else detail[:397] + "..."
        raise InputFileError(s.path, f"could not decode the pixel data, {syntax_name}: {detail}") from None
    if pixels.shape != (rows, columns):
        raise InputFileError(s.path, f"decoded pixel data have shape {pixels.shape}, expected {rows} x {columns}")
    try:
        slope = float(ds.get("RescaleSlope", 1.0) if ds.get("RescaleSlope") not in (None, "") else 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) if ds.get("RescaleIntercept") not in (None, "") else 0.0)
    except (TypeError, ValueError):
        raise InputFileError(s.path, "RescaleSlope / RescaleIntercept are not numbers") from None
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise InputFileError(s.path, f"unusable RescaleSlope {slope:g} / RescaleIntercept {intercept:g}")
    if slope == 1.0:
        return pixels.astype(np.float64) + intercept if intercept else pixels.astype(np.float64)
    return pixels.astype(np.float64) * slope + intercept


def _nifti_header(affine: np.ndarray, shape: tuple[int, int, int], uid: str) -> nibabel.Nifti1Header:
    """A NIfTI header with the series' affine (sform and qform, code 1 "scanner"), as its outputs get."""
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header.set_xyzt_units(xyz="mm")
    header["descrip"] = f"DICOM {uid}"[:79].encode("ascii", "replace")
    return header


def read_series(series: DicomSeries) -> CTVolume:
    """Read one series found by :func:`find_series` as a canonical CT volume.

    See the module docstring for what is checked.

    Returns
    -------
    CTVolume
        ``hu`` float32 ``(Z, Y, X)`` in canonical order, ``affine`` RAS+,
        ``path`` the folder (or file) the series was found in, ``series_uid``
        its SeriesInstanceUID, ``source`` the stored ``(column, row, slice)``
        geometry with a NIfTI header for writing outputs.

    Raises
    ------
    InputFileError
        A file that breaks a check (the message names it and the problem).
    """
    slices = series._slices
    if not slices:
        found = find_series(list(series.files))
        slices = [s for item in found for s in item._slices]
    _check_slices(slices)
    order, affine = _stack_geometry(slices)
    rows, columns = int(slices[0].rows), int(slices[0].columns)
    # Fortran order: each slice's transposed pixels are one contiguous block, and the canonical
    # array of an axial series is a mere view of it.
    stored = np.empty((columns, rows, len(slices)), dtype=np.float32, order="F")
    for k, index in enumerate(order):
        stored[:, :, k] = _read_pixels(slices[index], rows, columns).T
    header = _nifti_header(affine, stored.shape, series.uid)
    return canonical_volume(stored, affine, header, series.where, series_uid=series.uid)


def load_dicom(path: str | os.PathLike | Iterable[str | os.PathLike], series: str | None = None) -> CTVolume:
    """Load a DICOM CT series as a canonical CT volume.

    Parameters
    ----------
    path : str, path-like or sequence of them
        A folder holding the series (searched recursively), one file of the
        series (its folder is read), or the series' files.
    series : str, optional
        SeriesInstanceUID to read when there are several series.

    Returns
    -------
    CTVolume
        As :func:`read_series`.

    Raises
    ------
    SeveralSeriesError
        Several series and no ``series`` given (the message lists them).
    InputFileError
        Not DICOM, no such series, or a series that fails a check.
    """
    if not isinstance(path, (str, os.PathLike)):
        path = list(path)
    found = find_series(path)
    where = found[0].where
    return read_series(choose_series(found, series, where))
