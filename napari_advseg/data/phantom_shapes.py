"""Building blocks of the phantom: smooth random fields and implicit shapes on a normalised grid.

Coordinates are the phantom's normalised ones (see :mod:`napari_advseg.data.phantom`):
in-plane ``u`` (columns) and ``v`` (rows) from the slice centre in units of
half the smaller in-plane size, ``z`` from 0 at the bottom of the volume to 1
at its top. A shape's implicit function is below 1 inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NOISE_CLIP", "Blob", "Field", "Grid", "Tube", "bspline_weights"]

NOISE_CLIP = 2.0
"""Boundary-perturbation noise is clipped to +-this many standard deviations."""


# --------------------------------------------------------------------------------------------------------------------
# Smooth random fields


def bspline_weights(coords: np.ndarray, lo: float, hi: float, cell: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Cubic B-spline interpolation from a regular lattice to ``coords``.

    Parameters
    ----------
    coords : numpy.ndarray
        1-D sample positions (normalised units).
    lo, hi : float
        Extent of the domain the lattice must cover (normalised units); the
        lattice size depends only on these and ``cell``, not on ``coords``.
    cell : float
        Lattice spacing (normalised units).

    Returns
    -------
    first : numpy.ndarray
        int64, shape ``(len(coords),)``: index of the first of the four
        lattice nodes that each sample depends on.
    weights : numpy.ndarray
        float32, shape ``(4, len(coords))``: the four weights (they sum to 1).
    n : int
        Number of lattice nodes.
    """
    start = lo - 1.5 * cell
    n = int(math.ceil((hi - start) / cell)) + 3
    t = np.clip((np.asarray(coords, np.float64) - start) / cell, 1.0, n - 3.0 - 1e-9)
    i = np.floor(t).astype(np.int64)
    f = t - i
    f2, f3 = f * f, f * f * f
    weights = np.stack([(1 - f) ** 3 / 6, (3 * f3 - 6 * f2 + 4) / 6, (-3 * f3 + 3 * f2 + 3 * f + 1) / 6, f3 / 6])
    return i - 1, weights.astype(np.float32), n


class Grid:
    """Normalised voxel-centre coordinates of a ``(Z, Y, X)`` array."""

    def __init__(self, shape: tuple[int, int, int]):
        nz, ny, nx = shape
        self.shape = shape
        self.scale = min(ny, nx) / 2.0  # pixels per normalised unit
        self.z = (np.arange(nz) + 0.5) / nz
        self.v = ((np.arange(ny) + 0.5 - ny / 2.0) / self.scale).astype(np.float32)
        self.u = ((np.arange(nx) + 0.5 - nx / 2.0) / self.scale).astype(np.float32)
        self.v_half = ny / 2.0 / self.scale
        self.u_half = nx / 2.0 / self.scale

    def box(self, cu: float, cv: float, half_u: float, half_v: float) -> tuple[slice, slice] | None:
        """Rows and columns covering a rectangle (normalised units), or None when it is outside the slice."""
        s = self.scale
        ny, nx = self.shape[1:]
        x0 = max(int(math.floor((cu - half_u) * s + nx / 2.0)), 0)
        x1 = min(int(math.ceil((cu + half_u) * s + nx / 2.0)) + 1, nx)
        y0 = max(int(math.floor((cv - half_v) * s + ny / 2.0)), 0)
        y1 = min(int(math.ceil((cv + half_v) * s + ny / 2.0)) + 1, ny)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)


