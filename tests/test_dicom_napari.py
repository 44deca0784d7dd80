"""DICOM in napari: the reader (folders, files, several series) and the Data tab's series choice."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest

from dicom_helpers import SHAPE, axial_affine, raw_volume, sagittal_affine, write_report, write_series
from napari_advseg._napari.reader import CT_CONTRAST_LIMITS, get_reader, read_dicom, read_nifti
from napari_advseg.io.dicom import load_dicom

FIRST, SECOND = "1.2.826.0.1.3680043.2.1125.88.1", "1.2.826.0.1.3680043.2.1125.88.2"


def _study(tmp_path):
    """Two series in one folder (axial and sagittal), plus an MR series that cannot be read as CT."""
    folder = tmp_path / "study"
    write_series(folder, raw_volume(0), axial_affine(), series_uid=FIRST, description="Axial 2.5", number=2,
                 prefix="ax")
    write_series(folder, raw_volume(1), sagittal_affine(), series_uid=SECOND, description="Sagittal", number=3,
                 prefix="sag", syntax="jpeg2000")
    return folder


def test_get_reader_takes_dicom_folders_files_and_lists(tmp_path):
    folder = tmp_path / "one"
    paths = write_series(folder, raw_volume(0), axial_affine())
    assert get_reader(str(folder)) is read_dicom
    assert get_reader(str(paths[0])) is read_dicom
    assert get_reader([str(p) for p in paths]) is read_dicom
    no_suffix = paths[0].with_name("IM0001")
    paths[0].rename(no_suffix)
    assert get_reader(str(no_suffix)) is read_dicom  # recognised by its DICM marker
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_text("no")
    assert get_reader(str(tmp_path / "other")) is None
    assert get_reader("ct.nii.gz") is read_nifti
    assert get_reader(["a.nii.gz", "b.nii.gz"]) is None


def test_reader_gives_one_hu_image_layer_per_series(tmp_path):
    folder = _study(tmp_path)
    layers = read_dicom(str(folder))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["Axial 2.5 (2)", "Sagittal (3)"]
    for (data, kwargs, kind), uid in zip(layers, (FIRST, SECOND)):
        volume = load_dicom(folder, series=uid)
        assert kind == "image"
        assert np.array_equal(data, volume.hu) and data.dtype == np.float32
        assert kwargs["scale"] == pytest.approx(volume.spacing)
        assert kwargs["colormap"] == "gray" and tuple(kwargs["contrast_limits"]) == CT_CONTRAST_LIMITS
        metadata = kwargs["metadata"]
        assert metadata["advseg_kind"] == "ct" and metadata["advseg_series_uid"] == uid
        assert metadata["advseg_path"] == str(folder)
        np.testing.assert_allclose(metadata["advseg_affine"], volume.affine)
        assert metadata["advseg_source"].shape == SHAPE
    # one file of a series: that series only, named by its description
    [(data, kwargs, _)] = read_dicom(str(next(folder.glob("sag*.dcm"))))
    assert kwargs["name"] == "Sagittal" and kwargs["metadata"]["advseg_series_uid"] == SECOND


def test_reader_opens_the_ct_and_lists_what_it_skipped(tmp_path, monkeypatch):
    import napari.utils.notifications

    errors, infos = [], []
    monkeypatch.setattr(napari.utils.notifications, "show_error", errors.append)
    monkeypatch.setattr(napari.utils.notifications, "show_info", infos.append)
    folder = _study(tmp_path)
    write_series(folder, raw_volume(2), axial_affine(), description="MR", number=9, modality="MR", prefix="mr")
    write_series(folder / "scout", raw_volume(3)[:, :, :2], sagittal_affine(), description="Topogram", number=1,
                 image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_report(folder / "SR" / "dose.dcm")
    layers = read_dicom(str(folder))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["Axial 2.5 (2)", "Sagittal (3)"]
    assert errors == []
    [message] = infos
    assert message.startswith("skipped 3 DICOM series or objects that are not a CT volume: ")
    assert '"Topogram" (2 slices, CT): a localizer (scout) image, not a CT volume' in message
    assert '"MR" (12 slices, MR): modality MR, not CT' in message
    assert '"Dose Report" (1 file, SR): no image (X-Ray Radiation Dose SR Storage)' in message

    # a CT series that fails a check is an error, the others still open
    bad = write_series(folder / "gap", raw_volume(4), axial_affine(), description="Gap", number=5, prefix="g")
    bad[4].unlink()
    layers = read_dicom(str(folder))
    assert len(layers) == 2 and errors[-1].startswith("1 DICOM series not opened: ") and "missing slice" in errors[-1]

    empty = tmp_path / "no_series"
    empty.mkdir()
    (empty / "x.dcm").write_bytes(b"not really")
    assert read_dicom(str(empty / "x.dcm")) == [(None,)]
    assert "x.dcm: not a DICOM file" in errors[-1]


@pytest.mark.gui
def test_viewer_opens_a_dicom_folder_and_saves_it_as_nifti(make_napari_viewer, tmp_path):
    from napari.layers import Image

    folder = tmp_path / "axial"
    write_series(folder, raw_volume(0), axial_affine())
    volume = load_dicom(folder)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(folder), plugin="napari-advseg")
    assert isinstance(layer, Image) and layer.name == "synthetic CT"
    np.testing.assert_allclose(layer.scale, volume.spacing)
    assert np.array_equal(layer.data, volume.hu)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert [getattr(o, "value", o) for o in camera.orientation2d] == ["down", "right"]
    out = tmp_path / "saved.nii.gz"
    assert layer.save(str(out), plugin="napari-advseg") == [str(out)]
    saved = nibabel.load(out)
    assert saved.shape == SHAPE  # the series' own (columns, rows, slices)
    np.testing.assert_allclose(saved.affine, volume.source.affine, atol=1e-4)


@pytest.mark.gui
def test_data_tab_lists_the_series_and_loads_the_chosen_one(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    import napari.utils.notifications

    from napari_advseg.widgets import AttackWidget

    folder = _study(tmp_path)
    viewer = make_napari_viewer()
    widget = AttackWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Adversarial attack")
    data = widget.data
    try:
        assert data.dicom.open_dicom_folder(folder) == 2
        assert len(viewer.layers) == 0  # nothing read before the user chooses
        assert data.dicom.series_combo.isEnabled() and data.dicom.series_button.isEnabled()
        items = [data.dicom.series_combo.itemText(i) for i in range(data.dicom.series_combo.count())]
        assert items == [f"Axial 2.5 (12 slices, CT) {FIRST}", f"Sagittal (12 slices, CT) {SECOND}"]
        assert "holds 2 CT series" in data.info_label.text()
        combo = data.dicom.series_combo  # readable: the list opens as wide as its longest entry
        assert combo.view().minimumWidth() >= combo.view().sizeHintForColumn(0)
        assert combo.minimumSizeHint().width() >= combo.fontMetrics().horizontalAdvance("x" * 20)

        data.dicom.series_combo.setCurrentIndex(1)
        data.dicom.series_button.click()  # read in the background: the dock stays responsive
        qtbot.waitUntil(lambda: data.dicom.series_job is None, timeout=30_000)
        assert [layer.name for layer in viewer.layers] == ["Sagittal"]
        assert data.ct_layer().name == "Sagittal"
        volume = widget.session.volume
        expected = load_dicom(folder, series=SECOND)
        assert volume.series_uid == SECOND
        assert np.array_equal(volume.hu, expected.hu)
        np.testing.assert_allclose(volume.affine, expected.affine, atol=1e-9)

        data.dicom.series_combo.setCurrentIndex(0)
        data.dicom.series_button.click()
        qtbot.waitUntil(lambda: data.dicom.series_job is None, timeout=30_000)
        assert data.ct_layer().name == "Axial 2.5" and widget.session.volume.series_uid == FIRST

        data.dicom.series_combo.setCurrentIndex(1)  # loaded again: its layer is chosen, no second copy
        assert data.dicom.load_series() is False
        assert [layer.name for layer in viewer.layers] == ["Sagittal", "Axial 2.5"]
        assert data.ct_layer().name == "Sagittal" and widget.session.volume.series_uid == SECOND
        assert "open already" in data.info_label.text()

        single = tmp_path / "single"
        write_series(single, raw_volume(3), axial_affine(), description="Only one")
        assert data.dicom.open_dicom_folder(single) == 1  # one series: read at once
        qtbot.waitUntil(lambda: data.dicom.series_job is None, timeout=30_000)
        assert data.ct_layer().name == "Only one" and not data.dicom.series_combo.isEnabled()

        # a mixed folder: its CT volume is read at once, what it skipped is said
        infos = []
        monkeypatch.setattr(napari.utils.notifications, "show_info", infos.append)
        mixed = tmp_path / "mixed"
        write_series(mixed / "ct", raw_volume(4), axial_affine(), description="Venous")
        write_series(mixed / "scout", raw_volume(5)[:, :, :2], sagittal_affine(), description="Scout",
                     image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
        assert data.dicom.open_dicom_folder(mixed) == 1
        qtbot.waitUntil(lambda: data.dicom.series_job is None, timeout=30_000)
        assert data.ct_layer().name == "Venous"
        assert len(infos) == 1 and '"Scout" (2 slices, CT): a localizer (scout) image' in infos[0]
    finally:
        widget.close()
