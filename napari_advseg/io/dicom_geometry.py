"""The geometry of a DICOM series: its slices checked for one size, spacing and orientation, and stacked.

:func:`check_slices` requires every slice to be a usable single-frame CT
slice alike in size, pixel spacing and orientation; :func:`stack_geometry`
sorts them along the slice normal, checks that they are evenly spaced and
stacked straight, and gives the RAS+ affine of the stored array. Each problem
raises :class:`~napari_advseg.errors.InputFileError` naming the file. Header
values only: no pixel data is read here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_advseg.errors import InputFileError
from napari_advseg.io.dicom_header import SliceHeader

__all__ = ["check_slices", "stack_geometry"]


ORIENTATION_ATOL = 1e-4
"""Largest difference between two slices' direction cosines that still counts as the same orientation."""

PIXEL_SPACING_ATOL_MM = 1e-4
"""Largest difference between two slices' PixelSpacing (mm) that still counts as the same."""

POSITION_TOLERANCE = 0.01
"""Slice positions may deviate from an even grid by this fraction of the slice spacing ..."""

POSITION_ATOL_MM = 0.01
"""... or by this many mm, whichever is larger (positions are written as decimal strings)."""


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v + 0.0:.6g}" for v in values) + ")"


def _most_common(slices: Sequence[SliceHeader], key) -> SliceHeader:
    """The first slice whose ``key`` most slices share: the odd ones out are then the ones named."""
    counts: dict = {}
    for s in slices:
        counts[key(s)] = counts.get(key(s), 0) + 1
    best = max(counts.values())
    return next(s for s in slices if counts[key(s)] == best)


def check_slices(slices: Sequence[SliceHeader]) -> None:
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


def stack_geometry(slices: Sequence[SliceHeader]) -> tuple[np.ndarray, np.ndarray]:
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
