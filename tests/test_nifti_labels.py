"""Tests for label maps: napari_advseg.io.nifti.load_labels and napari_advseg.io.labels.check_labels."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
from nibabel import orientations as nio

from nifti_helpers import ORIENTATIONS, STORED_SHAPE, stored_data, write_nifti
from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.errors import InputFileError
from napari_advseg.io.geometry import volume_from_array
from napari_advseg.io.labels import check_labels
from napari_advseg.io.nifti import load_ct, load_labels
from napari_advseg.io.nifti_save import save_volume


def _labels_stored(seed=3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(ORGAN_CLASSES), size=STORED_SHAPE).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_labels_follow_the_ct(tmp_path, name):
    affine = ORIENTATIONS[name]
    data = stored_data()
    labels = _labels_stored()
    ct = load_ct(write_nifti(tmp_path / "ct.nii.gz", data, affine))
    lab = load_labels(write_nifti(tmp_path / "lab.nii.gz", labels, affine), ct)
    assert lab.dtype == np.uint8 and lab.shape == ct.shape and lab.flags.c_contiguous
    # The same reorientation as the CT: a voxel keeps its (HU, label) pair.
    pairs_file = {(int(h), int(v)) for h, v in zip(data.ravel(), labels.ravel())}
    pairs_canon = {(int(h), int(v)) for h, v in zip(ct.hu.ravel(), lab.ravel())}
    assert pairs_file == pairs_canon
    code = (data.astype(np.int64) - data.min()) * 10 + labels
    code_ct = load_ct(write_nifti(tmp_path / "code.nii", code.astype(np.int32), affine))
    assert np.array_equal(code_ct.hu.astype(np.int64) % 10, lab)

    out = save_volume(lab, ct, tmp_path / "lab_out.nii.gz", dtype=np.uint8, intent="label")
    assert np.array_equal(np.asanyarray(nibabel.load(out).dataobj), labels)


def test_labels_on_another_grid_rejected(tmp_path):
    affine = ORIENTATIONS["RAS"]
    ct = load_ct(write_nifti(tmp_path / "ct.nii", stored_data(), affine))
    other = write_nifti(tmp_path / "small.nii", np.zeros((5, 6, 8), np.uint8), affine)
    with pytest.raises(InputFileError) as info:
        load_labels(other, ct)
    assert "small.nii" in str(info.value)
    assert "(5, 6, 8)" in str(info.value) and "(5, 6, 7)" in str(info.value)

    shifted = affine.copy()
    shifted[0, 3] += 1.0
    moved = write_nifti(tmp_path / "moved.nii", _labels_stored(), shifted)
    with pytest.raises(InputFileError, match="moved.nii.*affine"):
        load_labels(moved, ct)

    # Differences within 1e-3 mm count as the same grid.
    nudged = affine.copy()
    nudged[1, 3] += 2e-4
    assert load_labels(write_nifti(tmp_path / "nudged.nii", _labels_stored(), nudged), ct).shape == ct.shape


def test_labels_same_grid_other_storage_order_accepted(tmp_path):
    data = stored_data()
    labels = _labels_stored()
    affine = ORIENTATIONS["RAS"]
    ct = load_ct(write_nifti(tmp_path / "ct.nii", data, affine))
    expected = load_labels(write_nifti(tmp_path / "lab.nii", labels, affine), ct)
    # The same voxels stored flipped along the first axis (LAS), with the matching affine.
    flip = nio.axcodes2ornt(("L", "A", "S"))
    transform = nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), flip)
    flipped = nio.apply_orientation(labels, transform)
    flipped_affine = affine @ nio.inv_ornt_aff(transform, labels.shape)
    got = load_labels(write_nifti(tmp_path / "lab_las.nii", np.ascontiguousarray(flipped), flipped_affine), ct)
    assert np.array_equal(got, expected)


def test_label_values_checked(tmp_path):
    affine = ORIENTATIONS["LPS"]
    ct = load_ct(write_nifti(tmp_path / "ct.nii", stored_data(), affine))

    floats = _labels_stored().astype(np.float32)
    assert np.array_equal(
        load_labels(write_nifti(tmp_path / "float_ok.nii", floats, affine), ct),
        load_labels(write_nifti(tmp_path / "int.nii", _labels_stored(), affine), ct),
    )

    fractional = floats.copy()
    fractional[0, 0, 0] = 2.5
    with pytest.raises(InputFileError, match=r"fraction.nii.*whole numbers.*2\.5"):
        load_labels(write_nifti(tmp_path / "fraction.nii", fractional, affine), ct)

    too_big = _labels_stored()
    too_big[1, 1, 1] = 9
    with pytest.raises(InputFileError, match=r"big.nii.*0\.\.5.*found 9"):
        load_labels(write_nifti(tmp_path / "big.nii", too_big, affine), ct)

    negative = _labels_stored().astype(np.int16)
    negative[2, 2, 2] = -1
    with pytest.raises(InputFileError, match="found -1"):
        load_labels(write_nifti(tmp_path / "neg.nii", negative, affine), ct)

    # Fewer classes: value 5 is now out of range.
    with pytest.raises(InputFileError, match="0..2"):
        load_labels(tmp_path / "int.nii", ct, class_names=("background", "liver", "spleen"))

    # Absent organs are fine.
    empty = load_labels(write_nifti(tmp_path / "none.nii", np.zeros(STORED_SHAPE, np.uint8), affine), ct)
    assert empty.max() == 0


def test_check_labels_in_memory():
    ct = volume_from_array(np.zeros((3, 4, 5)))
    good = np.zeros((3, 4, 5), np.int64)
    good[1] = 5
    out = check_labels(good, ct)
    assert out.dtype == np.uint8 and out.max() == 5
    assert check_labels(good.astype(bool), ct).max() == 1
    with pytest.raises(InputFileError, match="prediction.*shape"):
        check_labels(np.zeros((3, 4, 6)), ct, name="prediction")
    with pytest.raises(InputFileError, match="labels.*found 6"):
        check_labels(good + 1, ct)
    with pytest.raises(InputFileError, match="whole numbers"):
        check_labels(good + 0.25, ct)
    with pytest.raises(InputFileError, match="NaN"):
        check_labels(np.full((3, 4, 5), np.nan), ct)
