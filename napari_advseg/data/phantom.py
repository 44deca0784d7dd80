"""A seeded, deterministic synthetic abdominal CT phantom with five organ labels.

This is the project's built-in default data set: every command can run on it
without any file. :func:`make_phantom` draws one "subject" from a seed: the
body outline, fat and muscle layers, spine, vessels, bowel and the five
labelled organs (liver, spleen, both kidneys, pancreas) all vary in position,
size and shape between seeds, but always stay anatomically plausible, so a
segmentation network trained on some seeds can be tested on others.

Array order
-----------
Arrays have shape ``(Z, Y, X)``, the project's canonical order:

* axis 0 (``z``) runs inferior -> superior (feet to head); slice 0 is the
  lowest one;
* axis 1 (``y``, rows) runs anterior -> posterior: row 0 is the patient's
  front, so the belly is at the top of an image;
* axis 2 (``x``, columns) runs from the patient's RIGHT to the patient's LEFT.

Shown as an image (row 0 at the top, column 0 at the left), a slice
``hu[z]`` is therefore in the radiological convention: the liver (patient's
right) is on the left of the image, the spleen (patient's left) on the right,
the spine at the bottom and the belly at the top.

Geometry
--------
All anatomy is defined in normalised coordinates and scaled with the array
size, so any shape works (``(8, 64, 64)`` for tests, ``(300, 512, 512)`` for
benchmarks); ``spacing`` is only recorded, it does not change the drawing.
In-plane, ``u`` (columns) and ``v`` (rows) are measured from the centre of
the slice in units of half the smaller in-plane size; ``z`` runs from 0 at the
bottom of the volume to 1 at its top. For square slices the smooth random
fields are laid out on the same normalised lattice whatever the resolution,
so one seed gives the same subject at every square in-plane size.

Each organ is the zero level set of an implicit function (an ellipsoid, a
union or difference of ellipsoids, or a tube along a curved centre line)
plus smooth low-frequency noise that perturbs its boundary. Organs are drawn
in a fixed priority order, later ones over earlier ones; the label volume
records exactly which voxels were last drawn as which organ, so labels never
overlap and always match the drawn tissue.

Only numpy and the standard library are used. Volumes are built one axial
slice at a time in float32, so memory stays near the size of the output.

Modules
-------
:mod:`~napari_advseg.data.phantom_shapes` holds the smooth random fields and
implicit shapes, :mod:`~napari_advseg.data.phantom_anatomy` the random draws of
one subject (and the organ label values), and
:mod:`~napari_advseg.data.phantom_render` draws its slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.data.phantom_anatomy import Subject
from napari_advseg.data.phantom_render import render

__all__ = ["Phantom", "make_phantom"]


@dataclass(frozen=True)
class Phantom:
    """One synthetic abdominal CT volume and its organ labels.

    Attributes
    ----------
    hu : numpy.ndarray
        int16, shape ``(Z, Y, X)``: CT numbers in Hounsfield units (HU),
        clipped to [-1024, 3071]. Axis order: inferior -> superior,
        anterior -> posterior, patient's right -> patient's left.
    labels : numpy.ndarray
        uint8, shape ``(Z, Y, X)``: 0 background, 1 liver, 2 spleen,
        3 kidney_left, 4 kidney_right, 5 pancreas.
    spacing : tuple of float
        Voxel size ``(dz, dy, dx)`` in millimetres.
    seed : int
        The seed the phantom was drawn from.
    class_names : tuple of str
        Name of each label value (``napari_advseg.ORGAN_CLASSES``).
    """

    hu: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    seed: int
    class_names: tuple[str, ...]


def make_phantom(seed: int = 0, shape: tuple[int, int, int] = (48, 128, 128),
                 spacing: tuple[float, float, float] = (5.0, 3.0, 3.0)) -> Phantom:
    """Draw a synthetic abdominal CT volume and its organ labels.

    Parameters
    ----------
    seed : int
        Random seed; the same seed and shape always give identical arrays.
        Different seeds give different subjects (position, size and shape of
        the body and organs, tissue CT numbers, noise).
    shape : tuple of int
        ``(Z, Y, X)`` in voxels. The anatomy scales with the array size: the
        volume always spans from the pelvis brim (slice 0) to the lung bases
        (last slice). Every organ is present at the default shape and at
        shapes down to about ``(8, 64, 64)``.
    spacing : tuple of float
        ``(dz, dy, dx)`` voxel size in millimetres, recorded in the result (it
        does not change the drawing).

    Returns
    -------
    Phantom
        ``hu`` (int16, HU, clipped to [-1024, 3071]) and ``labels`` (uint8,
        values 0..5), both of shape ``shape`` in (inferior -> superior,
        anterior -> posterior, patient's right -> left) order.

    Raises
    ------
    ValueError
        If ``shape`` is not three positive integers (each in-plane size at
        least 16) or ``spacing`` is not three positive numbers.
    """
    if len(shape) != 3 or any(int(n) != n or n < 1 for n in shape):
        raise ValueError(f"shape must be three positive integers (Z, Y, X), got {shape!r}")
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    if min(shape[1:]) < 16:
        raise ValueError(f"in-plane size must be at least 16 x 16 voxels, got {shape!r}")
    if len(spacing) != 3 or any(not float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers in mm (dz, dy, dx), got {spacing!r}")
    seed = int(seed)
    hu, labels = render(Subject(seed, shape))
    return Phantom(hu=hu, labels=labels, spacing=tuple(float(s) for s in spacing), seed=seed,
                   class_names=tuple(ORGAN_CLASSES))
