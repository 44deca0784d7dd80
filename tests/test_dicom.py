"""DICOM CT series (napari_advseg.io.dicom): the same canonical volume as the equivalent NIfTI, and clear errors.

Every series here is written by the tests (tests/dicom_helpers.py): a small
synthetic CT stored the way scanners store it, in three geometries (axial;
sagittal with the files' slice order against the normal; an oblique axial
stack) and five transfer syntaxes (Explicit and Implicit VR Little Endian,
JPEG 2000 Lossless, RLE Lossless, JPEG Lossless SV1), in shuffled file names.
"""

from __future__ import annotations

import shutil

import nibabel
import numpy as np
import pydicom
import pytest

from dicom_helpers import (SHAPE, axial_affine, hounsfield, oblique_affine, raw_volume, sagittal_affine,
                           write_equivalent_nifti, write_series)
from napari_advseg.errors import InputFileError
from napari_advseg.io.dicom import (SeveralSeriesError, find_series, is_dicom_file, load_dicom,
                                    looks_like_dicom)
from napari_advseg.io.nifti import load_ct, load_labels
from napari_advseg.io.nifti_save import save_volume
from napari_advseg.io.volumes import input_kind, load_volume, volume_source

GEOMETRIES = {"axial": axial_affine(), "sagittal": sagittal_affine(), "oblique": oblique_affine()}
SYNTAXES = {  # name -> (pydicom transfer syntax, signed pixels)
    "explicit": (pydicom.uid.ExplicitVRLittleEndian, True),
    "implicit": (pydicom.uid.ImplicitVRLittleEndian, True),
    "jpeg2000": (pydicom.uid.JPEG2000Lossless, True),
    "rle": (pydicom.uid.RLELossless, True),
    "jpeg-lossless": (pydicom.uid.JPEGLosslessSV1, False),
}
AFFINE_ATOL = 1e-4  # mm


def _series(tmp_path, geometry="axial", syntax="explicit", seed=0, **kwargs):
    if syntax == "jpeg-lossless":
        pytest.importorskip("imagecodecs", reason="imagecodecs encodes the JPEG lossless fixture")
    folder = tmp_path / f"{geometry}_{syntax}_{seed}"
    raw = raw_volume(seed)
    paths = write_series(folder, raw, GEOMETRIES[geometry], syntax=syntax, signed=SYNTAXES[syntax][1],
                         seed=seed, **kwargs)
    return folder, paths, raw


def _edit(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path)


# ---------------------------------------------------------------------------
# The same volume as NIfTI
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_dicom_gives_the_nifti_array_and_affine(tmp_path, geometry, syntax):
    folder, paths, raw = _series(tmp_path, geometry, syntax)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == SYNTAXES[syntax][0]
    nifti = load_ct(write_equivalent_nifti(tmp_path / "same.nii.gz", raw, GEOMETRIES[geometry]))

    volume = load_dicom(folder)
    assert volume.hu.dtype == np.float32 and volume.hu.flags.c_contiguous
    assert volume.shape == nifti.shape
    assert np.array_equal(volume.hu, nifti.hu)  # lossless: every voxel, exactly
    np.testing.assert_allclose(volume.affine, nifti.affine, rtol=0, atol=AFFINE_ATOL)
    np.testing.assert_allclose(volume.spacing, nifti.spacing, rtol=0, atol=AFFINE_ATOL)
    assert nibabel.aff2axcodes(volume.affine) == ("S", "P", "L")
    assert volume.series_uid == str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    assert volume.path == str(folder)
    # HU: RescaleIntercept -1024 applied to the stored values
    assert volume.hu.min() == raw.min() - 1024 and volume.hu.max() == raw.max() - 1024


