"""Shared helpers for the NIfTI tests: affines in several orientations and small test files."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
from nibabel import orientations as nio

STORED_SHAPE = (5, 6, 7)
ZOOMS = (2.0, 3.0, 4.0)


def affine_for(axcodes, zooms=ZOOMS, origin=(10.0, -20.0, 30.0)) -> np.ndarray:
    """Diagonal-ish affine whose array axes point along ``axcodes``."""
    ornt = nio.axcodes2ornt(axcodes)
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (world, sign) in enumerate(ornt):
        affine[int(world), axis] = sign * zooms[axis]
    affine[:3, 3] = origin
    return affine


def rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    a, b = np.deg2rad(degrees_z), np.deg2rad(degrees_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    out = np.eye(4)
    out[:3, :3] = rz @ rx
    return out


ORIENTATIONS = {
    "RAS": affine_for(("R", "A", "S")),
    "LPS": affine_for(("L", "P", "S")),
    "PSL": affine_for(("P", "S", "L")),
    "oblique": rotation(20.0, -12.0) @ affine_for(("A", "L", "I")),
}


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, *, sform=1, qform=1) -> Path:
    image = nibabel.Nifti1Image(data, affine, dtype=data.dtype)
    image.header.set_sform(affine, code=sform)
    image.header.set_qform(affine, code=qform)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, path)
    return path


def stored_data(seed=0, shape=STORED_SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)
