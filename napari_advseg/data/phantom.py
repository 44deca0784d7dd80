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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_advseg.data.organs import ORGAN_CLASSES

__all__ = ["Phantom", "make_phantom", "LIVER", "SPLEEN", "KIDNEY_LEFT", "KIDNEY_RIGHT", "PANCREAS"]

LIVER, SPLEEN, KIDNEY_LEFT, KIDNEY_RIGHT, PANCREAS = 1, 2, 3, 4, 5
"""Label values of the five organs (index into ``ORGAN_CLASSES``)."""

HU_MIN, HU_MAX = -1024, 3071
"""Range (Hounsfield units) that ``Phantom.hu`` is clipped to."""

_NOISE_CLIP = 2.0
"""Boundary-perturbation noise is clipped to +-this many standard deviations."""


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


# --------------------------------------------------------------------------------------------------------------------
# Smooth random fields


def _bspline_weights(coords: np.ndarray, lo: float, hi: float, cell: float) -> tuple[np.ndarray, np.ndarray, int]:
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


class _Grid:
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


class _Field:
    """Smooth Gaussian random field (roughly unit variance) from cubic B-splines on a coarse lattice.

    ``cell_uv`` and ``cell_z`` (normalised units) set the feature size: the
    field varies over about one lattice cell.
    """

    def __init__(self, rng: np.random.Generator, grid: _Grid, cell_uv: float, cell_z: float):
        self.iz, self.wz, nz = _bspline_weights(grid.z, 0.0, 1.0, cell_z)
        self.iy, self.wy, ny = _bspline_weights(grid.v, -grid.v_half, grid.v_half, cell_uv)
        self.ix, self.wx, nx = _bspline_weights(grid.u, -grid.u_half, grid.u_half, cell_uv)
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
class _Blob:
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
    field: _Field | None = None
    amp: float = 0.0

    def margin(self) -> float:
        """Largest factor by which the perturbation can stretch the radii."""
        return math.sqrt(1.0 + self.amp * _NOISE_CLIP)

    def centre(self, z: float) -> tuple[float, float]:
        return self.cu + self.du_dz * (z - self.cz), self.cv + self.dv_dz * (z - self.cz)

    def box(self, grid: _Grid, z: float) -> tuple[slice, slice] | None:
        """Rows and columns that hold the whole cross-section at height ``z``, or None if it misses the slice."""
        m = self.margin()
        if abs(z - self.cz) >= self.rz * m:
            return None
        cu, cv = self.centre(z)
        r = max(self.ru, self.rv) * m
        return grid.box(cu, cv, r, r)

    def frame(self, grid: _Grid, z: float, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates along the two (rotated) axes, in units of the radii."""
        cu, cv = self.centre(z)
        du = grid.u[box[1]][None, :] - cu
        dv = grid.v[box[0]][:, None] - cv
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (du * c + dv * s) / self.ru, (dv * c - du * s) / self.rv

    def value(self, grid: _Grid, k: int, box: tuple[slice, slice]) -> np.ndarray:
        """Implicit function on slice ``k`` over ``box``: below 1 inside."""
        f, pert = self.parts(grid, k, box)
        return f + pert

    def parts(self, grid: _Grid, k: int, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray | float]:
        """The plain ellipsoid function and the boundary perturbation (in [-amp * 2, amp * 2])."""
        z = grid.z[k]
        a, b = self.frame(grid, z, box)
        f = a * a + b * b + np.float32(((z - self.cz) / self.rz) ** 2)
        pert = 0.0
        if self.field is not None and self.amp:
            pert = self.amp * np.clip(self.field(k, *box), -_NOISE_CLIP, _NOISE_CLIP)
        return f, pert


@dataclass
class _Tube:
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
    field: _Field | None = None
    amp: float = 0.0
    end_power: int = 8

    def box(self, grid: _Grid, z: float) -> tuple[slice, slice] | None:
        m = math.sqrt(1.0 + self.amp * _NOISE_CLIP)
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

    def value(self, grid: _Grid, k: int, box: tuple[slice, slice]) -> np.ndarray:
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
            f += self.amp * np.clip(self.field(k, *box), -_NOISE_CLIP, _NOISE_CLIP)
        return f.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------------------------
# One subject


class _Subject:
    """All random choices for one seed, and the slice renderer."""

    def __init__(self, seed: int, shape: tuple[int, int, int]):
        rng = np.random.default_rng(seed)
        self.rng = rng
        g = self.grid = _Grid(shape)
        nz = shape[0]

        def U(lo: float, hi: float) -> float:
            return float(rng.uniform(lo, hi))

        def jitter() -> float:  # symmetric offset in [-1, 1]
            return float(rng.uniform(-1.0, 1.0))

        # Minimum sizes so that every organ covers at least a voxel at small shapes.
        min_r = 1.6 / g.scale
        min_rz = 1.0 / nz

        def rr(r: float) -> float:
            return max(r, min_r)

        def rzz(r: float) -> float:
            return max(r, min_rz)

        # ---- tissue CT numbers (HU) for this subject
        self.hu_air = -1000.0
        self.hu_fat_sc = U(-110, -90)
        self.hu_fat = U(-110, -85)
        self.hu_muscle = U(42, 58)
        self.hu_cancellous = U(210, 290)
        self.hu_cortical = U(750, 950)
        self.hu_aorta = U(155, 195)
        self.hu_ivc = U(110, 140)
        self.hu_liver = U(56, 64)
        self.hu_liver_vessel = U(25, 40)  # extra HU of the intrahepatic veins
        self.hu_spleen = U(47, 53)
        self.hu_pancreas = U(37, 43)
        self.hu_cortex = U(155, 178)
        self.hu_medulla = U(35, 55)
        self.hu_bowel_wall = U(40, 60)
        self.hu_fluid = U(5, 20)
        self.hu_lung = U(-880, -820)
        self.noise_sigma = U(11, 18)

        # ---- body outline (normalised units); organs are placed relative to the mean body size
        self.ax = 0.86 * U(0.93, 1.05)
        self.ay = 0.62 * U(0.92, 1.08)
        self.cu = 0.02 * jitter()
        self.cv = 0.03 + 0.02 * jitter()
        self.post_power = U(2.4, 3.0)  # flatter back (lying on the table)
        self.body_wave = [(U(0.02, 0.04), U(2, 5), U(0, 2 * math.pi)) for _ in range(2)]
        self.fat_sc = U(0.05, 0.12)
        self.fat_front = U(0.3, 0.9)
        self.muscle = U(0.045, 0.065)
        bs = self.bs = (self.ax / 0.86 + self.ay / 0.62) / 2  # overall body scale

        def P(pu: float, pv: float, d: float = 0.06) -> tuple[float, float]:
            """Position given as a fraction of the body semi-axes, with a random offset of up to ``d``."""
            return self.cu + (pu + d * jitter()) * self.ax, self.cv + (pv + d * jitter()) * self.ay

        def S() -> float:
            return bs * U(0.87, 1.15)

        # ---- spine (centre of the vertebral body)
        self.vb_u = self.cu + 0.01 * jitter()
        self.vb_v = self.cv + self.ay * U(0.36, 0.42)
        self.vb_ru = 0.12 * bs * U(0.92, 1.08)
        self.vb_rv = 0.10 * bs * U(0.92, 1.08)
        self.canal_r = 0.05 * bs
        self.level_period = U(0.13, 0.16)
        self.level_phase = U(0, 1)
        # Muscles beside and behind the spine.
        self.psoas_r = 0.085 * bs * U(0.85, 1.15)
        self.psoas_top = U(0.55, 0.68)
        self.paraspinal = (0.15 * bs * U(0.9, 1.1), 0.13 * bs * U(0.9, 1.1))

        # ---- vessels
        self.aorta_r = 0.05 * bs * U(0.9, 1.1)
        self.aorta_u = self.vb_u + 0.05 * bs + 0.015 * jitter()
        self.aorta_v = self.vb_v - self.vb_rv - self.aorta_r - 0.01 * bs
        self.ivc_ru, self.ivc_rv = 0.06 * bs * U(0.9, 1.1), 0.04 * bs * U(0.9, 1.1)
        self.ivc_u = self.vb_u - 0.1 * bs + 0.015 * jitter()
        self.ivc_v = self.vb_v - self.vb_rv - self.ivc_rv * 0.6
        self.bifurcation = U(0.08, 0.16)
        self.sma_z = U(0.2, 0.3)

        # ---- organs (normalised units, z in [0, 1] of the volume)
        lu, lv = P(-0.48, -0.08)
        ls = S()
        zl = 0.76 + 0.04 * jitter()
        self.liver = [
            _Blob(lu, lv, zl, rr(0.32 * ls), rr(0.40 * ls), rzz(0.28), angle=U(-0.2, 0.2),
                  du_dz=U(0.2, 0.5), dv_dz=U(0.3, 0.7), field=_Field(rng, g, 0.3, 0.2), amp=0.35),
            # Left lobe: reaches across the midline in front, joined to the right lobe.
            _Blob(lu + U(0.36, 0.44) * self.ax, lv - U(0.3, 0.38) * self.ay, zl + U(-0.04, 0.02), rr(0.28 * ls),
                  rr(0.14 * ls), rzz(0.14),
                  angle=U(-0.25, 0.1), field=_Field(rng, g, 0.25, 0.15), amp=0.3),
        ]
        self.liver_vessels = _Field(rng, g, 0.16, 0.1)
        self.liver_vessels_on = _Field(rng, g, 0.2, 0.15)
        self.gallbladder = None
        if rng.uniform() < 0.75:
            gu, gv = P(-0.3, -0.38, 0.04)
            self.gallbladder = _Blob(gu, gv, zl - U(0.15, 0.22), rr(0.06 * bs), rr(0.085 * bs), rzz(0.08),
                                     angle=0.8, field=_Field(rng, g, 0.2, 0.2), amp=0.2)

        su, sv = P(0.6, 0.4, 0.05)
        ss = S()
        self.spleen = _Blob(su, sv, 0.76 + 0.05 * jitter(), rr(0.13 * ss), rr(0.26 * ss), rzz(0.16),
                            angle=-U(0.65, 1.0), dv_dz=-U(0.0, 0.3), field=_Field(rng, g, 0.2, 0.15), amp=0.3)
        # Medial, anterior dent that makes the spleen crescent shaped (hilum).
        a = self.spleen.angle
        off = self.spleen.ru * 1.9
        self.spleen_cut = _Blob(su - off * math.cos(a), sv - off * math.sin(a), self.spleen.cz, off * 0.75,
                                self.spleen.rv * 0.8, self.spleen.rz * 1.2, angle=a)

        # Kidneys: the right one a little lower than the left; hilum anteromedial; upper poles medial and
        # posterior, lower poles lateral and anterior.
        self.kidneys = []
        z_left = 0.51 + 0.03 * jitter()
        for side, label, zc in ((+1, KIDNEY_LEFT, z_left), (-1, KIDNEY_RIGHT, z_left - U(0.05, 0.1))):
            ks = S()
            ku = self.vb_u + side * (0.34 * bs + 0.04 * jitter())
            kv = self.vb_v + 0.03 * bs + 0.03 * jitter()
            blob = _Blob(ku, kv, zc, rr(0.15 * ks), rr(0.11 * ks), rzz(0.21 * U(0.9, 1.1)),
                         angle=side * U(0.35, 0.7), du_dz=-side * U(0.1, 0.3), dv_dz=U(0.0, 0.15),
                         field=_Field(rng, g, 0.15, 0.15), amp=0.25)
            self.kidneys.append((side, label, blob, int(rng.integers(4, 7)), U(0, 2 * math.pi), U(0.68, 0.76)))

        # Pancreas: head (patient's right, low) -> body in front of the aorta -> tail (left, high, posterior).
        pz = U(0.55, 0.62)
        head_u, tail_u = self.vb_u - U(0.17, 0.24) * bs, self.vb_u + U(0.38, 0.48) * bs
        front = self.aorta_v - self.aorta_r - 0.09 * bs
        self.pancreas = _Tube(
            head_u, tail_u,
            v0=front + U(-0.01, 0.04) * bs, vm=front - U(0.04, 0.08) * bs, v1=self.vb_v - U(0.0, 0.1) * bs,
            z0=pz - U(0.03, 0.06), z1=pz + U(0.02, 0.06),
            rv0=rr(0.055 * bs * U(0.9, 1.15)), rv1=rr(0.035 * bs * U(0.9, 1.15)),
            rz0=rzz(0.05), rz1=rzz(0.035),
            field=_Field(rng, g, 0.12, 0.1), amp=0.3)
        self.pancreas_texture = _Field(rng, g, 0.035, 0.05)

        # ---- stomach, lungs, bowel
        self.stomach = _Blob(*P(0.35, -0.25), 0.84 + 0.04 * jitter(), rr(0.24 * bs), rr(0.2 * bs), rzz(0.17),
                             angle=U(-0.4, 0.2), field=_Field(rng, g, 0.25, 0.2), amp=0.3)
        self.stomach_gas = U(0.1, 0.6)  # gas fills the front of the stomach above this fraction of its depth
        self.lungs = [
            _Blob(*P(side * 0.55, 0.3, 0.04), U(1.08, 1.14), 0.4 * bs, 0.4 * bs, 0.2, field=_Field(rng, g, 0.3, 0.2),
                  amp=0.3)
            for side in (-1, 1)
        ]
        self.colon = [
            _Blob(*P(-0.64, 0.0, 0.05), U(0.15, 0.25), rr(0.10 * bs), rr(0.10 * bs), 0.3,
                  field=_Field(rng, g, 0.12, 0.1), amp=0.4),
            _Blob(*P(0.68, 0.25, 0.05), U(0.25, 0.35), rr(0.08 * bs), rr(0.08 * bs), 0.38,
                  field=_Field(rng, g, 0.12, 0.1), amp=0.4),
        ]
        tz = U(0.42, 0.52)
        self.transverse = _Tube(self.cu - 0.62 * self.ax, self.cu + 0.62 * self.ax,
                                v0=self.cv - 0.05 * self.ay, vm=self.cv - U(0.55, 0.7) * self.ay,
                                v1=self.cv + 0.1 * self.ay, z0=tz, z1=tz + U(0.08, 0.15),
                                rv0=0.09 * bs, rv1=0.08 * bs, rz0=0.06, rz1=0.06,
                                field=_Field(rng, g, 0.12, 0.1), amp=0.4, end_power=4)
        self.colon_mottle = _Field(rng, g, 0.035, 0.03)
        self.bowel = []
        for _ in range(60):
            bu, bv = self.cu + U(-0.62, 0.62) * self.ax, self.cv + U(-0.85, 0.2) * self.ay
            bz = 0.62 * rng.uniform()
            r = U(0.06, 0.1) * bs
            blob = _Blob(bu, bv, bz, r * U(0.7, 1.6), r, U(0.04, 0.1), angle=U(0, math.pi),
                         field=_Field(rng, g, 0.12, 0.1), amp=0.35)
            gas = U(0.0, 2.5)  # fraction of radius in front of the centre that is gas (> 1: none)
            content = self.hu_fluid if rng.uniform() < 0.7 else U(40, 80)
            self.bowel.append((blob, gas, content))

        # ---- textures
        self.body_field = _Field(rng, g, 0.35, 0.25)
        self.fat_strands = _Field(rng, g, 0.09, 0.07)
        self.fat_strands_mod = _Field(rng, g, 0.2, 0.15)
        self.bone_texture = _Field(rng, g, 0.03, 0.04)
        self.texture = _Field(rng, g, 0.2, 0.15)
        self.rib_phase = [U(0, 1) for _ in range(2)]

    # ----------------------------------------------------------------------------------------------------------------

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """Draw every slice; returns (hu int16, labels uint8)."""
        nz, ny, nx = self.grid.shape
        hu = np.empty((nz, ny, nx), np.int16)
        labels = np.zeros((nz, ny, nx), np.uint8)
        for k in range(nz):
            hu[k], labels[k] = self._slice(k)
        return hu, labels

    def _slice(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        g = self.grid
        z = float(g.z[k])
        ny, nx = g.shape[1:]
        img = np.full((ny, nx), self.hu_air, np.float32)
        lab = np.zeros((ny, nx), np.uint8)
        full = (slice(None), slice(None))

        def paint(box, mask, value, label: int = 0) -> None:
            sub = img[box]
            sub[mask] = value if np.isscalar(value) else np.broadcast_to(value, mask.shape)[mask]
            lab[box][mask] = label

        # ---- body: subcutaneous fat, muscle wall, abdominal cavity
        ax = self.ax * (1 + sum(a * math.sin(f * z + p) for a, f, p in self.body_wave))
        ay = self.ay * (1 + 0.5 * sum(a * math.cos(f * z + p) for a, f, p in self.body_wave))
        du = g.u[None, :] - self.cu
        dv = g.v[:, None] - self.cv
        n = np.where(dv > 0, np.float32(self.post_power), np.float32(2.0))
        rho = (np.abs(du / ax) ** n + np.abs(dv / ay) ** n) ** (1 / n)
        rho += 0.03 * self.body_field(k)
        # Layer thicknesses (normalised units) become fractions of rho by dividing by the mean semi-axis.
        dist = np.sqrt(du * du + dv * dv) + 1e-6
        front, lateral = np.clip(-dv / dist, 0, 1), np.abs(du) / dist
        mean_r = (ax + ay) / 2
        fat_in = 1 - 0.75 * self.fat_sc * (1 + self.fat_front * front + 0.3 * lateral) / mean_r
        cavity_in = fat_in - self.muscle * (0.8 + 0.6 * lateral) / mean_r
        body = rho < 1
        paint(full, body, self.hu_fat_sc)
        wall = body & (rho < fat_in)
        linea_alba = (np.abs(du) < 0.012) & (dv < 0)
        paint(full, wall & ~linea_alba, self.hu_muscle)
        cavity = rho < cavity_in
        strands = np.exp(-((self.fat_strands(k) / 0.08) ** 2)) * np.clip(0.4 + 0.6 * self.fat_strands_mod(k), 0, 1)
        paint(full, cavity, self.hu_fat + 80 * strands)

        # Ribs in the lower chest wall: oval bony sections in the muscle layer, lateral and posterior, that
        # reach further forward in higher slices; their angle advances with z as real ribs slope down.
        if z > 0.42:
            ang = np.arctan2(np.abs(du), -dv) / math.pi  # 0 front, 1 back
            start = max(0.75 - 0.9 * (z - 0.42), 0.2)
            phase = np.where(du > 0, np.float32(self.rib_phase[0]), np.float32(self.rib_phase[1]))
            across = ((ang * 6 + z * 7.0 + phase) % 1.0 - 0.11) / 0.11
            radial = (rho - (fat_in + cavity_in) / 2) / (0.38 * (fat_in - cavity_in))
            ribs = wall & (across * across + radial * radial < 1) & (ang > start) & (ang < 0.93)
            paint(full, ribs, self.hu_cortical * 0.7)

        # ---- muscles beside and behind the spine (clipped to the inner edge of the subcutaneous fat)
        inside_fat = rho < fat_in
        for side in (-1, 1):
            pr = self.paraspinal
            m = self._ellipse(self.vb_u + side * 0.13 * self.bs, self.vb_v + 0.27 * self.bs, pr[0], pr[1])
            paint(full, m & inside_fat, self.hu_muscle)
            if z < self.psoas_top:
                r = self.psoas_r * (0.3 + 0.7 * min(1.0, (self.psoas_top - z) / 0.35)) ** 0.8
                pu = self.vb_u + side * (self.vb_ru + r * 0.8)
                m = self._ellipse(pu, self.vb_v + 0.01, r, r * 0.85)
                paint(full, m & cavity, self.hu_muscle)

        # ---- lung bases (lower chest): the diaphragm domes and organs are drawn over them
        for lung in self.lungs:
            box = lung.box(g, z)
            if box is not None:
                m = (lung.value(g, k, box) < 1) & cavity[box] & (rho[box] > cavity_in[box] - 0.22)
                paint(box, m, self.hu_lung + 60 * strands[box])

        # ---- bowel: small bowel loops, colon, stomach
        for blob, gas, content in self.bowel:
            box = blob.box(g, z)
            if box is None:
                continue
            f = blob.value(g, k, box)
            m = (f < 1) & cavity[box]
            if not m.any():
                continue
            paint(box, m, self.hu_bowel_wall)
            inner = m & (f < 0.6)
            _, dvb = blob.centre(z)
            lumen = np.where(g.v[box[0]][:, None] - dvb < -gas * blob.rv * 0.5, np.float32(self.hu_air),
                             np.float32(content))
            paint(box, inner, lumen)
        mottle = None
        for tube in (*self.colon, self.transverse):
            box = tube.box(g, z)
            if box is None:
                continue
            f = tube.value(g, k, box)
            m = (f < 1) & cavity[box]
            if not m.any():
                continue
            if mottle is None:
                mottle = self.colon_mottle(k)
            paint(box, m, self.hu_bowel_wall)
            mt = mottle[box]
            paint(box, m & (f < 0.7), np.where(mt > 0.3, np.float32(self.hu_air), -40 + 40 * mt))
        box = self.stomach.box(g, z)
        if box is not None:
            f = self.stomach.value(g, k, box)
            m = (f < 1) & cavity[box]
            paint(box, m, self.hu_bowel_wall)
            _, sv = self.stomach.centre(z)
            level = sv - self.stomach.rv * (1 - 2 * self.stomach_gas)
            gas = g.v[box[0]][:, None] < level
            paint(box, m & (f < 0.75), np.where(gas, np.float32(self.hu_air), np.float32(self.hu_fluid + 10)))

        tex = self.texture(k)

        # ---- spleen (crescent), liver (two lobes, with vessels), gall bladder
        box = self.spleen.box(g, z)
        if box is not None:
            m = (self.spleen.value(g, k, box) < 1) & cavity[box]
            cut = self.spleen_cut.box(g, z)
            if cut is not None:
                m &= self.spleen_cut.value(g, k, box) >= 1
            paint(box, m, self.hu_spleen, SPLEEN)

        boxes = [(lobe, lobe.box(g, z)) for lobe in self.liver]
        boxes = [(lobe, b) for lobe, b in boxes if b is not None]
        if boxes:
            rows = slice(min(b[0].start for _, b in boxes), max(b[0].stop for _, b in boxes))
            cols = slice(min(b[1].start for _, b in boxes), max(b[1].stop for _, b in boxes))
            box = (rows, cols)
            f = np.minimum.reduce([lobe.value(g, k, box) for lobe, _ in boxes])
            m = (f < 1) & cavity[box]
            # Portal and hepatic veins: brighter winding tubes where one smooth field crosses zero.
            vessels = (np.abs(self.liver_vessels(k, *box)) < 0.22) & (self.liver_vessels_on(k, *box) > 0.3)
            paint(box, m, self.hu_liver + self.hu_liver_vessel * vessels, LIVER)
        if self.gallbladder is not None:
            box = self.gallbladder.box(g, z)
            if box is not None:
                m = (self.gallbladder.value(g, k, box) < 1) & cavity[box]
                paint(box, m, self.hu_fluid)

        # ---- pancreas (lobulated)
        box = self.pancreas.box(g, z)
        if box is not None:
            m = (self.pancreas.value(g, k, box) < 1) & cavity[box]
            lob = self.pancreas_texture(k, *box)
            paint(box, m, self.hu_pancreas + 6 * lob, PANCREAS)

        # ---- kidneys: bright cortex, darker medullary pyramids, renal sinus fat at the hilum
        for side, label, blob, n_pyr, phase, medulla_r in self.kidneys:
            box = blob.box(g, z)
            if box is None:
                continue
            f, pert = blob.parts(g, k, box)
            m = (f + pert < 1) & cavity[box]
            if not m.any():
                continue
            # Depth below the (perturbed) surface: f / (1 - pert) is 1 on the surface, 0 at the centre.
            depth = f / (1 - pert)
            a, b = blob.frame(g, z, box)
            pyramids = np.cos(n_pyr * np.arctan2(b, a) + phase) > -0.6
            medulla = m & (depth < medulla_r ** 2) & pyramids
            value = np.where(medulla, np.float32(self.hu_medulla), np.float32(self.hu_cortex))
            paint(box, m, value, label)
            # The hilum faces medially: -a in the left kidney's frame, +a in the right one's.
            hz = (z - blob.cz) / (blob.rz * 0.5)
            sinus = m & ((a + side * 0.6) ** 2 / 0.45 ** 2 + (b / 0.3) ** 2 + hz * hz < 1)
            paint(box, sinus, self.hu_fat + 40)

        # ---- vessels: aorta (splitting into the iliac arteries), IVC, SMA / SMV
        if z >= self.bifurcation:
            paint(full, self._ellipse(self.aorta_u, self.aorta_v, self.aorta_r, self.aorta_r), self.hu_aorta)
        else:
            spread = (self.bifurcation - z) * 0.8 * self.bs + 0.6 * self.aorta_r
            for s in (-1, 1):
                r = self.aorta_r * 0.7
                paint(full, self._ellipse(self.aorta_u + s * spread, self.aorta_v + 0.01, r, r), self.hu_aorta)
        ivc_v = self.ivc_v - 0.25 * self.bs * max(0.0, z - 0.7)
        if z >= self.bifurcation - 0.03:
            paint(full, self._ellipse(self.ivc_u, ivc_v, self.ivc_ru, self.ivc_rv), self.hu_ivc)
        else:
            spread = (self.bifurcation - 0.03 - z) * 0.8 * self.bs + 0.5 * self.ivc_ru
            for s in (-1, 1):
                paint(full, self._ellipse(self.aorta_u - 0.02 + s * spread, self.ivc_v + 0.03, self.ivc_rv,
                                          self.ivc_rv), self.hu_ivc)
        if self.sma_z < z < self.pancreas.z0:
            dz = self.pancreas.z0 - z
            sv = self.aorta_v - self.aorta_r - 0.03 * self.bs - 0.6 * dz * self.bs
            r = 0.022 * self.bs
            paint(full, self._ellipse(self.aorta_u - 0.01, sv, r, r), self.hu_aorta)
            paint(full, self._ellipse(self.aorta_u - 0.06 * self.bs, sv - 0.01, r * 1.3, r * 1.3), self.hu_ivc)

        # ---- spine: vertebral body (cancellous core, cortical shell), canal, lamina, processes
        lvl = (z / self.level_period + self.level_phase) % 1.0
        grow = 1 + 0.12 * (1 - z)
        vru, vrv = self.vb_ru * grow, self.vb_rv * grow
        dvb_u = g.u[None, :] - self.vb_u
        dvb_v = g.v[:, None] - self.vb_v
        fvb = (dvb_u / vru) ** 2 + (dvb_v / vrv) ** 2
        canal_v = self.vb_v + vrv + self.canal_r * 0.9
        dcv = g.v[:, None] - canal_v
        dcanal = np.sqrt(dvb_u ** 2 + dcv ** 2)
        ad = np.abs(dvb_u)
        lamina = (dcanal < self.canal_r + 0.03 * self.bs) & (dcv > -0.3 * self.canal_r)
        spine_len = 0.13 * self.bs
        spinous = (ad < 0.022 * self.bs * (1 - 0.4 * dcv / spine_len)) & (dcv > 0) & (dcv < spine_len)
        bone = lamina | spinous
        if abs(lvl - 0.5) < 0.2:  # transverse processes (mid-level of each vertebra), sloping backwards
            reach = 0.2 * self.bs
            half_w = 0.016 * self.bs * (1.2 - ad / reach)
            bone |= (np.abs(dcv + 0.3 * self.canal_r - 0.35 * ad) < half_w) & (ad < reach)
        bone &= inside_fat
        trab = self.bone_texture(k)
        endplate = 80 if min(lvl, 1 - lvl) < 0.08 else 0
        paint(full, bone, self.hu_cortical * 0.8 + 40 * trab)
        paint(full, fvb < 1, self.hu_cortical + 40 * trab)
        shell = (1 - 0.022 * self.bs / min(vru, vrv)) ** 2
        paint(full, fvb < shell, self.hu_cancellous + endplate + 35 * trab)
        paint(full, dcanal < self.canal_r, 15.0)

        # ---- texture and noise
        img += 2.5 * tex
        img += self.noise_sigma * self.rng.standard_normal(img.shape, dtype=np.float32)
        np.clip(img, HU_MIN, HU_MAX, out=img)
        return np.rint(img).astype(np.int16), lab

    def _ellipse(self, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
        """Full-slice boolean mask of an axis-aligned ellipse (centre and semi-axes in normalised units)."""
        g = self.grid
        du = (g.u[None, :] - cu) / max(ru, 1e-6)
        dv = (g.v[:, None] - cv) / max(rv, 1e-6)
        return du * du + dv * dv < 1


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
    hu, labels = _Subject(seed, shape).render()
    return Phantom(hu=hu, labels=labels, spacing=tuple(float(s) for s in spacing), seed=seed,
                   class_names=tuple(ORGAN_CLASSES))
