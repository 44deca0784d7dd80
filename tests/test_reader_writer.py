"""The napari reader and writers: NIfTI in, canonical layers, NIfTI back out in the source geometry."""

from __future__ import annotations

import gzip

import nibabel
import numpy as np
import pytest

from napari_advseg._napari.label_values import looks_like_labels
from napari_advseg._napari.reader import get_reader, layer_name, read_nifti
from napari_advseg._napari.writer import write_image, write_labels

STORED_SHAPE = (7, 9, 5)  # (I, J, K): distinct sizes, so a wrong transpose shows
ZOOMS = (0.7, 0.8, 2.5)


def _rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    a, b = np.deg2rad(degrees_z), np.deg2rad(degrees_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _affine(kind: str) -> np.ndarray:
    affine = np.eye(4)
    if kind == "RAS":
        affine[:3, :3] = np.diag(ZOOMS)
    elif kind == "LPS":
        affine[:3, :3] = np.diag((-ZOOMS[0], -ZOOMS[1], ZOOMS[2]))
    elif kind == "oblique":
        affine[:3, :3] = _rotation(20.0, 10.0) @ np.diag(ZOOMS)
    else:  # pragma: no cover
        raise ValueError(kind)
    affine[:3, 3] = (-12.5, 30.25, -101.0)
    return affine


def _save(path, data: np.ndarray, affine: np.ndarray):
    image = nibabel.Nifti1Image(data, affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    image.header.set_xyzt_units(xyz="mm")
    nibabel.save(image, path)
    return path


def _ct_data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 1500, STORED_SHAPE).astype(np.int16)


def _label_data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 6, STORED_SHAPE).astype(np.uint8)


def _read(path):
    reader = get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    assert len(layers) == 1
    return layers[0]


# ---------------------------------------------------------------------------
# get_reader
# ---------------------------------------------------------------------------


def test_get_reader_declines_other_paths(tmp_path):
    folder = tmp_path / "volume.nii"
    folder.mkdir()
    for path in ("image.tif", "notes.txt", "archive.gz", ".nii.gz", str(folder)):
        assert get_reader(path) is None, path
    assert get_reader(["a.nii.gz", "b.nii.gz"]) is None
    assert get_reader("a.nii") is read_nifti
    assert get_reader("A.NII.GZ") is read_nifti
    assert layer_name("/data/ct.scan.nii.gz") == "ct.scan"
    assert layer_name("ct.nii") == "ct"


# ---------------------------------------------------------------------------
# Image or labels
# ---------------------------------------------------------------------------


def test_int16_ct_reads_as_image_and_uint8_labels_as_labels(tmp_path):
    ct = _read(_save(tmp_path / "ct.nii.gz", _ct_data(), _affine("RAS")))
    labels = _read(_save(tmp_path / "seg.nii.gz", _label_data(), _affine("RAS")))

    data, kwargs, layer_type = ct
    assert layer_type == "image"
    assert data.dtype == np.float32
    assert kwargs["name"] == "ct"
    assert kwargs["colormap"] == "gray"
    assert list(kwargs["contrast_limits"]) == [-200, 300]
    assert kwargs["metadata"]["advseg_kind"] == "ct"

    data, kwargs, layer_type = labels
    assert layer_type == "labels"
    assert data.dtype == np.uint8
    assert kwargs["name"] == "seg"
    assert kwargs["metadata"]["advseg_kind"] == "labels"
    assert "colormap" in kwargs  # the shared organ colours (values 0..5)


