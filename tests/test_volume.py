"""Tests for napari_advseg.io.nifti: loading, reorienting, saving, scaling, splitting."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel
import numpy as np
import pytest
from nibabel import orientations as nio

from napari_advseg.data.organs import ORGAN_CLASSES
from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.data.intensity import IntensityScale, fit_intensity_scale
from napari_advseg.data.slices import organ_slices, split_slices
from napari_advseg.io.geometry import CTVolume, volume_from_array
from napari_advseg.io.nifti import check_labels, load_ct, load_labels
from napari_advseg.io.nifti_save import save_volume

REAL_DATA = Path(__file__).resolve().parents[2] / "shared/data/abdomen_ct"

STORED_SHAPE = (5, 6, 7)
ZOOMS = (2.0, 3.0, 4.0)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Saving: atomic, no overwrite, validation
# ---------------------------------------------------------------------------


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
# Labels
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Intensity scaling
# ---------------------------------------------------------------------------


def test_zscore_scale_round_trip():
    hu = np.random.default_rng(2).normal(40.0, 300.0, size=(6, 7, 8)).astype(np.float32)
    scale = fit_intensity_scale(hu)
    assert scale.mode == "zscore" and scale.clip_low is None and scale.clip_high is None
    x = scale.apply(hu)
    assert x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-4
    np.testing.assert_allclose(scale.to_hu(x), hu, atol=1e-3)
    again = IntensityScale.from_dict(json.loads(json.dumps(scale.to_dict())))
    assert again == scale


def test_window_scale_clips_and_maps_to_unit_range():
    scale = fit_intensity_scale(np.zeros(3), mode="window", window=(-200.0, 300.0))
    assert (scale.offset, scale.scale, scale.clip_low, scale.clip_high) == (50.0, 250.0, -200.0, 300.0)
    hu = np.array([-1000.0, -200.0, 50.0, 300.0, 3000.0])
    np.testing.assert_allclose(scale.apply(hu), [-1.0, -1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(scale.to_hu(scale.apply(hu)), [-200.0, -200.0, 50.0, 300.0, 300.0])
    assert IntensityScale.from_dict(scale.to_dict()) == scale


def test_intensity_scale_errors():
    with pytest.raises(AdvsegError, match="mode"):
        fit_intensity_scale(np.arange(5.0), mode="minmax")
    with pytest.raises(AdvsegError, match="constant"):
        fit_intensity_scale(np.full((3, 3, 3), -1000.0))
    with pytest.raises(AdvsegError):
        fit_intensity_scale(np.arange(5.0), mode="window", window=(300.0, -200.0))
    with pytest.raises(AdvsegError):
        fit_intensity_scale(np.array([0.0, np.nan]))
    with pytest.raises(AdvsegError):
        IntensityScale("zscore", 0.0, 0.0)
    with pytest.raises(AdvsegError, match="missing scale"):
        IntensityScale.from_dict({"mode": "zscore", "offset": 1.0})
    with pytest.raises(AdvsegError, match="unknown"):
        IntensityScale.from_dict({"mode": "zscore", "offset": 1.0, "scale": 2.0, "gamma": 1})
    with pytest.raises(AttributeError):
        IntensityScale("zscore", 0.0, 1.0).offset = 3.0  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Slices
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 112])
def test_split_slices_partition(n):
    everything = split_slices(n)
    train, test = split_slices(n, "train"), split_slices(n, "test")
    assert np.array_equal(everything, np.arange(n))
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), everything)
    assert np.all(test % 3 == 2) and np.all(train % 3 != 2)


def test_split_slices_rule_and_errors():
    assert split_slices(10, "test").tolist() == [2, 5, 8]
    assert split_slices(10, "train").tolist() == [0, 1, 3, 4, 6, 7, 9]
    with pytest.raises(AdvsegError):
        split_slices(10, "validation")
    with pytest.raises(AdvsegError):
        split_slices(-1)


def test_organ_slices():
    labels = np.zeros((6, 3, 3), np.uint8)
    labels[1, 0, 0] = 1
    labels[3, 2, 2] = 5
    labels[4, 1, 1] = 2
    assert organ_slices(labels).tolist() == [1, 3, 4]
    assert organ_slices(labels, [5]).tolist() == [3]
    assert organ_slices(labels, 2).tolist() == [4]
    assert organ_slices(labels, (1, 2)).tolist() == [1, 4]
    assert organ_slices(labels, [3]).size == 0


def test_ctvolume_needs_3d():
    vol = volume_from_array(np.zeros((2, 3, 4)))
    with pytest.raises(AdvsegError):
        CTVolume(hu=np.zeros((2, 3)), affine=vol.affine, spacing=vol.spacing, source=vol.source)


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
