"""How much an attack's fields jump from one axial slice to the next.

G works slice by slice, so nothing ties the fields of neighbouring slices
together but the slices themselves and the latent codes. A field that jumps
between slices shows as stripes in a coronal or sagittal reformat. The
measure here compares the through-plane change of a field with its in-plane
change, so it does not depend on how strong the field is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_advseg.errors import AdvsegError


def _difference_size(difference: np.ndarray, vector: bool) -> np.ndarray:
    """|d| per voxel: the absolute value, or the Euclidean norm over the last axis of a vector field."""
    return np.linalg.norm(difference, axis=-1) if vector else np.abs(difference)


def field_discontinuity(field: np.ndarray, slices: Sequence[int] | None = None,
                        vector: bool = False) -> dict[str, float]:
    """Inter-slice discontinuity of one field volume.

    With ``f`` the field, ``|.|`` the absolute value (a scalar field) or the
    Euclidean norm of the components (a vector field), and ``S`` the attacked
    slices::

        through_plane = mean over voxels (y, x) and pairs (z, z+1) with both z and z+1 in S
                        of |f(z+1, y, x) - f(z, y, x)|
        in_plane      = (G_y + G_x) / 2, where, over the slices z in S,
                        G_y = mean |f(z, y+1, x) - f(z, y, x)|, G_x = mean |f(z, y, x+1) - f(z, y, x)|
        ratio         = through_plane / in_plane

    Differences are per voxel step, not per millimetre. A field constant along
    z has ratio 0; a field that is drawn afresh for each slice has a ratio
    well above 1 (its through-plane change is as large as the field itself,
    its in-plane change is small since the fields are smooth). ``ratio`` is 0
    when the field does not change through the plane and ``inf`` when it only
    changes through the plane.

    Parameters
    ----------
    field : (Z, Y, X) or, with ``vector``, (Z, Y, X, C) float array
    slices : sequence of int, optional
        The attacked slices ``S`` (default: all); slices left out hold no field.
    vector : bool
        The last axis holds the components of a vector field.

    Returns
    -------
    dict with ``ratio``, ``through_plane``, ``in_plane`` and ``pairs`` (the
    number of neighbouring attacked slice pairs; ratio and through_plane are
    NaN without any).
    """
    field = np.asarray(field, dtype=np.float32)
    if field.ndim != (4 if vector else 3):
        raise AdvsegError(f"a {'vector' if vector else 'scalar'} field volume must be "
                          f"{'(Z, Y, X, C)' if vector else '(Z, Y, X)'}, got shape {field.shape}")
    n = field.shape[0]
    index = np.arange(n) if slices is None else np.asarray(sorted({int(s) for s in slices}), dtype=int)
    if index.size == 0 or index.min() < 0 or index.max() >= n:
        raise AdvsegError(f"attacked slice indices must lie in 0..{n - 1}")
    attacked = field[index]
    g_y = float(_difference_size(np.diff(attacked, axis=1), vector).mean()) if field.shape[1] > 1 else 0.0
    g_x = float(_difference_size(np.diff(attacked, axis=2), vector).mean()) if field.shape[2] > 1 else 0.0
    in_plane = 0.5 * (g_y + g_x)
    lower = index[:-1][np.diff(index) == 1]
    if lower.size == 0:
        return {"ratio": math.nan, "through_plane": math.nan, "in_plane": in_plane, "pairs": 0}
    through = float(np.mean([_difference_size(field[z + 1] - field[z], vector).mean() for z in lower]))
    if through == 0.0:
        ratio = 0.0
    else:
        ratio = through / in_plane if in_plane > 0.0 else math.inf
    return {"ratio": ratio, "through_plane": through, "in_plane": in_plane, "pairs": int(lower.size)}


def volume_discontinuity(displacement: np.ndarray, bias: np.ndarray,
                         slices: Sequence[int] | None = None) -> dict[str, float]:
    """:func:`field_discontinuity` of an attacked volume's two fields.

    Parameters
    ----------
    displacement : (Z, Y, X, 2) float array, pixels (as ``advseg sample`` writes it)
    bias : (Z, Y, X) float array (any units: the ratio has none)
    slices : the attacked slices (default: all)

    Returns
    -------
    dict: ``bias`` and ``displacement`` (the ratios), ``bias_through_plane``,
    ``bias_in_plane``, ``displacement_through_plane``,
    ``displacement_in_plane`` (in the fields' units per voxel step) and
    ``pairs``.
    """
    phi = field_discontinuity(displacement, slices, vector=True)
    b = field_discontinuity(bias, slices)
    return {"bias": b["ratio"], "displacement": phi["ratio"],
            "bias_through_plane": b["through_plane"], "bias_in_plane": b["in_plane"],
            "displacement_through_plane": phi["through_plane"], "displacement_in_plane": phi["in_plane"],
            "pairs": b["pairs"]}