def test_label_heuristic():
    rng = np.random.default_rng(1)
    shape = (4, 6, 5)
    assert looks_like_labels(rng.integers(0, 6, shape).astype(np.float32))  # float, whole numbers
    assert looks_like_labels(np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    assert not looks_like_labels(np.arange(65, dtype=np.float32).reshape(5, 13, 1))  # too many values
    assert not looks_like_labels(np.array([[[-1.0, 0.0, 1.0]]], dtype=np.float32))  # negative: HU
    assert not looks_like_labels(np.array([[[0.5, 1.0]]], dtype=np.float32))  # fractional
    # A CT stored with a +1024 offset: non-negative, but hundreds of values.
    assert not looks_like_labels(rng.integers(0, 2000, (4, 32, 32)).astype(np.uint16))


def test_ct_with_offset_and_float_labels(tmp_path):
    offset_ct = (_ct_data().astype(np.int32) + 1024).astype(np.uint16)
    _, _, layer_type = _read(_save(tmp_path / "offset.nii", offset_ct, _affine("RAS")))
    assert layer_type == "image"
    _, _, layer_type = _read(_save(tmp_path / "float_seg.nii.gz", _label_data().astype(np.float32), _affine("RAS")))
    assert layer_type == "labels"


# ---------------------------------------------------------------------------
# Orientation, spacing and metadata
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ["RAS", "LPS"])
def test_canonical_order_scale_and_metadata(tmp_path, orientation):
    stored = _ct_data(3)
    path = _save(tmp_path / "ct.nii.gz", stored, _affine(orientation))
    data, kwargs, _ = _read(path)

    # Canonical (Z, Y, X) = ('S', 'P', 'L'), built here by hand from the stored axes.
    by_hand = stored.transpose(2, 1, 0)
    if orientation == "RAS":
        by_hand = by_hand[:, ::-1, ::-1]
    np.testing.assert_array_equal(data, by_hand.astype(np.float32))
    assert kwargs["scale"] == pytest.approx((ZOOMS[2], ZOOMS[1], ZOOMS[0]))

    meta = kwargs["metadata"]
    assert meta["advseg_path"] == str(path)
    affine = np.array(meta["advseg_affine"])
    assert affine.shape == (4, 4)
    assert nibabel.aff2axcodes(affine) == ("S", "P", "L")
    # The canonical affine sends each canonical voxel to the world position of its stored voxel.
    ijk = np.array([2, 3, 1])
    zyx = np.array([ijk[2], ijk[1], ijk[0]])
    if orientation == "RAS":
        zyx[1:] = (STORED_SHAPE[1] - 1 - ijk[1], STORED_SHAPE[0] - 1 - ijk[0])
    np.testing.assert_allclose(affine @ np.r_[zyx, 1], _affine(orientation) @ np.r_[ijk, 1])
    assert meta["advseg_source"].shape == STORED_SHAPE


