"""DICOM out: the adversarial CT as a derived series in the input's geometry, segmentations as DICOM SEG on it.

Everything written is read back with pydicom, highdicom and the project's own
DICOM reader, and checked against the input series: geometry to 1e-3 mm,
pixel values exactly.
"""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
from nibabel import orientations as nio
from pydicom.uid import CTImageStorage, SegmentationStorage

from dicom_helpers import oblique_affine, raw_volume, sagittal_affine, write_equivalent_nifti, write_series
from napari_advseg.cli import main
from napari_advseg.errors import AdvsegError
from napari_advseg.io.dicom import load_dicom
from napari_advseg.io.dicom_write import write_ct_series, write_seg
from napari_advseg.io.geometry import invert_ornt, volume_from_array
from napari_advseg.io.nifti import load_ct
from napari_advseg.organs import ORGAN_CLASSES

ATOL_MM = 1e-3


def _floats(value) -> np.ndarray:
    return np.array([float(v) for v in value])


def _files(folder) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def _stored(canonical: np.ndarray, volume) -> np.ndarray:
    """A canonical array as the series stores it: (slice, row, column)."""
    stored = nio.apply_orientation(canonical, invert_ornt(volume.source.ornt_to_canonical))
    return np.transpose(stored, (2, 1, 0))


def _adversarial(volume, seed=1) -> np.ndarray:
    """Whole-number HU changed everywhere, some pushed to the scanner's bounds."""
    change = np.random.default_rng(seed).integers(-300, 300, volume.shape)
    return np.clip(volume.hu + change, -1024, 3071).astype(np.float32)


def _labels(volume, seed=2) -> np.ndarray:
    labels = np.random.default_rng(seed).integers(0, len(ORGAN_CLASSES), volume.shape).astype(np.uint8)
    labels[:, :2] = 0
    labels[labels == 2] = 0  # a segment without any pixels
    return labels


def _check_seg(path, series, volume, labels):
    """The SEG references the series, lies on its planes, and holds ``labels`` exactly."""
    seg = hd.seg.segread(path)
    assert seg.SOPClassUID == SegmentationStorage
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    assert seg.FrameOfReferenceUID == series.frame_of_reference_uid
    assert seg.StudyInstanceUID == series.study_uid
    assert [d.SegmentLabel for d in seg.SegmentSequence] == list(ORGAN_CLASSES[1:])
    ct = {ds.SOPInstanceUID: ds for ds in series.datasets}
    for frame in seg.PerFrameFunctionalGroupsSequence:  # each frame sits on the CT image it was made from
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(_floats(frame.PlanePositionSequence[0].ImagePositionPatient),
                                   _floats(ct[source].ImagePositionPatient), atol=ATOL_MM)
    shared = seg.SharedFunctionalGroupsSequence[0]
    first = series.datasets[0]
    np.testing.assert_allclose(_floats(shared.PlaneOrientationSequence[0].ImageOrientationPatient),
                               _floats(first.ImageOrientationPatient), atol=1e-6)
    np.testing.assert_allclose(_floats(shared.PixelMeasuresSequence[0].PixelSpacing), _floats(first.PixelSpacing),
                               atol=ATOL_MM)
    uids = [ds.SOPInstanceUID for ds in series.datasets]
    back = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                             relabel=True)
    assert np.array_equal(back, labels)
    # one frame per image and segment present there: empty frames are left out
    assert int(seg.NumberOfFrames) == sum(len(np.unique(plane[plane > 0])) for plane in labels)
    return seg