def test_pylibjpeg_decoders_are_installed():
    """The compressed syntaxes scanners use decode through the declared pylibjpeg plugins."""
    from pydicom.pixels.decoders.base import get_decoder

    for syntax in (pydicom.uid.JPEG2000Lossless, pydicom.uid.JPEGLosslessSV1, pydicom.uid.JPEGLossless,
                   pydicom.uid.JPEGLSLossless):
        decoder = get_decoder(syntax)
        assert decoder.is_available and "pylibjpeg" in decoder.available_plugins, syntax.name


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_brightest_voxel_lands_where_its_dicom_tags_put_it(tmp_path, geometry):
    """World position from the DICOM tags by hand (LPS -> RAS) against the canonical affine."""
    folder, paths, raw = _series(tmp_path, geometry)
    volume = load_dicom(folder)
    index = np.unravel_index(np.argmax(volume.hu), volume.shape)
    assert volume.hu[index] == raw.max() - 1024 and np.count_nonzero(volume.hu == volume.hu[index]) == 1

    for path in paths:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        if pixels.max() == raw.max():
            break
    row, column = np.unravel_index(np.argmax(pixels), pixels.shape)
    orientation = np.array(ds.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    lps = (np.array(ds.ImagePositionPatient, dtype=float) + column * column_spacing * orientation[:3]
           + row * row_spacing * orientation[3:])
    expected_ras = lps * np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose((volume.affine @ np.array([*index, 1.0]))[:3], expected_ras, atol=AFFINE_ATOL)


def test_axial_series_is_stacked_in_canonical_order(tmp_path):
    """Axial LPS storage (columns -> left, rows -> posterior, slices -> superior) is canonical as is."""
    folder, _, raw = _series(tmp_path, "axial")
    volume = load_dicom(folder)
    assert volume.shape == (SHAPE[2], SHAPE[1], SHAPE[0])
    assert volume.hu[3, 2, 1] == raw[1, 2, 3] - 1024  # the marker voxel (i, j, k) = (1, 2, 3)
    np.testing.assert_array_equal(volume.hu, hounsfield(raw).transpose(2, 1, 0))
    assert volume.spacing == pytest.approx((2.5, 0.8, 0.75), abs=1e-6)
    assert volume.source.shape == SHAPE
    np.testing.assert_allclose(volume.source.affine, axial_affine(), atol=AFFINE_ATOL)


def test_one_file_or_a_list_of_files_read_the_same_series(tmp_path):
    folder, paths, _ = _series(tmp_path)
    reference = load_dicom(folder)
    for given in (paths[5], list(reversed(paths)), [str(p) for p in paths]):
        volume = load_dicom(given)
        assert np.array_equal(volume.hu, reference.hu)
        np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-9)
    assert input_kind(folder) == input_kind(paths[0]) == input_kind(paths) == "dicom"
    assert np.array_equal(load_volume(folder).hu, reference.hu)


def test_other_files_and_subfolders(tmp_path):
    """Files that are not DICOM are ignored; a series in sub-folders is found; no DICOM is an error."""
    folder = tmp_path / "study"
    write_series(folder / "a" / "b", raw_volume(1), axial_affine())
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "a" / "README").write_bytes(b"\0" * 300)
    volume = load_dicom(folder)
    assert volume.shape == (SHAPE[2], SHAPE[1], SHAPE[0])
    assert looks_like_dicom(folder) and is_dicom_file(next((folder / "a" / "b").iterdir()))

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    assert not looks_like_dicom(empty)
    with pytest.raises(InputFileError, match="holds no DICOM image files") as info:
        load_dicom(empty)
    assert str(empty) in str(info.value)


def test_rescale_slope_and_unsigned_storage(tmp_path):
    raw = raw_volume(2, high=3800)
    folder = tmp_path / "slope"
    write_series(folder, raw, axial_affine(), slope=0.5, intercept=-1000.0, signed=False)
    volume = load_dicom(folder)
    np.testing.assert_array_equal(volume.hu, (raw * 0.5 - 1000.0).astype(np.float32).transpose(2, 1, 0))


