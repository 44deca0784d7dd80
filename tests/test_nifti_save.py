"""Tests for napari_advseg.io.nifti_save: atomic writes, no overwrite, validation."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel
import numpy as np
import pytest

from napari_advseg.errors import AdvsegError
from napari_advseg.io.geometry import volume_from_array
from napari_advseg.io.nifti import load_ct, load_labels
from napari_advseg.io.nifti_save import save_volume


def test_save_refuses_overwrite(tmp_path):
    vol = volume_from_array(np.zeros((3, 4, 5)))
    target = tmp_path / "x.nii.gz"
    save_volume(vol.hu, vol, target)
    with pytest.raises(AdvsegError, match="x.nii.gz"):
        save_volume(vol.hu + 1, vol, target)
    assert load_ct(target).hu.max() == 0
    save_volume(vol.hu + 1, vol, target, overwrite=True)
    assert load_ct(target).hu.min() == 1


def test_save_is_atomic_on_error(tmp_path, monkeypatch):
    vol = volume_from_array(np.zeros((3, 4, 5)))
    existing = save_volume(vol.hu, vol, tmp_path / "keep.nii")
    before = existing.read_bytes()

    def failing_save(image, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nibabel, "save", failing_save)
    with pytest.raises(AdvsegError, match="new.nii.gz"):
        save_volume(vol.hu, vol, tmp_path / "new.nii.gz")
    with pytest.raises(AdvsegError, match="keep.nii"):
        save_volume(vol.hu + 5, vol, existing, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["keep.nii"]
    assert existing.read_bytes() == before


@pytest.mark.parametrize(
    "array, name, kwargs",
    [
        (np.zeros((3, 4, 6)), "shape.nii", {}),
        (np.zeros((3, 4, 5, 2, 1)), "ndim.nii", {}),
        (np.zeros((3, 4, 5)), "bad_suffix.png", {}),
        (np.full((3, 4, 5), np.inf), "inf.nii", {}),
        (np.full((3, 4, 5), 300.0), "range.nii", {"dtype": np.uint8}),
    ],
)
def test_save_rejects_bad_requests(tmp_path, array, name, kwargs):
    vol = volume_from_array(np.zeros((3, 4, 5)))
    with pytest.raises(AdvsegError):
        save_volume(array, vol, tmp_path / name, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_save_creates_missing_folders(tmp_path):
    vol = volume_from_array(np.zeros((3, 4, 5)))
    out = save_volume(vol.hu, vol, tmp_path / "a" / "b" / "x.nii.gz")
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["x.nii.gz"]
    (tmp_path / "file").write_text("")
    with pytest.raises(AdvsegError, match="y.nii"):
        save_volume(vol.hu, vol, tmp_path / "file" / "y.nii")


def test_save_rounds_floats_to_integer_dtype_without_scaling(tmp_path):
    vol = volume_from_array(np.zeros((3, 4, 5)))
    labels = np.zeros((3, 4, 5))
    labels[1, 2, 3] = 4.0
    out = save_volume(labels, vol, tmp_path / "lab.nii.gz", dtype=np.uint8, intent="label")
    saved = nibabel.load(out)
    assert saved.get_data_dtype() == np.uint8
    assert np.asanyarray(saved.dataobj).max() == 4
    assert np.array_equal(load_labels(out, vol), labels.astype(np.uint8))