class Field:
    """Smooth Gaussian random field (roughly unit variance) from cubic B-splines on a coarse lattice.

    ``cell_uv`` and ``cell_z`` (normalised units) set the feature size: the
    field varies over about one lattice cell.
    """

    def __init__(self, rng: np.random.Generator, grid: Grid, cell_uv: float, cell_z: float):
        self.iz, self.wz, nz = bspline_weights(grid.z, 0.0, 1.0, cell_z)
        self.iy, self.wy, ny = bspline_weights(grid.v, -grid.v_half, grid.v_half, cell_uv)
        self.ix, self.wx, nx = bspline_weights(grid.u, -grid.u_half, grid.u_half, cell_uv)
        # 3.0 undoes the variance lost by cubic B-spline smoothing in three dimensions.
        self.coef = rng.standard_normal((nz, ny, nx), dtype=np.float32) * 3.0
        self._k = -1
        self._plane = np.empty((ny, nx), np.float32)

    def __call__(self, k: int, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """The field on slice ``k`` (float32, over ``rows`` x ``cols``).

        Evaluated separably with the four non-zero B-spline taps per axis
        (plain numpy gathers, no BLAS, so no thread start-up cost).
        """
        if k != self._k:
            i = self.iz[k]
            self._plane = sum(self.wz[j, k] * self.coef[i + j] for j in range(4))
            self._k = k
        iy, wy = self.iy[rows], self.wy[:, rows]
        lo, hi = int(iy[0]), int(iy[-1]) + 4  # only the lattice rows these image rows need
        iy = iy - lo
        ix, wx = self.ix[cols], self.wx[:, cols]
        plane = self._plane[lo:hi]
        tmp = sum(wx[j][None, :] * plane[:, ix + j] for j in range(4))  # (lattice rows, cols)
        return sum(wy[j][:, None] * tmp[iy + j] for j in range(4))


# --------------------------------------------------------------------------------------------------------------------
# Implicit shapes: value < 1 inside


@dataclass
class Blob:
    """An ellipsoid (normalised units) whose in-plane centre drifts linearly with z.

    ``angle`` (radians) turns the ``ru`` axis from +u towards +v; ``amp`` is the
    strength of the boundary perturbation from ``field`` (about ``amp / 2``
    relative change of radius per standard deviation of the field).
    """

    cu: float
    cv: float
    cz: float
    ru: float
    rv: float
    rz: float
    angle: float = 0.0
    du_dz: float = 0.0
    dv_dz: float = 0.0
    field: Field | None = None
    amp: float = 0.0

    def margin(self) -> float:
        """Largest factor by which the perturbation can stretch the radii."""
        return math.sqrt(1.0 + self.amp * NOISE_CLIP)

    def centre(self, z: float) -> tuple[float, float]:
        return self.cu + self.du_dz * (z - self.cz), self.cv + self.dv_dz * (z - self.cz)

    def box(self, grid: Grid, z: float) -> tuple[slice, slice] | None:
        """Rows and columns that hold the whole cross-section at height ``z``, or None if it misses the slice."""
        m = self.margin()
        if abs(z - self.cz) >= self.rz * m:
            return None
        cu, cv = self.centre(z)
        r = max(self.ru, self.rv) * m
        return grid.box(cu, cv, r, r)

    def frame(self, grid: Grid, z: float, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates along the two (rotated) axes, in units of the radii."""
        cu, cv = self.centre(z)
        du = grid.u[box[1]][None, :] - cu
        dv = grid.v[box[0]][:, None] - cv
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (du * c + dv * s) / self.ru, (dv * c - du * s) / self.rv

    def value(self, grid: Grid, k: int, box: tuple[slice, slice]) -> np.ndarray:
        """Implicit function on slice ``k`` over ``box``: below 1 inside."""
        f, pert = self.parts(grid, k, box)
        return f + pert

    def parts(self, grid: Grid, k: int, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray | float]:
        """The plain ellipsoid function and the boundary perturbation (in [-amp * 2, amp * 2])."""
        z = grid.z[k]
        a, b = self.frame(grid, z, box)
        f = a * a + b * b + np.float32(((z - self.cz) / self.rz) ** 2)
        pert = 0.0
        if self.field is not None and self.amp:
            pert = self.amp * np.clip(self.field(k, *box), -NOISE_CLIP, NOISE_CLIP)
        return f, pert


@dataclass
class Tube:
    """A tube whose centre line runs along u from ``u0`` to ``u1`` (normalised units).

    The centre line's v follows a parabola through ``v0``, ``vm``, ``v1`` (at
    the ends and the middle), its z a straight line from ``z0`` to ``z1``; the
    half-thicknesses ``rv`` and ``rz`` change linearly from end to end. The ends
    are rounded off by a high power of the position along the tube.
    """

    u0: float
    u1: float
    v0: float
    vm: float
    v1: float
    z0: float
    z1: float
    rv0: float
    rv1: float
    rz0: float
    rz1: float
    field: Field | None = None
    amp: float = 0.0
    end_power: int = 8

    def box(self, grid: Grid, z: float) -> tuple[slice, slice] | None:
        m = math.sqrt(1.0 + self.amp * NOISE_CLIP)
        rz = max(self.rz0, self.rz1) * m
        if z <= min(self.z0, self.z1) - rz or z >= max(self.z0, self.z1) + rz:
            return None
        rv = max(self.rv0, self.rv1) * m
        vs = self._centre_v(np.linspace(-1.0, 1.0, 65))
        vlo, vhi = float(vs.min()) - 0.01, float(vs.max()) + 0.01
        hu = (self.u1 - self.u0) / 2 * m
        return grid.box((self.u0 + self.u1) / 2, (vlo + vhi) / 2, hu, (vhi - vlo) / 2 + rv)

    def _centre_v(self, t: np.ndarray) -> np.ndarray:
        """v of the centre line at positions ``t`` in [-1, 1] along the tube (parabola through v0, vm, v1)."""
        return self.vm + t * (self.v1 - self.v0) / 2 + t * t * ((self.v0 + self.v1) / 2 - self.vm)

    def value(self, grid: Grid, k: int, box: tuple[slice, slice]) -> np.ndarray:
        """Implicit function on slice ``k`` over ``box``: below 1 inside."""
        z = grid.z[k]
        t = (grid.u[box[1]] - (self.u0 + self.u1) / 2) / ((self.u1 - self.u0) / 2)
        tc = np.clip(t, -1.0, 1.0)
        vc = self._centre_v(tc)
        w = (tc + 1) / 2
        zc = self.z0 + w * (self.z1 - self.z0)
        rv = self.rv0 + w * (self.rv1 - self.rv0)
        rz = self.rz0 + w * (self.rz1 - self.rz0)
        dv = (grid.v[box[0]][:, None] - vc[None, :]) / rv[None, :]
        f = dv * dv + (((z - zc) / rz) ** 2 + t ** self.end_power)[None, :]
        if self.field is not None and self.amp:
            f += self.amp * np.clip(self.field(k, *box), -NOISE_CLIP, NOISE_CLIP)
        return f.astype(np.float32, copy=False)