def test_outputs_are_written_in_the_series_geometry(tmp_path):
    """save_volume writes NIfTI in the DICOM's patient geometry; read back, the same array and grid."""
    folder, _, raw = _series(tmp_path, "sagittal", "jpeg2000")
    volume = load_dicom(folder)
    out = save_volume(volume.hu, volume, tmp_path / "out.nii.gz", dtype=np.int16)
    image = nibabel.load(out)
    assert image.shape == SHAPE
    np.testing.assert_allclose(image.affine, volume.source.affine, atol=AFFINE_ATOL)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    np.testing.assert_allclose(image.header.get_qform(), volume.source.affine, atol=AFFINE_ATOL)
    again = load_ct(out)
    assert np.array_equal(again.hu, volume.hu)
    np.testing.assert_allclose(again.affine, volume.affine, atol=AFFINE_ATOL)
    # and a label map on that grid is accepted for the DICOM CT
    labels = save_volume((volume.hu > 0).astype(np.uint8), volume, tmp_path / "labels.nii.gz")
    assert load_labels(labels, volume).sum() == np.count_nonzero(volume.hu > 0)


def test_volume_source_for_sidecars(tmp_path):
    folder, paths, raw = _series(tmp_path)
    volume = load_dicom(folder)
    uid = str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    assert volume_source(volume) == {"kind": "dicom", "path": str(folder), "series_uid": uid}
    nifti = load_ct(write_equivalent_nifti(tmp_path / "ct.nii.gz", raw, axial_affine()))
    assert volume_source(nifti) == {"kind": "nifti", "path": str(tmp_path / "ct.nii.gz")}
    with pytest.raises(InputFileError, match="NIfTI file, not DICOM"):
        load_volume(tmp_path / "ct.nii.gz", series=uid)


# ---------------------------------------------------------------------------
# Several series
# ---------------------------------------------------------------------------


def test_several_series_are_listed_and_one_can_be_chosen(tmp_path):
    folder = tmp_path / "study"
    write_series(folder, raw_volume(0), axial_affine(), series_uid="1.2.826.0.1.3680043.2.1125.1",
                 description="Abdomen 2.5 mm", number=3, prefix="a")
    write_series(folder, raw_volume(1)[:, :, :7], axial_affine(), series_uid="1.2.826.0.1.3680043.2.1125.2",
                 description="Bone kernel", number=4, prefix="b")
    found = find_series(folder)
    assert [(s.uid, s.description, s.n_files) for s in found] == [
        ("1.2.826.0.1.3680043.2.1125.1", "Abdomen 2.5 mm", 12), ("1.2.826.0.1.3680043.2.1125.2", "Bone kernel", 7)]

    with pytest.raises(SeveralSeriesError) as info:
        load_dicom(folder)
    message = str(info.value)
    assert message.startswith(f"{folder}: holds 2 DICOM series; choose one")
    assert '1.2.826.0.1.3680043.2.1125.1 "Abdomen 2.5 mm" (12 slices, CT)' in message
    assert '1.2.826.0.1.3680043.2.1125.2 "Bone kernel" (7 slices, CT)' in message
    assert "--series" in message and "\n" not in message
    assert len(info.value.series) == 2

    chosen = load_dicom(folder, series="1.2.826.0.1.3680043.2.1125.2")
    assert chosen.shape == (7, SHAPE[1], SHAPE[0]) and chosen.series_uid == "1.2.826.0.1.3680043.2.1125.2"
    np.testing.assert_array_equal(chosen.hu, hounsfield(raw_volume(1)[:, :, :7]).transpose(2, 1, 0))
    with pytest.raises(InputFileError, match=r"holds no DICOM series 9\.9\.9; it holds 1\.2\.826"):
        load_dicom(folder, series="9.9.9")

    # A list of files from both series is "mixed" too; one file picks its own series.
    files = sorted(folder.iterdir())
    with pytest.raises(SeveralSeriesError):
        load_dicom(files)
    assert load_dicom(folder / "b0002.dcm").series_uid == "1.2.826.0.1.3680043.2.1125.2"


# ---------------------------------------------------------------------------
# Bad series: one clear message naming the file (or folder) and the problem
# ---------------------------------------------------------------------------


