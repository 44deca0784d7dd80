"""The random draws behind one phantom subject: tissue CT numbers, body outline and organ shapes.

All choices for a seed are made here, in a fixed order, from one
``numpy.random.Generator``; :mod:`napari_advseg.data.phantom_render` then draws
the slices from them. Changing the order of the draws changes every phantom.
"""

from __future__ import annotations

import math

import numpy as np

from napari_advseg.data.phantom_shapes import Blob, Field, Grid, Tube

__all__ = ["KIDNEY_LEFT", "KIDNEY_RIGHT", "LIVER", "PANCREAS", "SPLEEN", "Subject"]

LIVER, SPLEEN, KIDNEY_LEFT, KIDNEY_RIGHT, PANCREAS = 1, 2, 3, 4, 5
"""Label values of the five organs (index into ``ORGAN_CLASSES``)."""


class Subject:
    """All random choices for one seed (drawn by :func:`napari_advseg.data.phantom_render.render`).

    The generator ``rng`` is kept: the renderer draws the image noise from it
    after these choices.
    """

    def __init__(self, seed: int, shape: tuple[int, int, int]):
        rng = np.random.default_rng(seed)
        self.rng = rng
        g = self.grid = Grid(shape)
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
            Blob(lu, lv, zl, rr(0.32 * ls), rr(0.40 * ls), rzz(0.28), angle=U(-0.2, 0.2),
                  du_dz=U(0.2, 0.5), dv_dz=U(0.3, 0.7), field=Field(rng, g, 0.3, 0.2), amp=0.35),
            # Left lobe: reaches across the midline in front, joined to the right lobe.
            Blob(lu + U(0.36, 0.44) * self.ax, lv - U(0.3, 0.38) * self.ay, zl + U(-0.04, 0.02), rr(0.28 * ls),
                  rr(0.14 * ls), rzz(0.14),
                  angle=U(-0.25, 0.1), field=Field(rng, g, 0.25, 0.15), amp=0.3),
        ]
        self.liver_vessels = Field(rng, g, 0.16, 0.1)
        self.liver_vessels_on = Field(rng, g, 0.2, 0.15)
        self.gallbladder = None
        if rng.uniform() < 0.75:
            gu, gv = P(-0.3, -0.38, 0.04)
            self.gallbladder = Blob(gu, gv, zl - U(0.15, 0.22), rr(0.06 * bs), rr(0.085 * bs), rzz(0.08),
                                     angle=0.8, field=Field(rng, g, 0.2, 0.2), amp=0.2)

        su, sv = P(0.6, 0.4, 0.05)
        ss = S()
        self.spleen = Blob(su, sv, 0.76 + 0.05 * jitter(), rr(0.13 * ss), rr(0.26 * ss), rzz(0.16),
                            angle=-U(0.65, 1.0), dv_dz=-U(0.0, 0.3), field=Field(rng, g, 0.2, 0.15), amp=0.3)
        # Medial, anterior dent that makes the spleen crescent shaped (hilum).
        a = self.spleen.angle
        off = self.spleen.ru * 1.9
        self.spleen_cut = Blob(su - off * math.cos(a), sv - off * math.sin(a), self.spleen.cz, off * 0.75,
                                self.spleen.rv * 0.8, self.spleen.rz * 1.2, angle=a)

        # Kidneys: the right one a little lower than the left; hilum anteromedial; upper poles medial and
        # posterior, lower poles lateral and anterior.
        self.kidneys = []
        z_left = 0.51 + 0.03 * jitter()
        for side, label, zc in ((+1, KIDNEY_LEFT, z_left), (-1, KIDNEY_RIGHT, z_left - U(0.05, 0.1))):
            ks = S()
            ku = self.vb_u + side * (0.34 * bs + 0.04 * jitter())
            kv = self.vb_v + 0.03 * bs + 0.03 * jitter()
            blob = Blob(ku, kv, zc, rr(0.15 * ks), rr(0.11 * ks), rzz(0.21 * U(0.9, 1.1)),
                         angle=side * U(0.35, 0.7), du_dz=-side * U(0.1, 0.3), dv_dz=U(0.0, 0.15),
                         field=Field(rng, g, 0.15, 0.15), amp=0.25)
            self.kidneys.append((side, label, blob, int(rng.integers(4, 7)), U(0, 2 * math.pi), U(0.68, 0.76)))

        # Pancreas: head (patient's right, low) -> body in front of the aorta -> tail (left, high, posterior).
        pz = U(0.55, 0.62)
        head_u, tail_u = self.vb_u - U(0.17, 0.24) * bs, self.vb_u + U(0.38, 0.48) * bs
        front = self.aorta_v - self.aorta_r - 0.09 * bs
        self.pancreas = Tube(
            head_u, tail_u,
            v0=front + U(-0.01, 0.04) * bs, vm=front - U(0.04, 0.08) * bs, v1=self.vb_v - U(0.0, 0.1) * bs,
            z0=pz - U(0.03, 0.06), z1=pz + U(0.02, 0.06),
            rv0=rr(0.055 * bs * U(0.9, 1.15)), rv1=rr(0.035 * bs * U(0.9, 1.15)),
            rz0=rzz(0.05), rz1=rzz(0.035),
            field=Field(rng, g, 0.12, 0.1), amp=0.3)
        self.pancreas_texture = Field(rng, g, 0.035, 0.05)

        # ---- stomach, lungs, bowel
        self.stomach = Blob(*P(0.35, -0.25), 0.84 + 0.04 * jitter(), rr(0.24 * bs), rr(0.2 * bs), rzz(0.17),
                             angle=U(-0.4, 0.2), field=Field(rng, g, 0.25, 0.2), amp=0.3)
        self.stomach_gas = U(0.1, 0.6)  # gas fills the front of the stomach above this fraction of its depth
        self.lungs = [
            Blob(*P(side * 0.55, 0.3, 0.04), U(1.08, 1.14), 0.4 * bs, 0.4 * bs, 0.2, field=Field(rng, g, 0.3, 0.2),
                  amp=0.3)
            for side in (-1, 1)
        ]
        self.colon = [
            Blob(*P(-0.64, 0.0, 0.05), U(0.15, 0.25), rr(0.10 * bs), rr(0.10 * bs), 0.3,
                  field=Field(rng, g, 0.12, 0.1), amp=0.4),
            Blob(*P(0.68, 0.25, 0.05), U(0.25, 0.35), rr(0.08 * bs), rr(0.08 * bs), 0.38,
                  field=Field(rng, g, 0.12, 0.1), amp=0.4),
        ]
        tz = U(0.42, 0.52)
        self.transverse = Tube(self.cu - 0.62 * self.ax, self.cu + 0.62 * self.ax,
                                v0=self.cv - 0.05 * self.ay, vm=self.cv - U(0.55, 0.7) * self.ay,
                                v1=self.cv + 0.1 * self.ay, z0=tz, z1=tz + U(0.08, 0.15),
                                rv0=0.09 * bs, rv1=0.08 * bs, rz0=0.06, rz1=0.06,
                                field=Field(rng, g, 0.12, 0.1), amp=0.4, end_power=4)
        self.colon_mottle = Field(rng, g, 0.035, 0.03)
        self.bowel = []
        for _ in range(60):
            bu, bv = self.cu + U(-0.62, 0.62) * self.ax, self.cv + U(-0.85, 0.2) * self.ay
            bz = 0.62 * rng.uniform()
            r = U(0.06, 0.1) * bs
            blob = Blob(bu, bv, bz, r * U(0.7, 1.6), r, U(0.04, 0.1), angle=U(0, math.pi),
                         field=Field(rng, g, 0.12, 0.1), amp=0.35)
            gas = U(0.0, 2.5)  # fraction of radius in front of the centre that is gas (> 1: none)
            content = self.hu_fluid if rng.uniform() < 0.7 else U(40, 80)
            self.bowel.append((blob, gas, content))

        # ---- textures
        self.body_field = Field(rng, g, 0.35, 0.25)
        self.fat_strands = Field(rng, g, 0.09, 0.07)
        self.fat_strands_mod = Field(rng, g, 0.2, 0.15)
        self.bone_texture = Field(rng, g, 0.03, 0.04)
        self.texture = Field(rng, g, 0.2, 0.15)
        self.rib_phase = [U(0, 1) for _ in range(2)]
