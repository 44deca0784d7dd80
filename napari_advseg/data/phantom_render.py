"""Drawing the phantom: every axial slice of one subject, tissue by tissue, in a fixed priority order."""

from __future__ import annotations

import math

import numpy as np

from napari_advseg.data.phantom_anatomy import LIVER, PANCREAS, SPLEEN, Subject
from napari_advseg.data.phantom_shapes import Grid

__all__ = ["HU_MAX", "HU_MIN", "render"]

HU_MIN, HU_MAX = -1024, 3071
"""Range (Hounsfield units) that ``Phantom.hu`` is clipped to."""


def render(subj: Subject) -> tuple[np.ndarray, np.ndarray]:
    """Draw every slice; returns (hu int16, labels uint8)."""
    nz, ny, nx = subj.grid.shape
    hu = np.empty((nz, ny, nx), np.int16)
    labels = np.zeros((nz, ny, nx), np.uint8)
    for k in range(nz):
        hu[k], labels[k] = _render_slice(subj, k)
    return hu, labels


def _render_slice(subj: Subject, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Slice ``k``: (hu int16, labels uint8); later tissues are painted over earlier ones."""
    g = subj.grid
    z = float(g.z[k])
    ny, nx = g.shape[1:]
    img = np.full((ny, nx), subj.hu_air, np.float32)
    lab = np.zeros((ny, nx), np.uint8)
    full = (slice(None), slice(None))

    def paint(box, mask, value, label: int = 0) -> None:
        sub = img[box]
        sub[mask] = value if np.isscalar(value) else np.broadcast_to(value, mask.shape)[mask]
        lab[box][mask] = label

    # ---- body: subcutaneous fat, muscle wall, abdominal cavity
    ax = subj.ax * (1 + sum(a * math.sin(f * z + p) for a, f, p in subj.body_wave))
    ay = subj.ay * (1 + 0.5 * sum(a * math.cos(f * z + p) for a, f, p in subj.body_wave))
    du = g.u[None, :] - subj.cu
    dv = g.v[:, None] - subj.cv
    n = np.where(dv > 0, np.float32(subj.post_power), np.float32(2.0))
    rho = (np.abs(du / ax) ** n + np.abs(dv / ay) ** n) ** (1 / n)
    rho += 0.03 * subj.body_field(k)
    # Layer thicknesses (normalised units) become fractions of rho by dividing by the mean semi-axis.
    dist = np.sqrt(du * du + dv * dv) + 1e-6
    front, lateral = np.clip(-dv / dist, 0, 1), np.abs(du) / dist
    mean_r = (ax + ay) / 2
    fat_in = 1 - 0.75 * subj.fat_sc * (1 + subj.fat_front * front + 0.3 * lateral) / mean_r
    cavity_in = fat_in - subj.muscle * (0.8 + 0.6 * lateral) / mean_r
    body = rho < 1
    paint(full, body, subj.hu_fat_sc)
    wall = body & (rho < fat_in)
    linea_alba = (np.abs(du) < 0.012) & (dv < 0)
    paint(full, wall & ~linea_alba, subj.hu_muscle)
    cavity = rho < cavity_in
    strands = np.exp(-((subj.fat_strands(k) / 0.08) ** 2)) * np.clip(0.4 + 0.6 * subj.fat_strands_mod(k), 0, 1)
    paint(full, cavity, subj.hu_fat + 80 * strands)

    # Ribs in the lower chest wall: oval bony sections in the muscle layer, lateral and posterior, that
    # reach further forward in higher slices; their angle advances with z as real ribs slope down.
    if z > 0.42:
        ang = np.arctan2(np.abs(du), -dv) / math.pi  # 0 front, 1 back
        start = max(0.75 - 0.9 * (z - 0.42), 0.2)
        phase = np.where(du > 0, np.float32(subj.rib_phase[0]), np.float32(subj.rib_phase[1]))
        across = ((ang * 6 + z * 7.0 + phase) % 1.0 - 0.11) / 0.11
        radial = (rho - (fat_in + cavity_in) / 2) / (0.38 * (fat_in - cavity_in))
        ribs = wall & (across * across + radial * radial < 1) & (ang > start) & (ang < 0.93)
        paint(full, ribs, subj.hu_cortical * 0.7)

    # ---- muscles beside and behind the spine (clipped to the inner edge of the subcutaneous fat)
    inside_fat = rho < fat_in
    for side in (-1, 1):
        pr = subj.paraspinal
        m = _ellipse(g, subj.vb_u + side * 0.13 * subj.bs, subj.vb_v + 0.27 * subj.bs, pr[0], pr[1])
        paint(full, m & inside_fat, subj.hu_muscle)
        if z < subj.psoas_top:
            r = subj.psoas_r * (0.3 + 0.7 * min(1.0, (subj.psoas_top - z) / 0.35)) ** 0.8
            pu = subj.vb_u + side * (subj.vb_ru + r * 0.8)
            m = _ellipse(g, pu, subj.vb_v + 0.01, r, r * 0.85)
            paint(full, m & cavity, subj.hu_muscle)

    # ---- lung bases (lower chest): the diaphragm domes and organs are drawn over them
    for lung in subj.lungs:
        box = lung.box(g, z)
        if box is not None:
            m = (lung.value(g, k, box) < 1) & cavity[box] & (rho[box] > cavity_in[box] - 0.22)
            paint(box, m, subj.hu_lung + 60 * strands[box])

    # ---- bowel: small bowel loops, colon, stomach
    for blob, gas, content in subj.bowel:
        box = blob.box(g, z)
        if box is None:
            continue
        f = blob.value(g, k, box)
        m = (f < 1) & cavity[box]
        if not m.any():
            continue
        paint(box, m, subj.hu_bowel_wall)
        inner = m & (f < 0.6)
        _, dvb = blob.centre(z)
        lumen = np.where(g.v[box[0]][:, None] - dvb < -gas * blob.rv * 0.5, np.float32(subj.hu_air),
                         np.float32(content))
        paint(box, inner, lumen)
    mottle = None
    for tube in (*subj.colon, subj.transverse):
        box = tube.box(g, z)
        if box is None:
            continue
        f = tube.value(g, k, box)
        m = (f < 1) & cavity[box]
        if not m.any():
            continue
        if mottle is None:
            mottle = subj.colon_mottle(k)
        paint(box, m, subj.hu_bowel_wall)
        mt = mottle[box]
        paint(box, m & (f < 0.7), np.where(mt > 0.3, np.float32(subj.hu_air), -40 + 40 * mt))
    box = subj.stomach.box(g, z)
    if box is not None:
        f = subj.stomach.value(g, k, box)
        m = (f < 1) & cavity[box]
        paint(box, m, subj.hu_bowel_wall)
        _, sv = subj.stomach.centre(z)
        level = sv - subj.stomach.rv * (1 - 2 * subj.stomach_gas)
        gas = g.v[box[0]][:, None] < level
        paint(box, m & (f < 0.75), np.where(gas, np.float32(subj.hu_air), np.float32(subj.hu_fluid + 10)))

    tex = subj.texture(k)

    # ---- spleen (crescent), liver (two lobes, with vessels), gall bladder
    box = subj.spleen.box(g, z)
    if box is not None:
        m = (subj.spleen.value(g, k, box) < 1) & cavity[box]
        cut = subj.spleen_cut.box(g, z)
        if cut is not None:
            m &= subj.spleen_cut.value(g, k, box) >= 1
        paint(box, m, subj.hu_spleen, SPLEEN)

    boxes = [(lobe, lobe.box(g, z)) for lobe in subj.liver]
    boxes = [(lobe, b) for lobe, b in boxes if b is not None]
    if boxes:
        rows = slice(min(b[0].start for _, b in boxes), max(b[0].stop for _, b in boxes))
        cols = slice(min(b[1].start for _, b in boxes), max(b[1].stop for _, b in boxes))
        box = (rows, cols)
        f = np.minimum.reduce([lobe.value(g, k, box) for lobe, _ in boxes])
        m = (f < 1) & cavity[box]
        # Portal and hepatic veins: brighter winding tubes where one smooth field crosses zero.
        vessels = (np.abs(subj.liver_vessels(k, *box)) < 0.22) & (subj.liver_vessels_on(k, *box) > 0.3)
        paint(box, m, subj.hu_liver + subj.hu_liver_vessel * vessels, LIVER)
    if subj.gallbladder is not None:
        box = subj.gallbladder.box(g, z)
        if box is not None:
            m = (subj.gallbladder.value(g, k, box) < 1) & cavity[box]
            paint(box, m, subj.hu_fluid)

    # ---- pancreas (lobulated)
    box = subj.pancreas.box(g, z)
    if box is not None:
        m = (subj.pancreas.value(g, k, box) < 1) & cavity[box]
        lob = subj.pancreas_texture(k, *box)
        paint(box, m, subj.hu_pancreas + 6 * lob, PANCREAS)

    # ---- kidneys: bright cortex, darker medullary pyramids, renal sinus fat at the hilum
    for side, label, blob, n_pyr, phase, medulla_r in subj.kidneys:
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
        value = np.where(medulla, np.float32(subj.hu_medulla), np.float32(subj.hu_cortex))
        paint(box, m, value, label)
        # The hilum faces medially: -a in the left kidney's frame, +a in the right one's.
        hz = (z - blob.cz) / (blob.rz * 0.5)
        sinus = m & ((a + side * 0.6) ** 2 / 0.45 ** 2 + (b / 0.3) ** 2 + hz * hz < 1)
        paint(box, sinus, subj.hu_fat + 40)

    # ---- vessels: aorta (splitting into the iliac arteries), IVC, SMA / SMV
    if z >= subj.bifurcation:
        paint(full, _ellipse(g, subj.aorta_u, subj.aorta_v, subj.aorta_r, subj.aorta_r), subj.hu_aorta)
    else:
        spread = (subj.bifurcation - z) * 0.8 * subj.bs + 0.6 * subj.aorta_r
        for s in (-1, 1):
            r = subj.aorta_r * 0.7
            paint(full, _ellipse(g, subj.aorta_u + s * spread, subj.aorta_v + 0.01, r, r), subj.hu_aorta)
    ivc_v = subj.ivc_v - 0.25 * subj.bs * max(0.0, z - 0.7)
    if z >= subj.bifurcation - 0.03:
        paint(full, _ellipse(g, subj.ivc_u, ivc_v, subj.ivc_ru, subj.ivc_rv), subj.hu_ivc)
    else:
        spread = (subj.bifurcation - 0.03 - z) * 0.8 * subj.bs + 0.5 * subj.ivc_ru
        for s in (-1, 1):
            paint(full, _ellipse(g, subj.aorta_u - 0.02 + s * spread, subj.ivc_v + 0.03, subj.ivc_rv, subj.ivc_rv),
                  subj.hu_ivc)
    if subj.sma_z < z < subj.pancreas.z0:
        dz = subj.pancreas.z0 - z
        sv = subj.aorta_v - subj.aorta_r - 0.03 * subj.bs - 0.6 * dz * subj.bs
        r = 0.022 * subj.bs
        paint(full, _ellipse(g, subj.aorta_u - 0.01, sv, r, r), subj.hu_aorta)
        paint(full, _ellipse(g, subj.aorta_u - 0.06 * subj.bs, sv - 0.01, r * 1.3, r * 1.3), subj.hu_ivc)

    # ---- spine: vertebral body (cancellous core, cortical shell), canal, lamina, processes
    lvl = (z / subj.level_period + subj.level_phase) % 1.0
    grow = 1 + 0.12 * (1 - z)
    vru, vrv = subj.vb_ru * grow, subj.vb_rv * grow
    dvb_u = g.u[None, :] - subj.vb_u
    dvb_v = g.v[:, None] - subj.vb_v
    fvb = (dvb_u / vru) ** 2 + (dvb_v / vrv) ** 2
    canal_v = subj.vb_v + vrv + subj.canal_r * 0.9
    dcv = g.v[:, None] - canal_v
    dcanal = np.sqrt(dvb_u ** 2 + dcv ** 2)
    ad = np.abs(dvb_u)
    lamina = (dcanal < subj.canal_r + 0.03 * subj.bs) & (dcv > -0.3 * subj.canal_r)
    spine_len = 0.13 * subj.bs
    spinous = (ad < 0.022 * subj.bs * (1 - 0.4 * dcv / spine_len)) & (dcv > 0) & (dcv < spine_len)
    bone = lamina | spinous
    if abs(lvl - 0.5) < 0.2:  # transverse processes (mid-level of each vertebra), sloping backwards
        reach = 0.2 * subj.bs
        half_w = 0.016 * subj.bs * (1.2 - ad / reach)
        bone |= (np.abs(dcv + 0.3 * subj.canal_r - 0.35 * ad) < half_w) & (ad < reach)
    bone &= inside_fat
    trab = subj.bone_texture(k)
    endplate = 80 if min(lvl, 1 - lvl) < 0.08 else 0
    paint(full, bone, subj.hu_cortical * 0.8 + 40 * trab)
    paint(full, fvb < 1, subj.hu_cortical + 40 * trab)
    shell = (1 - 0.022 * subj.bs / min(vru, vrv)) ** 2
    paint(full, fvb < shell, subj.hu_cancellous + endplate + 35 * trab)
    paint(full, dcanal < subj.canal_r, 15.0)

    # ---- texture and noise
    img += 2.5 * tex
    img += subj.noise_sigma * subj.rng.standard_normal(img.shape, dtype=np.float32)
    np.clip(img, HU_MIN, HU_MAX, out=img)
    return np.rint(img).astype(np.int16), lab


def _ellipse(g: Grid, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
    """Full-slice boolean mask of an axis-aligned ellipse (centre and semi-axes in normalised units)."""
    du = (g.u[None, :] - cu) / max(ru, 1e-6)
    dv = (g.v[:, None] - cv) / max(rv, 1e-6)
    return du * du + dv * dv < 1
