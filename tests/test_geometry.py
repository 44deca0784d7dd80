"""Tests for napari_advseg.io.geometry: volumes made from arrays and the CTVolume checks."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest

from napari_advseg.errors import AdvsegError
from napari_advseg.io.geometry import CTVolume, volume_from_array
from napari_advseg.io.nifti import load_ct
from napari_advseg.io.nifti_save import save_volume


def test_volume_from_array_geometry_and_save(tmp_path):
    hu = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(np.float32)
    vol = volume_from_array(hu, spacing=(2.5, 0.8, 0.7), path="phantom")
    assert nibabel.aff2axcodes(vol.affine) == ("S", "P", "L")
    assert vol.spacing == (2.5, 0.8, 0.7) and vol.shape == (4, 5, 6) and vol.path == "phantom"
    assert vol.hu is not hu and np.array_equal(vol.hu, hu)

    out = save_volume(hu, vol, tmp_path / "phantom.nii.gz")
    saved = nibabel.load(out)
    assert nibabel.aff2axcodes(saved.affine) == ("R", "A", "S")
    assert saved.shape == (6, 5, 4)
    back = load_ct(out)
    assert np.array_equal(back.hu, hu)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-6)


@pytest.mark.parametrize(
    "hu, spacing",
    [
        (np.zeros((4, 5)), (1, 1, 1)),
        (np.zeros((4, 0, 5)), (1, 1, 1)),
        (np.full((2, 2, 2), np.nan), (1, 1, 1)),
        (np.zeros((2, 2, 2)), (1, 0, 1)),
        (np.zeros((2, 2, 2)), (1, 1)),
    ],
)
def test_volume_from_array_rejects_bad_input(hu, spacing):
    with pytest.raises(AdvsegError):
        volume_from_array(hu, spacing=spacing)


def test_ctvolume_needs_3d():
    vol = volume_from_array(np.zeros((2, 3, 4)))
    with pytest.raises(AdvsegError):
        CTVolume(hu=np.zeros((2, 3)), affine=vol.affine, spacing=vol.spacing, source=vol.source)