def _bad_missing(tmp_path):
    folder, paths, _ = _series(tmp_path)
    paths[5].unlink()
    return folder, paths[6], r"missing slice\(s\): 5 mm from the previous slice \S+\.dcm, 2 times the slice " \
                             r"spacing of 2\.5 mm \(about 1 slice\(s\) missing\)"


def _bad_uneven(tmp_path):
    folder, paths, _ = _series(tmp_path)
    ds = pydicom.dcmread(paths[7])
    position = [float(v) for v in ds.ImagePositionPatient]
    _edit(paths[7], ImagePositionPatient=[position[0], position[1], position[2] + 1.0])
    return folder, paths[7], r"uneven slice spacing: 3\.5 mm from the previous slice \S+\.dcm, while the " \
                             r"slices are 2\.5 mm apart elsewhere"


def _bad_modality(tmp_path):
    folder = tmp_path / "mr"
    paths = write_series(folder, raw_volume(), axial_affine(), modality="MR")
    return folder, sorted(paths)[0], r"modality MR, not CT: only CT series \(Hounsfield units\) can be read"


def _bad_orientation(tmp_path):
    folder, paths, _ = _series(tmp_path)
    _edit(paths[4], ImageOrientationPatient=[1, 0, 0, 0, 0.96, -0.28])
    return folder, paths[4], r"has ImageOrientationPatient \(1, 0, 0, 0, 0\.96, -0\.28\) but \S+\.dcm has " \
                             r"\(1, 0, 0, 0, 1, 0\): the slices are not parallel \(mixed orientations\)"


def _bad_size(tmp_path):
    folder, paths, _ = _series(tmp_path)
    ds = pydicom.dcmread(paths[2])
    ds.set_pixel_data(np.zeros((SHAPE[1] + 2, SHAPE[0]), np.int16), photometric_interpretation="MONOCHROME2",
                      bits_stored=16)
    ds.save_as(paths[2])
    return folder, paths[2], r"is 34 x 40 pixels \(rows x columns\) but \S+\.dcm is 32 x 40: the slices differ " \
                             r"in size"


def _bad_pixel_spacing(tmp_path):
    folder, paths, _ = _series(tmp_path)
    _edit(paths[3], PixelSpacing=[0.8, 0.7])
    return folder, paths[3], r"has PixelSpacing \(0\.8, 0\.7\) mm but \S+\.dcm has \(0\.8, 0\.75\): the slices " \
                             r"differ in pixel size"


def _bad_duplicate(tmp_path):
    folder, paths, _ = _series(tmp_path)
    shutil.copy(paths[4], folder / "copy.dcm")
    _edit(folder / "copy.dcm", SOPInstanceUID=pydicom.uid.generate_uid())
    return folder, None, r"lies at the same position along the slice normal as \S+\.dcm \(-21\.25 mm\): " \
                         r"duplicated slices, or several acquisitions in one series"


def _bad_tilt(tmp_path):
    folder, paths, _ = _series(tmp_path)
    for k, path in enumerate(paths):  # each slice shifted 0.4 mm further in y: a gantry tilt
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        _edit(path, ImagePositionPatient=[x, y + 0.4 * k, z])
    return folder, paths[-1], r"is shifted 4\.4 mm within the slice plane relative to \S+\.dcm: the slices are " \
                              r"not stacked along their normal \(gantry tilt"


def _bad_single(tmp_path):
    folder, paths, _ = _series(tmp_path)
    for path in paths[1:]:
        path.unlink()
    ds = pydicom.dcmread(paths[0])
    del ds.SliceThickness
    ds.save_as(paths[0])
    return folder, paths[0], r"is the only slice of its series and has neither SliceThickness nor " \
                             r"SpacingBetweenSlices: the volume's third axis is unknown"