@pytest.mark.parametrize("orientation", ["RAS", "LPS"])
def test_radiological_orientation(tmp_path, orientation):
    """Patient's left ends at the right of the displayed slice, anterior at the top."""
    X, Y, Z = STORED_SHAPE
    stored = np.zeros(STORED_SHAPE, dtype=np.uint8)
    if orientation == "RAS":  # index i grows towards the patient's right, j towards anterior
        left_i, anterior_j = 1, Y - 2
    else:  # LPS: i grows towards the left, j towards posterior
        left_i, anterior_j = X - 2, 1
    stored[left_i, Y // 2, 2] = 1  # a marker at the patient's left
    stored[X // 2, anterior_j, 2] = 2  # a marker at the front
    affine = _affine(orientation)
    # Check the markers' world positions (RAS+ mm: left is -x, anterior is +y) before trusting them.
    centre = affine @ np.r_[(np.array(STORED_SHAPE) - 1) / 2, 1]
    assert (affine @ np.r_[left_i, Y // 2, 2, 1])[0] < centre[0]
    assert (affine @ np.r_[X // 2, anterior_j, 2, 1])[1] > centre[1]

    data, _, layer_type = _read(_save(tmp_path / "markers.nii.gz", stored, affine))
    assert layer_type == "labels"
    rows, cols = np.nonzero(data[2] == 1)
    assert cols[0] >= X - 2, "patient's left should be at a large column index (screen right)"
    rows, cols = np.nonzero(data[2] == 2)
    assert rows[0] <= 1, "anterior should be at a small row index (screen top)"


# ---------------------------------------------------------------------------
# Round trips through the writers
# ---------------------------------------------------------------------------


def _layer_meta(kwargs: dict) -> dict:
    """What napari hands a writer: the layer's attributes (a subset is enough here)."""
    return {"name": kwargs["name"], "scale": list(kwargs["scale"]), "metadata": dict(kwargs["metadata"])}


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "oblique"])
@pytest.mark.parametrize("kind", ["ct", "labels"])
def test_round_trip_keeps_data_affine_and_header(tmp_path, orientation, kind):
    stored = _ct_data(5) if kind == "ct" else _label_data(5)
    affine = _affine(orientation)
    source = _save(tmp_path / f"in_{kind}.nii.gz", stored, affine)
    data, kwargs, layer_type = _read(source)
    assert layer_type == ("image" if kind == "ct" else "labels")

    writer = write_image if kind == "ct" else write_labels
    out = tmp_path / f"out_{kind}.nii.gz"
    written = writer(str(out), data, _layer_meta(kwargs))
    assert written == [str(out)]

    back = nibabel.load(out)
    assert back.get_data_dtype() == stored.dtype  # int16 HU stays int16, uint8 labels stay uint8
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), stored)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    assert int(back.header["sform_code"]) == 1 and int(back.header["qform_code"]) == 1
    # Overwriting is allowed (napari's save dialog has asked already).
    assert writer(str(out), data, _layer_meta(kwargs)) == [str(out)]


def _reoriented(path):
    image = nibabel.as_closest_canonical(nibabel.load(path))
    return np.asanyarray(image.dataobj), image.affine


@pytest.mark.parametrize("orientation", ["LPS", "oblique"])
def test_round_trip_from_affine_only(tmp_path, orientation):
    """Without the in-memory source geometry the canonical affine still places the data."""
    stored = _label_data(7)
    source = _save(tmp_path / "in.nii.gz", stored, _affine(orientation))
    data, kwargs, _ = _read(source)
    meta = _layer_meta(kwargs)
    del meta["metadata"]["advseg_source"]
    out = tmp_path / "out.nii"
    write_labels(str(out), data, meta)

    want_data, want_affine = _reoriented(source)
    got_data, got_affine = _reoriented(out)
    np.testing.assert_array_equal(got_data, want_data)
    np.testing.assert_allclose(got_affine, want_affine, atol=1e-5)
    again, again_kwargs, _ = _read(out)
    np.testing.assert_array_equal(again, data)
    np.testing.assert_allclose(again_kwargs["metadata"]["advseg_affine"], kwargs["metadata"]["advseg_affine"],
                               atol=1e-5)


def test_write_from_scale_only(tmp_path):
    """A layer made in napari (no plugin metadata) is written from its scale."""
    rng = np.random.default_rng(2)
    data = rng.normal(size=(4, 6, 5)).astype(np.float32) * 100
    out = tmp_path / "new.nii.gz"
    write_image(str(out), data, {"scale": [2.5, 0.8, 0.7], "metadata": {}})
    back = nibabel.load(out)
    assert back.get_data_dtype() == np.float32  # not whole numbers: stays float
    assert nibabel.aff2axcodes(back.affine) == ("R", "A", "S")
    np.testing.assert_allclose(back.header.get_zooms(), (0.7, 0.8, 2.5), rtol=1e-6)
    again, kwargs, layer_type = _read(out)
    assert layer_type == "image"
    np.testing.assert_array_equal(again, data)
    assert kwargs["scale"] == pytest.approx((2.5, 0.8, 0.7))


def test_writer_dtypes_and_errors(tmp_path):
    big = np.zeros((3, 4, 5), dtype=np.int32)
    big[0, 0, 0] = 300
    write_labels(str(tmp_path / "big.nii.gz"), big, {"scale": [1, 1, 1]})
    assert nibabel.load(tmp_path / "big.nii.gz").get_data_dtype() == np.int16

    hu = np.full((3, 4, 5), -1000.0, dtype=np.float32)
    write_image(str(tmp_path / "hu.nii.gz"), hu, {"scale": [1, 1, 1]})
    assert nibabel.load(tmp_path / "hu.nii.gz").get_data_dtype() == np.int16

    from napari_advseg.errors import AdvsegError

    with pytest.raises(AdvsegError, match="3D"):
        write_image(str(tmp_path / "flat.nii.gz"), np.zeros((4, 5)), {"scale": [1, 1]})
    with pytest.raises(AdvsegError, match="whole numbers"):
        write_labels(str(tmp_path / "frac.nii.gz"), np.full((2, 2, 2), 0.5), {"scale": [1, 1, 1]})


# ---------------------------------------------------------------------------
# Bad files: a notification, never an exception
# ---------------------------------------------------------------------------


def _bad_files(folder) -> dict:
    good = _save(folder / "good.nii.gz", _ct_data(), _affine("RAS"))
    raw = good.read_bytes()
    files = {}
    files["truncated gzip"] = folder / "truncated.nii.gz"
    files["truncated gzip"].write_bytes(raw[: len(raw) // 2])
    files["garbage gzip"] = folder / "garbage.nii.gz"
    files["garbage gzip"].write_bytes(raw[:20] + b"\x00" * 200)
    files["text"] = folder / "notes.nii"
    files["text"].write_text("this is not a NIfTI file\n" * 40)
    files["text gz"] = folder / "notes.nii.gz"
    files["text gz"].write_bytes(gzip.compress(b"plain text, no header\n" * 40))
    files["2D"] = _save(folder / "slice.nii.gz", np.zeros((8, 9), dtype=np.int16), np.eye(4))
    files["4D"] = _save(folder / "series.nii.gz", np.zeros((4, 5, 3, 2), dtype=np.int16), np.eye(4))
    files["missing"] = folder / "missing.nii.gz"
    return files


def test_bad_files_give_a_notification(tmp_path, monkeypatch):
    import napari.utils.notifications

    messages = []
    monkeypatch.setattr(napari.utils.notifications, "show_error", messages.append)
    for problem, path in _bad_files(tmp_path).items():
        reader = get_reader(str(path))
        assert reader is not None, problem
        assert reader(str(path)) == [(None,)], problem  # npe2's "read, no layers": napari adds nothing
        assert messages, problem
        message = messages.pop()
        assert str(path) in message and "\n" not in message, (problem, message)


# ---------------------------------------------------------------------------
# In a real viewer
# ---------------------------------------------------------------------------


@pytest.mark.gui
def test_viewer_open_and_save(make_napari_viewer, tmp_path):
    from napari.layers import Image, Labels

    ct_stored, labels_stored = _ct_data(9), _label_data(9)
    affine = _affine("oblique")
    ct_path = _save(tmp_path / "ct.nii.gz", ct_stored, affine)
    labels_path = _save(tmp_path / "labels.nii", labels_stored, affine)

    viewer = make_napari_viewer()
    [ct] = viewer.open(str(ct_path), plugin="napari-advseg")
    [labels] = viewer.open(str(labels_path), plugin="napari-advseg")
    assert isinstance(ct, Image) and isinstance(labels, Labels)
    assert ct.name == "ct" and labels.name == "labels"
    np.testing.assert_allclose(ct.scale, (ZOOMS[2], ZOOMS[1], ZOOMS[0]))
    np.testing.assert_allclose(labels.scale, ct.scale)
    assert tuple(ct.contrast_limits) == (-200, 300)
    assert ct.metadata["advseg_kind"] == "ct" and labels.metadata["advseg_kind"] == "labels"
    assert ct.data.shape == labels.data.shape == (STORED_SHAPE[2], STORED_SHAPE[1], STORED_SHAPE[0])
    # napari shows the last two axes as (row down, column right): the radiological view.
    assert viewer.dims.displayed == (1, 2)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9: scene.camera
    assert [getattr(o, "value", o) for o in camera.orientation2d] == ["down", "right"]

    out_ct, out_labels = tmp_path / "saved_ct.nii.gz", tmp_path / "saved_labels.nii.gz"
    assert ct.save(str(out_ct), plugin="napari-advseg") == [str(out_ct)]
    assert labels.save(str(out_labels), plugin="napari-advseg") == [str(out_labels)]
    for out, stored in ((out_ct, ct_stored), (out_labels, labels_stored)):
        back = nibabel.load(out)
        np.testing.assert_array_equal(np.asanyarray(back.dataobj), stored)
        np.testing.assert_allclose(back.affine, affine, atol=1e-5)


@pytest.mark.gui
def test_viewer_open_bad_files(make_napari_viewer, tmp_path):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    viewer = make_napari_viewer()
    for problem, path in _bad_files(tmp_path).items():
        if problem == "missing":
            continue  # napari itself refuses missing paths before asking a reader
        start = len(notification_manager.records)
        viewer.open(str(path), plugin="napari-advseg")  # must not raise
        assert len(viewer.layers) == 0, problem
        errors = [n for n in notification_manager.records[start:] if n.severity == NotificationSeverity.ERROR]
        assert errors and str(path) in errors[-1].message, problem