def test_dicom_series_out_reads_back_in_the_input_geometry(tmp_path):
    # a sagittal series stored as 12-bit unsigned pixels with RescaleIntercept -1024, files in shuffled order
    raw = raw_volume(0, shape=(16, 20, 6), high=3000)
    source_files = write_series(tmp_path / "in", raw, sagittal_affine(), signed=False)
    source = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in source_files)}
    volume = load_dicom(tmp_path / "in")
    adversarial = _adversarial(volume)

    series = write_ct_series(adversarial, volume, tmp_path / "out" / "adversarial", description="test")
    written = _files(series.folder)
    assert len(written) == len(source_files) and series.study == "source" and series.max_rounding_hu == 0
    for ds in written:
        original = source[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert ds.SOPClassUID == CTImageStorage
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "ADVERSARIAL" in ds.SeriesDescription
        assert ds.SeriesInstanceUID not in (series.study_uid, original.SeriesInstanceUID)
        assert ds.SOPInstanceUID not in source
        for tag in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
            assert ds[tag].value == original[tag].value, tag
        # the input's pixel encoding is kept
        assert (ds.BitsStored, ds.PixelRepresentation, float(ds.RescaleIntercept)) == (12, 0, -1024.0)
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            np.testing.assert_allclose(_floats(ds[tag].value), _floats(original[tag].value), atol=ATOL_MM)
    assert len({ds.SeriesInstanceUID for ds in written}) == 1

    back = load_dicom(series.folder)
    assert np.array_equal(back.hu, adversarial)  # pixel values exactly
    np.testing.assert_allclose(back.affine, volume.affine, atol=ATOL_MM)
    np.testing.assert_allclose(back.source.affine, volume.source.affine, atol=ATOL_MM)

    labels = _labels(volume)
    path, uid = write_seg(labels, volume, series, tmp_path / "out" / "seg.dcm", class_names=ORGAN_CLASSES,
                          description="adversarial segmentation", algorithm="unet.pt", algorithm_version="0123")
    seg = _check_seg(path, series, volume, _stored(labels, volume))
    assert seg.SOPInstanceUID == uid and seg.PatientID == "advseg-test"

    # existing output is refused unless asked; dropping the patient tags gives a fresh, unlinked study
    with pytest.raises(AdvsegError, match="exists already"):
        write_ct_series(adversarial, volume, series.folder, description="test")
    anonymous = write_ct_series(adversarial, volume, series.folder, description="test", drop_patient_tags=True,
                                overwrite=True)
    ds = _files(anonymous.folder)[0]
    original = next(iter(source.values()))
    assert anonymous.study == "fresh" and "SourceImageSequence" not in ds
    for tag in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert ds[tag].value != original[tag].value, tag
    assert np.array_equal(load_dicom(anonymous.folder).hu, adversarial)


def test_dicom_out_of_a_nifti_volume_makes_a_fresh_study(tmp_path):
    # an oblique NIfTI: axial DICOM slices along its canonical axes, placed by its affine
    nifti = write_equivalent_nifti(tmp_path / "ct.nii.gz", raw_volume(3, shape=(16, 20, 5)), oblique_affine())
    volume = load_ct(nifti)
    adversarial = _adversarial(volume)
    series = write_ct_series(adversarial, volume, tmp_path / "dicom", description="test")
    assert series.study == "fresh"
    first = _files(series.folder)[0]
    assert str(first.PatientName) == "Anonymous^advseg" and "SourceImageSequence" not in first
    back = load_dicom(series.folder)
    assert np.array_equal(back.hu, adversarial)
    np.testing.assert_allclose(back.affine, volume.affine, atol=ATOL_MM)
    labels = _labels(volume)
    path, _ = write_seg(labels, volume, series, tmp_path / "seg.dcm", class_names=ORGAN_CLASSES,
                       description="clean segmentation", algorithm="unet.pt", algorithm_version="0")
    _check_seg(path, series, volume, labels)

    # HU that are not whole numbers are rounded, and the series says by how much
    fractional = volume_from_array(adversarial + 0.25, volume.spacing)
    rounded = write_ct_series(fractional.hu, fractional, tmp_path / "rounded", description="test")
    assert rounded.max_rounding_hu == pytest.approx(0.25)
    assert np.abs(load_dicom(rounded.folder).hu - fractional.hu).max() <= 0.25


def test_sheared_volume_is_refused(tmp_path):
    volume = volume_from_array(np.zeros((3, 16, 16), np.float32))
    volume.affine[0, 1] = 0.5  # rows no longer perpendicular to the slices
    with pytest.raises(AdvsegError, match="sheared"):
        write_ct_series(volume.hu, volume, tmp_path / "out", description="test")
    assert not (tmp_path / "out").exists()


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_format_dicom_writes_a_series_and_segs(tiny_files, tmp_path, capsys):
    """`advseg sample --format both` of a DICOM series: the DICOM outputs are the NIfTI outputs, on the series."""
    ct = load_ct(tiny_files["ct"])
    raw = np.rint(ct.hu.transpose(2, 1, 0) + 1024).astype(np.int32)  # stored (columns, rows, slices)
    write_series(tmp_path / "in", raw, oblique_affine(spacing=(3.0, 3.0, 5.0)), description="phantom")
    volume = load_dicom(tmp_path / "in")
    out = tmp_path / "out"
    models = ["--target", tiny_files["target"], "--generator", tiny_files["generator"], "--device", "cpu"]
    code, said, err = _run(["sample", "--ct", tmp_path / "in", *models, "--out", out, "--slices", "3,5",
                            "--format", "both", "--name", "run1", "--quiet"], capsys)
    assert code == 0, err
    assert "in the input's study" in said
    sidecar = json.loads((out / "run1_sample.json").read_text())
    record = sidecar["dicom"]
    assert record["patient"] == "the input's" and record["series"]["folder"] == "run1_adversarial_dicom"

    nifti_hu = load_ct(out / "run1_adversarial_hu.nii.gz")
    back = load_dicom(out / "run1_adversarial_dicom")
    assert np.array_equal(back.hu, nifti_hu.hu)
    np.testing.assert_allclose(back.affine, volume.affine, atol=ATOL_MM)
    untouched = [z for z in range(volume.n_slices) if z not in (3, 5)]
    assert np.array_equal(back.hu[untouched], volume.hu[untouched])
    ct_files = sorted((out / "run1_adversarial_dicom").glob("*.dcm"))
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in ct_files]
    for key, name in (("segmentation", "adversarial_seg"), ("clean_segmentation", "clean_seg")):
        seg = hd.seg.segread(out / record[key]["file"])
        assert seg.SOPInstanceUID == record[key]["sop_instance_uid"]
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == record["series"]["series_uid"]
        labels = np.asarray(load_ct(out / f"run1_{name}.nii.gz").hu, np.uint8)
        pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                                   relabel=True)
        assert np.array_equal(pixels, _stored(labels, volume)), key

    # a NIfTI input makes a fresh study; --drop-patient-tags belongs to DICOM output
    code, said, err = _run(["sample", "--ct", tiny_files["ct"], *models, "--out", tmp_path / "fresh", "--slices",
                            "4", "--format", "dicom", "--quiet"], capsys)
    assert code == 0, err
    assert "fresh anonymous study" in said
    assert not list((tmp_path / "fresh").glob("*.nii.gz"))
    code, _, err = _run(["sample", "--ct", tiny_files["ct"], *models, "--out", tmp_path / "x",
                         "--drop-patient-tags", "--quiet"], capsys)
    assert code == 2 and "--format dicom" in err
