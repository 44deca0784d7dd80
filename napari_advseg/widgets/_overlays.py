"""What the Explore tab draws over a slice, as arrays (pure numpy and scipy; no Qt, no napari).

- :func:`body_mask`: the patient's body on a slice (denser than air, holes
  such as the lungs and bowel gas filled), so that the fields are drawn
  inside it only;
- :func:`deformation_grid`: the lines of a regular grid carried by the
  displacement, drawn at a finer resolution than the slice;
- :func:`displacement_mm`: the displacement's length in millimetres;
- :func:`bias_overlay`: the bias field in HU (or % for a multiplicative
  bias), zero outside the body;
- :func:`tissue_arrows`: arrows from where tissue was to where it is shown;
- :func:`label_changes`: the pixels whose label the attack changed.
"""

from __future__ import annotations

import math

import numpy as np

BODY_HU = -500.0
"""Pixels denser than this (and the holes they enclose) are the body."""

GRID_STEPS_MM = (5.0, 10.0, 20.0, 25.0, 50.0, 100.0)
"""Spacings the deformation grid chooses from."""

GRID_LINES = 16
"""About this many grid lines across the slice's width."""

GRID_PIXELS = 512
"""The grid is drawn on a finer raster, about this many pixels across (at most 4 per slice pixel)."""


def body_mask(hu: np.ndarray, threshold: float = BODY_HU) -> np.ndarray:
    """``(H, W)`` bool: the largest connected region denser than ``threshold``, holes filled.

    The holes (lungs, bowel gas) count as body; the table and anything else
    outside the largest region does not.
    """
    from scipy import ndimage

    dense = np.asarray(hu) > threshold
    if not dense.any():
        return dense
    regions, count = ndimage.label(dense)
    if count > 1:
        sizes = np.bincount(regions.ravel())
        sizes[0] = 0
        dense = regions == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(dense)


def grid_step_mm(width_mm: float, lines: int = GRID_LINES) -> float:
    """The grid spacing from :data:`GRID_STEPS_MM` that gives closest to ``lines`` lines over ``width_mm``."""
    width_mm = max(float(width_mm), 1e-6)
    return min(GRID_STEPS_MM, key=lambda step: abs(math.log(width_mm / step / lines)))


