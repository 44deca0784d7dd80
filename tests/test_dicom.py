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