BAD = {"missing slice": _bad_missing, "uneven spacing": _bad_uneven, "MR modality": _bad_modality,
       "mixed orientation": _bad_orientation, "mixed size": _bad_size, "mixed pixel spacing": _bad_pixel_spacing,
       "duplicate position": _bad_duplicate, "gantry tilt": _bad_tilt, "single slice": _bad_single}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_series_name_the_file_and_the_problem(tmp_path, kind):
    folder, culprit, pattern = BAD[kind](tmp_path)
    with pytest.raises(InputFileError) as info:
        load_dicom(folder)
    message = str(info.value)
    print(f"{kind}: {message}")  # shown with -s: the messages the report quotes
    assert "\n" not in message
    assert str(folder) in message  # every message names the file, which lies in the folder
    if culprit is not None:
        assert message.startswith(f"{culprit}: "), message
    assert __import__("re").search(pattern, message), message


def test_corrupt_file_and_undecodable_pixels(tmp_path):
    folder, paths, _ = _series(tmp_path, syntax="jpeg2000")
    ds = pydicom.dcmread(paths[3])
    frame = bytearray(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1).__next__())
    ds.PixelData = pydicom.encaps.encapsulate([bytes(frame[: len(frame) // 3])])
    ds.save_as(paths[3])
    with pytest.raises(InputFileError) as info:
        load_dicom(folder)
    message = str(info.value)
    assert message.startswith(f"{paths[3]}: could not decode the pixel data, JPEG 2000 Image Compression "
                              "(Lossless Only) (1.2.840.10008.1.2.4.90): RuntimeError: ")
    assert "pylibjpeg: Error decoding the J2K data" in message and "\n" not in message  # each plugin's reason

    paths[5].write_bytes(paths[5].read_bytes()[:200])  # DICM preamble, then cut off
    with pytest.raises(InputFileError, match="could not be read as DICOM") as info:
        load_dicom(folder)
    assert str(paths[5]) in str(info.value)


# ---------------------------------------------------------------------------
# What real archives hold
# ---------------------------------------------------------------------------


def _read(path, **kwargs):
    """load_dicom, and the DicomNotice lines it gave."""
    import warnings

    from napari_advseg.io.dicom import DicomNotice

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = load_dicom(path, **kwargs)
    return volume, [str(w.message) for w in caught if issubclass(w.category, DicomNotice)]


def test_blank_uids_are_grouped_by_what_else_the_files_hold(tmp_path):
    """The anonymised JPEG 2000 series: Series/Study/SOP Instance/SOP Class UIDs blank, file meta intact."""
    folder = tmp_path / "anonymised"
    raw = raw_volume(3)
    paths = write_series(folder, raw, axial_affine(), syntax="jpeg2000", blank_uids=True, number=4)
    ds = pydicom.dcmread(paths[0])
    assert ds.SeriesInstanceUID == "" and ds.SOPClassUID == "" and ds.file_meta.MediaStorageSOPClassUID
    volume, notes = _read(folder)
    np.testing.assert_array_equal(volume.hu, hounsfield(raw).transpose(2, 1, 0))
    assert volume.series_uid == "series-4"
    [note] = notes
    print(note)
    assert note == (f"{folder}: 12 DICOM image files without SeriesInstanceUID (blank or missing), grouped into 1 "
                    "series by modality, SOP class, series number, series description, orientation, size and frame "
                    "of reference")

    # a second anonymised series beside it: told apart by its number, chosen by its stand-in name
    write_series(folder, raw_volume(4)[:, :, :5], axial_affine(), blank_uids=True, number=6, prefix="b")
    found = find_series(folder)
    assert [(s.uid, s.n_images, s.uid_missing) for s in found] == [("series-4", 12, True), ("series-6", 5, True)]
    with pytest.raises(SeveralSeriesError, match=r"series-4 \"synthetic CT\" \(12 slices, CT; no SeriesInstanceUID\)"):
        load_dicom(folder)
    assert load_dicom(folder, series="series-6").shape == (5, SHAPE[1], SHAPE[0])


def test_blank_uids_with_two_acquisitions_are_split_by_acquisition(tmp_path):
    folder = tmp_path / "two"
    for time, seed in (("101500", 0), ("103000", 1)):
        paths = write_series(folder, raw_volume(seed), axial_affine(), blank_uids=True, prefix=time)
        for path in paths:
            _edit(path, AcquisitionTime=time)
    found = find_series(folder)
    assert [s.n_images for s in found] == [12, 12] and [s.uid for s in found] == ["series-1", "series-1-2"]
    assert found.notes[0].endswith("frame of reference, and by acquisition number and time")


def test_a_mixed_folder_gives_its_ct_volume_and_lists_the_rest(tmp_path):
    from dicom_helpers import write_report

    study = tmp_path / "export"
    raw = raw_volume(5)
    write_series(study / "S2", raw, axial_affine(), number=2, description="Abdomen", syntax="rle")
    write_series(study / "S1", np.full((40, 32, 2), 900), sagittal_affine(), number=1, description="Topogram",
                 image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_series(study / "S3", raw_volume(6)[:, :, :4], axial_affine(), number=3, modality="PT", description="PET")
    write_series(study / "S998", raw_volume(7)[:, :, :1], axial_affine(), number=998, description="Dose screen",
                 sop_class=pydicom.uid.SecondaryCaptureImageStorage)
    write_series(study / "S4", raw_volume(8)[:, :, :1], axial_affine(), number=4, description="Single")
    write_report(study / "S997" / "SR0001")
    found = find_series(study)
    assert [s.description for s in found] == ["Abdomen"]
    assert {s.description: s.skipped for s in found.skipped} == {
        "Topogram": "a localizer (scout) image, not a CT volume",
        "PET": "modality PT, not CT: only CT series (Hounsfield units) can be read",
        "Single": "a single image beside the multi-slice CT series, not a volume",
        "Dose screen": "a secondary capture (Secondary Capture Image Storage), not a CT acquisition",
        "Dose Report": "no image (X-Ray Radiation Dose SR Storage)",
    }
    volume, notes = _read(study)
    np.testing.assert_array_equal(volume.hu, hounsfield(raw).transpose(2, 1, 0))
    [note] = notes
    print(note)
    assert note.startswith(f'{study}: read {found[0].uid} "Abdomen" (12 slices, CT); skipped 5 DICOM series or '
                           "objects that are not a CT volume: ")
    assert "\n" not in note
    # the single image can still be asked for by its UID: a one-slice volume, SliceThickness deep
    single = next(s for s in found.skipped if s.description == "Single")
    one = load_dicom(study, series=single.uid)
    assert one.shape == (1, SHAPE[1], SHAPE[0]) and one.spacing[0] == pytest.approx(2.5)

    # nothing that is a CT volume: one line listing what there is
    for path in (study / "S2").iterdir():
        path.unlink()
    for path in (study / "S4").iterdir():
        path.unlink()
    with pytest.raises(InputFileError) as info:
        load_dicom(study)
    print(info.value)
    assert str(info.value).startswith(f"{study}: holds no CT volume; skipped 4 DICOM series or objects")


def test_enhanced_ct_gives_the_single_frame_volume(tmp_path):
    from dicom_helpers import write_enhanced

    raw = raw_volume(9)
    single = load_dicom(write_series(tmp_path / "single", raw, sagittal_affine())[0].parent)
    path = write_enhanced(tmp_path / "enhanced" / "mf.dcm", raw, sagittal_affine())
    for given in (path.parent, path):
        volume = load_dicom(given)
        assert np.array_equal(volume.hu, single.hu)
        np.testing.assert_allclose(volume.affine, single.affine, atol=AFFINE_ATOL)
    [series] = find_series(path.parent)
    assert series.n_files == 1 and series.n_images == SHAPE[2]
    assert "(12 slices in 1 multi-frame file, CT)" in series.label()

    # per-frame rescale values, compressed
    intercepts = [-1024.0 - 3 * k for k in range(SHAPE[2])]
    path = write_enhanced(tmp_path / "rescaled" / "mf.dcm", raw, axial_affine(), slopes=[2.0] * SHAPE[2],
                          intercepts=intercepts, syntax="jpeg2000")
    expected = raw * 2.0 + np.array(intercepts)[np.newaxis, np.newaxis, :]
    np.testing.assert_array_equal(load_dicom(path).hu, expected.astype(np.float32).transpose(2, 1, 0))

    # a frame out of place is named by its frame number
    ds = pydicom.dcmread(path)
    position = ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence[0]
    position.ImagePositionPatient = [float(v) for v in position.ImagePositionPatient[:2]] + [100.0]
    ds.save_as(path)
    with pytest.raises(InputFileError, match=r"mf\.dcm: frame \d+: missing slice\(s\): 5 mm from the "
                                             r"previous slice frame \d+ of mf\.dcm") as info:
        load_dicom(path)
    print(info.value)


def test_dicomdir_file_sets_and_files_without_preamble_or_name(tmp_path):
    from pydicom.fileset import FileSet

    from napari_advseg._napari.reader import get_reader, read_dicom

    raw = raw_volume(10)
    paths = write_series(tmp_path / "source", raw, oblique_affine())
    reference = load_dicom(tmp_path / "source")
    fileset = FileSet()
    for path in paths:
        fileset.add(pydicom.dcmread(path))
    fileset.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    assert dicomdir.is_file() and not any(p.suffix for p in (tmp_path / "media").rglob("IM*"))
    for given in (tmp_path / "media", dicomdir):
        volume = load_dicom(given)
        assert np.array_equal(volume.hu, reference.hu)
    assert get_reader(str(dicomdir)) is read_dicom

    bare = write_series(tmp_path / "bare", raw, oblique_affine(), preamble=False, suffix="")
    assert bare[0].read_bytes()[:2] == b"\x08\x00" and is_dicom_file(bare[0]) and looks_like_dicom(bare[0].parent)
    (tmp_path / "bare" / "junk.bin").write_bytes(b"\x08\x00\x05\x00CS" + bytes(range(256)) * 4)  # looks, is not
    assert np.array_equal(load_dicom(tmp_path / "bare").hu, reference.hu)
    assert get_reader(str(bare[0])) is read_dicom


def test_padding_outside_the_field_of_view_is_air(tmp_path):
    raw = raw_volume(11, low=0, high=2000)
    raw[:, :3, :] = -2000  # stored padding, below air once rescaled
    folder = tmp_path / "padded"
    write_series(folder, raw, axial_affine(), padding=-2000)
    volume = load_dicom(folder)
    expected = hounsfield(raw)
    expected[:, :3, :] = -1024.0
    np.testing.assert_array_equal(volume.hu, expected.transpose(2, 1, 0))


def test_valid_file_missing_a_tag_and_corrupt_files_are_told_apart(tmp_path):
    folder, paths, _ = _series(tmp_path)
    ds = pydicom.dcmread(paths[2])
    del ds.Rows
    ds.save_as(paths[2])
    with pytest.raises(InputFileError) as info:
        load_dicom(folder)
    print(info.value)
    assert str(info.value) == (f"{paths[2]}: a valid CT Image Storage object, but Rows (0028,0010) is missing: "
                               "every image needs it")

    folder, paths, _ = _series(tmp_path, seed=1)
    ds = pydicom.dcmread(paths[4])
    del ds.ImagePositionPatient
    ds.save_as(paths[4])
    with pytest.raises(InputFileError, match=r"has no valid ImagePositionPatient \(0020,0032\): the slice "
                                             r"cannot be placed"):
        load_dicom(folder)

    folder, paths, _ = _series(tmp_path, seed=2)
    paths[6].write_bytes(paths[6].read_bytes()[:-500])  # cut inside the pixel data
    with pytest.raises(InputFileError) as info:
        load_dicom(folder)
    print(info.value)
    assert str(info.value) == (f"{paths[6]}: the pixel data hold 2060 bytes where 32 x 40 x 1 pixels of 16 bits "
                               "need 2560: the file is truncated")

    folder, paths, _ = _series(tmp_path, seed=3)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:600])  # cut inside the header
    with pytest.raises(InputFileError) as info:
        load_dicom(folder)
    print(info.value)
    assert str(info.value).startswith(f"{paths[1]}: could not be read as DICOM: the file is truncated or corrupt")