def grid_factor(shape) -> int:
    """Raster pixels per slice pixel for the grid: 1 to 4, so that the raster is about :data:`GRID_PIXELS` wide."""
    return int(np.clip(GRID_PIXELS // max(int(s) for s in shape), 1, 4))


def _upsampled(field: np.ndarray, factor: int) -> np.ndarray:
    """``field`` (H, W) sampled at the centres of a ``factor``-times finer raster (bilinear, edges held)."""
    if factor == 1:
        return np.asarray(field, np.float32)
    from scipy import ndimage

    return ndimage.zoom(np.asarray(field, np.float32), factor, order=1, mode="nearest", grid_mode=True)


def deformation_grid(displacement: np.ndarray, step_px: tuple[float, float], factor: int = 1,
                     mask: np.ndarray | None = None, width: float | None = None) -> np.ndarray:
    """The lines of a regular grid as the deformation carries them: ``(factor*H, factor*W)`` float32 in [0, 1].

    The image shown at pixel ``p`` is the clean slice at ``p + phi(p)``, so
    the grid line through the clean slice's row ``r`` is drawn where
    ``p + phi(p)`` lies on it; without a deformation it is the regular grid.

    Parameters
    ----------
    displacement : (2, H, W) pixels (dy, dx), as :class:`~napari_advseg.attack.explore.SliceView` has it
    step_px : grid spacing along rows and columns, slice pixels
    factor : raster pixels per slice pixel (:func:`grid_factor`)
    mask : (H, W) bool or None: the body on the clean slice; the lines are drawn where they carry it
    width : line width in raster pixels (anti-aliased); default 1 for an odd ``factor``, 2 for an even one
        (whose lines fall between two raster pixels), so that an undeformed line is drawn at full strength
    """
    if width is None:
        width = 1.0 if factor % 2 else 2.0
    displacement = np.asarray(displacement, np.float32)
    h, w = displacement.shape[1:]
    fine_rows = (np.arange(h * factor, dtype=np.float32) + 0.5) / factor - 0.5
    fine_cols = (np.arange(w * factor, dtype=np.float32) + 0.5) / factor - 0.5
    source_rows = fine_rows[:, None] + _upsampled(displacement[0], factor)
    source_cols = fine_cols[None, :] + _upsampled(displacement[1], factor)
    lines = np.zeros((h * factor, w * factor), np.float32)
    for source, step in ((source_rows, step_px[0]), (source_cols, step_px[1])):
        t = source / step
        distance = np.abs(t - np.round(t)) * step * factor  # to the nearest line, raster pixels
        np.maximum(lines, np.clip(0.5 + width / 2 - distance, 0.0, 1.0), out=lines)
    if mask is not None:
        lines *= _sample(mask, source_rows, source_cols)
    return lines


def _sample(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``mask`` at the nearest pixels of ``(rows, cols)`` (held at the edges)."""
    h, w = mask.shape
    r = np.clip(np.rint(rows), 0, h - 1).astype(np.intp)
    c = np.clip(np.rint(cols), 0, w - 1).astype(np.intp)
    return np.asarray(mask, bool)[r, c]


def warped_mask(mask: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """A mask of the clean slice carried by the deformation (where the adversarial image shows it)."""
    displacement = np.asarray(displacement, np.float32)
    h, w = displacement.shape[1:]
    rows = np.arange(h, dtype=np.float32)[:, None] + displacement[0]
    cols = np.arange(w, dtype=np.float32)[None, :] + displacement[1]
    return _sample(mask, rows, cols)


def raster_geometry(geo: dict, factor: int) -> dict:
    """Scale and translation of a ``factor``-times finer raster over the slice of ``geo`` (same pixel edges)."""
    scale = np.asarray(geo["scale"], float).copy()
    translate = np.asarray(geo["translate"], float).copy()
    translate[-2:] += scale[-2:] * (0.5 / factor - 0.5)
    scale[-2:] /= factor
    return {"scale": tuple(scale), "translate": tuple(translate)}


def displacement_mm(displacement: np.ndarray, spacing_yx, mask: np.ndarray | None = None) -> np.ndarray:
    """``(H, W)`` float32: the displacement's length in mm (zero outside ``mask``)."""
    dy, dx = np.asarray(displacement, np.float32)
    length = np.hypot(dy * float(spacing_yx[0]), dx * float(spacing_yx[1])).astype(np.float32)
    if mask is not None:
        length *= mask
    return length


def bias_overlay(bias_display: np.ndarray, additive: bool, mask: np.ndarray | None = None) -> np.ndarray:
    """The bias field as drawn: HU (additive) or the % change (multiplicative, ``bias_display`` a factor).

    Zero outside ``mask``; zero is drawn transparent.
    """
    values = np.asarray(bias_display, np.float32)
    if not additive:
        values = 100.0 * (values - 1.0)
    if mask is not None:
        values = values * mask
    return values.astype(np.float32)


def symmetric_limit(values: np.ndarray, floor: float) -> float:
    """A round bound for a display symmetric about 0 (or from 0): 1.2 times the largest value, at least ``floor``."""
    largest = float(np.max(np.abs(values), initial=0.0))
    return nice_ceiling(max(1.2 * largest, floor))


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is >= ``value`` (> 0)."""
    value = max(float(value), 1e-9)
    power = 10.0 ** math.floor(math.log10(value))
    for mantissa in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if mantissa * power >= value * (1 - 1e-9):
            return mantissa * power
    return 10.0 * power


def tissue_arrows(vectors: np.ndarray) -> np.ndarray:
    """Arrows that point the way tissue moved: from where it was (``p + phi(p)``) to where it is shown (``p``).

    ``vectors`` : (N, 2, D) napari Vectors (start, direction) whose direction is ``phi(p)`` at start ``p``.
    """
    vectors = np.asarray(vectors, np.float32)
    moved = np.empty_like(vectors)
    moved[:, 0] = vectors[:, 0] + vectors[:, 1]
    moved[:, 1] = -vectors[:, 1]
    return moved


def arrow_scale(largest_px: float, spacing_px: float) -> float:
    """How many times longer to draw the arrows: a power of two (1 to 64) that makes the longest about
    ``1.5 * spacing_px`` long, so it is visible but does not cover its neighbours."""
    if largest_px <= 0:
        return 1.0
    return float(2.0 ** int(np.clip(math.floor(math.log2(1.5 * spacing_px / largest_px)), 0, 6)))


def label_changes(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8: 1 where the network's label differs between the clean and the adversarial slice."""
    return (np.asarray(before) != np.asarray(after)).astype(np.uint8)
