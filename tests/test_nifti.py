"""Tests for napari_advseg.io.nifti (reading CT volumes): reorienting, round trips, bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel
import numpy as np
import pytest

from nifti_helpers import ORIENTATIONS, STORED_SHAPE, ZOOMS, stored_data, write_nifti
from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.errors import InputFileError
from napari_advseg.io.nifti import load_ct, load_labels
from napari_advseg.io.nifti_save import save_volume

REAL_DATA = Path(__file__).resolve().parents[2] / "shared/data/abdomen_ct"


# ---------------------------------------------------------------------------
# Orientation and round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_round_trip_keeps_data_affine_and_header(tmp_path, name):
    affine = ORIENTATIONS[name]
    data = stored_data()
    # LPS stored with a qform only, to exercise that path too.
    sform = 0 if name == "LPS" else 1
    src = write_nifti(tmp_path / f"{name}.nii.gz", data, affine, sform=sform, qform=1)

    vol = load_ct(src)
    assert vol.hu.dtype == np.float32 and vol.hu.flags.c_contiguous
    assert nibabel.aff2axcodes(vol.affine) == ("S", "P", "L")
    assert sorted(vol.shape) == sorted(STORED_SHAPE)
    assert vol.n_slices == vol.shape[0]
    np.testing.assert_allclose(sorted(vol.spacing), sorted(ZOOMS), atol=1e-5)

    for dtype in (None, np.int16):
        out = save_volume(vol.hu, vol, tmp_path / f"out_{name}_{dtype}.nii", dtype=dtype)
        saved = nibabel.load(out)
        original = nibabel.load(src)
        assert saved.shape == STORED_SHAPE
        assert np.array_equal(np.asanyarray(saved.dataobj), data)
        assert saved.get_data_dtype() == (np.float32 if dtype is None else np.int16)
        assert np.array_equal(saved.affine, original.affine)
        for key in ("sform_code", "qform_code", "srow_x", "srow_y", "srow_z", "quatern_b", "qoffset_x"):
            assert np.array_equal(saved.header[key], original.header[key]), key
        assert np.array_equal(saved.header.get_qform(), original.header.get_qform())

        again = load_ct(out)
        assert np.array_equal(again.hu, vol.hu)
        np.testing.assert_allclose(again.affine, vol.affine, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_marker_lands_at_its_world_position(tmp_path, name):
    affine = ORIENTATIONS[name]
    data = np.zeros(STORED_SHAPE, np.int16)
    marker = (1, 4, 5)
    data[marker] = 1000
    vol = load_ct(write_nifti(tmp_path / "m.nii", data, affine))
    index = np.unravel_index(np.argmax(vol.hu), vol.shape)
    world = affine @ np.array([*marker, 1.0])
    np.testing.assert_allclose(vol.affine @ np.array([*index, 1.0]), world, atol=1e-6)


def test_known_orientation_gives_expected_canonical_index(tmp_path):
    # RAS stored (X, Y, Z) = (5, 6, 7): index i grows to the right, j anteriorly, k superiorly.
    data = np.zeros(STORED_SHAPE, np.int16)
    data[1, 0, 2] = 7
    vol = load_ct(write_nifti(tmp_path / "ras.nii", data, ORIENTATIONS["RAS"]))
    assert vol.shape == (7, 6, 5)
    # z = k; y counts from anterior, so y = 5 - j; x counts from the patient's right, so x = 4 - i.
    assert vol.hu[2, 5, 3] == 7 and np.count_nonzero(vol.hu) == 1
    assert vol.spacing == (4.0, 3.0, 2.0)

    # LPS stored: L and P already match the canonical X and Y directions.
    vol = load_ct(write_nifti(tmp_path / "lps.nii", data, ORIENTATIONS["LPS"]))
    assert vol.hu[2, 0, 1] == 7

    # The voxel at the patient's most superior, anterior, right corner is canonical (Z-1, 0, 0).
    for name, affine in ORIENTATIONS.items():
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in STORED_SHAPE], indexing="ij"), -1)
        world = grid @ affine[:3, :3].T + affine[:3, 3]
        score = world[..., 2] + world[..., 1] + world[..., 0]  # superior + anterior + right
        corner = np.unravel_index(np.argmax(score), STORED_SHAPE)
        data = np.zeros(STORED_SHAPE, np.int16)
        data[corner] = 1
        vol = load_ct(write_nifti(tmp_path / f"c_{name}.nii", data, affine))
        assert np.unravel_index(np.argmax(vol.hu), vol.shape) == (vol.shape[0] - 1, 0, 0), name


def test_scaled_file_gives_hounsfield_units(tmp_path):
    raw = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    image = nibabel.Nifti1Image(raw, ORIENTATIONS["RAS"], dtype=np.int16)
    image.header.set_slope_inter(2.0, -1024.0)
    nibabel.save(image, tmp_path / "scaled.nii")
    vol = load_ct(tmp_path / "scaled.nii")
    assert vol.hu.min() == -1024.0 and vol.hu.max() == 59 * 2 - 1024.0


def test_squeezes_trailing_singleton_dimension(tmp_path):
    data = stored_data()[..., None]
    src = write_nifti(tmp_path / "4d.nii.gz", data, ORIENTATIONS["LPS"])
    vol = load_ct(src)
    assert vol.source.shape == STORED_SHAPE
    out = save_volume(vol.hu, vol, tmp_path / "back.nii.gz")
    assert np.array_equal(np.asanyarray(nibabel.load(out).dataobj), data[..., 0])


def test_save_component_array(tmp_path):
    data = stored_data()
    vol = load_ct(write_nifti(tmp_path / "psl.nii", data, ORIENTATIONS["PSL"]))
    field = np.stack([vol.hu, -2 * vol.hu], axis=-1)
    out = save_volume(field, vol, tmp_path / "field.nii.gz", intent="vector")
    saved = nibabel.load(out)
    assert saved.shape == STORED_SHAPE + (2,)
    stored = np.asanyarray(saved.dataobj)
    assert np.array_equal(stored[..., 0], data)
    assert np.array_equal(stored[..., 1], -2 * data)
    assert saved.header.get_intent()[0] == "vector"
    assert np.array_equal(saved.affine, nibabel.load(tmp_path / "psl.nii").affine)


# ---------------------------------------------------------------------------
# Bad input files
# ---------------------------------------------------------------------------


def _bad_missing(path):
    return path


def _bad_text(path):
    path.write_text("this is not an image\n" * 20)
    return path


def _bad_text_gz(path):
    path.write_bytes(gzip.compress(b"this is not an image\n" * 40))
    return path


def _bad_truncated_gz(path):
    full = path.with_name("full.nii.gz")
    write_nifti(full, stored_data(shape=(30, 30, 30)), ORIENTATIONS["RAS"])
    blob = full.read_bytes()
    full.unlink()
    path.write_bytes(blob[: len(blob) // 2])
    return path


def _bad_truncated_header_gz(path):
    full = path.with_name("full.nii.gz")
    write_nifti(full, stored_data(shape=(30, 30, 30)), ORIENTATIONS["RAS"])
    blob = full.read_bytes()
    full.unlink()
    path.write_bytes(blob[:40])
    return path


def _bad_truncated_nii(path):
    full = path.with_name("full.nii")
    write_nifti(full, stored_data(shape=(10, 10, 10)), ORIENTATIONS["RAS"])
    blob = full.read_bytes()
    full.unlink()
    path.write_bytes(blob[:-500])
    return path


def _bad_2d(path):
    return write_nifti(path, np.zeros((4, 5), np.int16), np.eye(4))


def _bad_4d(path):
    return write_nifti(path, np.zeros((4, 5, 6, 3), np.int16), np.eye(4))


def _bad_nan(path):
    data = np.zeros(STORED_SHAPE, np.float32)
    data[1, 2, 3] = np.nan
    return write_nifti(path, data, np.eye(4))


def _bad_inf(path):
    data = np.zeros(STORED_SHAPE, np.float32)
    data[0, 0, 0] = -np.inf
    return write_nifti(path, data, np.eye(4))


def _bad_rgb(path):
    rgb = np.zeros(STORED_SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nibabel.save(nibabel.Nifti1Image(rgb, np.eye(4)), path)
    return path


def _bad_complex(path):
    return write_nifti(path, np.zeros(STORED_SHAPE, np.complex64), np.eye(4))


def _bad_empty_axis(path):
    return write_nifti(path, np.zeros((4, 0, 5), np.int16), np.eye(4))


def _bad_folder(path):
    path.mkdir()
    return path


def _bad_mgh(path):
    path = path.with_suffix("").with_suffix(".mgz")
    nibabel.save(nibabel.MGHImage(np.zeros(STORED_SHAPE, np.float32), np.eye(4)), path)
    return path


BAD_FILES = {
    "missing": (_bad_missing, "not found"),
    "text": (_bad_text, "not a NIfTI"),
    "text_gz": (_bad_text_gz, "NIfTI"),
    "truncated_gz": (_bad_truncated_gz, "truncated or corrupt"),
    "truncated_header_gz": (_bad_truncated_header_gz, "truncated or corrupt"),
    "truncated_nii": (_bad_truncated_nii, "truncated or corrupt"),
    "2d": (_bad_2d, "expected a 3D volume, got shape (4, 5)"),
    "4d": (_bad_4d, "expected a 3D volume, got shape (4, 5, 6, 3)"),
    "nan": (_bad_nan, "NaN or infinite"),
    "inf": (_bad_inf, "NaN or infinite"),
    "rgb": (_bad_rgb, "not numeric"),
    "complex": (_bad_complex, "complex"),
    "empty_axis": (_bad_empty_axis, "size 0"),
    "folder": (_bad_folder, "folder"),
    "mgh": (_bad_mgh, "not a NIfTI"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_ct_files_raise_input_file_error(tmp_path, kind):
    make, fragment = BAD_FILES[kind]
    suffix = ".nii" if kind in ("text", "truncated_nii") else ".nii.gz"
    path = make(tmp_path / f"bad_{kind}{suffix}")
    with pytest.raises(InputFileError) as info:
        load_ct(path)
    message = str(info.value)
    assert path.name in message
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["missing", "text_gz", "truncated_gz", "4d", "nan", "rgb"])
def test_bad_label_files_raise_input_file_error(tmp_path, kind):
    ct = load_ct(write_nifti(tmp_path / "ct.nii", stored_data(), ORIENTATIONS["RAS"]))
    make, _ = BAD_FILES[kind]
    path = make(tmp_path / f"labels_{kind}.nii.gz")
    with pytest.raises(InputFileError, match=path.name):
        load_labels(path, ct)


def test_missing_orientation_warns(tmp_path):
    image = nibabel.Nifti1Image(stored_data(), None)
    assert image.header["sform_code"] == 0 and image.header["qform_code"] == 0
    nibabel.save(image, tmp_path / "nocode.nii")
    with pytest.warns(UserWarning, match="neither an sform nor a qform"):
        vol = load_ct(tmp_path / "nocode.nii")
    assert nibabel.aff2axcodes(vol.affine) == ("S", "P", "L")


# ---------------------------------------------------------------------------
# The real scan (skipped when the shared data are absent)
# ---------------------------------------------------------------------------


def test_real_ct_and_labels(tmp_path):
    ct_path, labels_path = REAL_DATA / "ct.nii.gz", REAL_DATA / "labels.nii.gz"
    if not (ct_path.is_file() and labels_path.is_file()):
        pytest.skip(f"real CT not available at {REAL_DATA}")
    ct = load_ct(ct_path)
    assert ct.shape == (112, 101, 122)  # stored RAS (122, 101, 112)
    assert nibabel.aff2axcodes(ct.affine) == ("S", "P", "L")
    assert ct.spacing == (3.0, 3.0, 3.0)
    assert ct.hu.min() == -1207.0 and ct.hu.max() == 3382.0
    assert -1100.0 < float(ct.hu.mean()) < 200.0

    labels = load_labels(labels_path, ct)
    counts = np.bincount(labels.ravel(), minlength=len(ORGAN_CLASSES))
    assert counts.tolist()[1:] == [41692, 9668, 5090, 7134, 695]
    # Organs are mostly soft tissue.
    assert 0.0 < float(np.median(ct.hu[labels == 1])) < 200.0

    out = save_volume(labels, ct, tmp_path / "labels_copy.nii.gz", dtype=np.uint8)
    original, copy = nibabel.load(labels_path), nibabel.load(out)
    assert np.array_equal(copy.affine, original.affine)
    assert np.array_equal(np.asanyarray(copy.dataobj), np.asanyarray(original.dataobj))
