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
from pathlib import Path

import numpy as np

from napari_advseg.errors import InputFileError
from napari_advseg.io.dicom_header import SliceHeader

__all__ = ["check_slices", "image_problem", "stack_geometry"]


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


def image_problem(slices: Sequence[SliceHeader]) -> tuple[Path, str] | None:
    """The first reason these images cannot make a CT volume, as ``(file, problem)``; None when usable.

    Modality CT; one sample per pixel; a multi-frame object's frames placed
    by its functional groups; ImageOrientationPatient, ImagePositionPatient
    and PixelSpacing in every image.
    """
    for s in slices:
        if not s.modality:
            return s.path, (f"has no Modality (0008,0060) and is a {s.sop_class_name} object, not CT: only CT "
                            "series (Hounsfield units) can be read")
        if s.modality.upper() != "CT":
            return s.path, f"modality {s.modality}, not CT: only CT series (Hounsfield units) can be read"
        if s.frames != 1 and s.frame is None:
            return s.path, (f"holds {s.frames} frames without per-frame positions (no "
                            "PerFrameFunctionalGroupsSequence): the frames cannot be placed in the patient")
        if s.samples != 1:
            return s.path, f"has {s.samples} samples per pixel (a colour image), not a CT slice"
        for name, value in (("ImageOrientationPatient (0020,0037)", s.orientation),
                            ("ImagePositionPatient (0020,0032)", s.position),
                            ("PixelSpacing (0028,0030)", s.pixel_spacing)):
            if value is None:
                return s.path, f"has no valid {name}: the slice cannot be placed in the patient"
    return None


def check_slices(slices: Sequence[SliceHeader]) -> None:
    """Modality, frames, samples, size, spacing and orientation: the same and usable in every image."""
    problem = image_problem(slices)
    if problem is not None:
        raise InputFileError(*problem)

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
        return np.zeros(1, dtype=int), _single_slice_affine(first)
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
    labels = [_name(slices[i]) for i in order]
    frames = [_frame(slices[i]) for i in order]

    duplicate = np.flatnonzero(steps <= POSITION_ATOL_MM)
    if duplicate.size:
        i = int(duplicate[0])
        raise InputFileError(
            names[i + 1], f"{frames[i + 1]}lies at the same position along the slice normal as {labels[i]} "
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
                names[i + 1], f"{frames[i + 1]}missing slice(s): {step:.4g} mm from the previous slice {labels[i]}, "
                              f"{whole} times the slice spacing of {typical:.4g} mm (about {whole - 1} slice(s) "
                              "missing)")
        raise InputFileError(
            names[i + 1], f"{frames[i + 1]}uneven slice spacing: {step:.4g} mm from the previous slice {labels[i]}, "
                          f"while the slices are {typical:.4g} mm apart elsewhere")

    # Slices must be stacked straight along the normal (no gantry tilt or shear).
    offsets = positions[order] - positions[order[0]]
    in_plane = offsets - np.outer(offsets @ normal, normal)
    drift = np.linalg.norm(in_plane, axis=1)
    worst = int(np.argmax(drift))
    if drift[worst] > tolerance:
        raise InputFileError(
            names[worst], f"{frames[worst]}is shifted {drift[worst]:.4g} mm within the slice plane relative to "
                          f"{labels[0]}: the slices are not stacked along their normal (gantry tilt or a sheared "
                          "series), which needs resampling")

    spacing = (along[-1] - along[0]) / (len(slices) - 1)
    return order, _affine(first, normal, spacing, positions[order[0]])


def _affine(first: SliceHeader, normal: np.ndarray, spacing: float, origin: np.ndarray) -> np.ndarray:
    """RAS+ affine of the stored (column, row, slice) array: DICOM's LPS one with x and y negated."""
    row_dir = first.orientation[:3] / np.linalg.norm(first.orientation[:3])
    col_dir = first.orientation[3:] / np.linalg.norm(first.orientation[3:])
    row_spacing, column_spacing = (float(v) for v in first.pixel_spacing)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * column_spacing  # I: the column index runs along the row direction
    lps[:3, 1] = col_dir * row_spacing  # J: the row index runs along the column direction
    lps[:3, 2] = normal * spacing  # K: the slices, by increasing position along the normal
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _single_slice_affine(s: SliceHeader) -> np.ndarray:
    """A one-slice volume: its thickness is SpacingBetweenSlices, else SliceThickness (as dcm2niix takes it)."""
    thickness = next((v for v in (s.spacing_between_slices, s.slice_thickness) if v is not None and v > 0), None)
    if thickness is None:
        raise InputFileError(
            s.path, f"{_frame(s)}is the only slice of its series and has neither SliceThickness nor "
                    "SpacingBetweenSlices: the volume's third axis is unknown (a volume needs 2 slices, or one "
                    "with its thickness)")
    row_dir = s.orientation[:3] / np.linalg.norm(s.orientation[:3])
    col_dir = s.orientation[3:] / np.linalg.norm(s.orientation[3:])
    normal = np.cross(row_dir, col_dir)
    return _affine(s, normal / np.linalg.norm(normal), float(thickness), s.position)


def _name(s: SliceHeader) -> str:
    """A slice in messages: its file name, and its frame in a multi-frame file."""
    return s.path.name if s.frame is None else f"frame {s.frame + 1} of {s.path.name}"


def _frame(s: SliceHeader) -> str:
    """"frame N: " before a message about one frame of a multi-frame file ("" for a single-frame file)."""
    return "" if s.frame is None else f"frame {s.frame + 1}: "
