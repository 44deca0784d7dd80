"""DICOM input held against dcm2niix, the field's reference converter: the same HU and affine, per series.

The corpus: pydicom's own shipped test files that are CT images (files
nobody here wrote: a plain CT slice, a JPEG 2000 lossless slice whose
codestream says unsigned where the header says signed, a lossy JPEG 2000
slice), plus series the tests write in each awkward form a real archive
holds (blank UIDs, a folder mixing the CT with a localiser, a PET series,
a secondary capture and a dose report, nested folders, Enhanced CT
multi-frame, a DICOMDIR file set, files without preamble or ``.dcm`` name,
oblique and sagittal stacks, compressed transfer syntaxes, per-slice rescale
values, unsigned pixels with padding). For every CT volume the project
reads, dcm2niix's NIfTI of the same files, read with
:func:`napari_advseg.io.nifti.load_ct`, must give the same canonical array
exactly (HU) and the same affine to 1e-3 mm. Where the two differ by
design, the test says so and checks the difference is the designed one.
The whole module is skipped when dcm2niix (pip ``dcm2niix``) is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_helpers import (axial_affine, oblique_affine, raw_volume, sagittal_affine, write_enhanced, write_report,
                           write_series)
from napari_advseg.errors import InputFileError
from napari_advseg.io.dicom import PADDING_HU, DicomNotice, find_series, load_dicom
from napari_advseg.io.nifti import load_ct


def _dcm2niix() -> str | None:
    here = Path(sys.executable).with_name("dcm2niix")
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("dcm2niix")
    if found:
        return found
    try:
        import dcm2niix  # noqa: F401 - the pip package ships the binary

        return str(Path(dcm2niix.bin)) if hasattr(dcm2niix, "bin") else None
    except ImportError:
        return None


DCM2NIIX = _dcm2niix()
pytestmark = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix (pip install dcm2niix) is not installed")

AFFINE_ATOL = 1e-3  # mm
PYDICOM_CT = ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm")


def convert(folder: Path, out: Path) -> list:
    """dcm2niix's NIfTI files of ``folder``, each read as a canonical CT volume."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-f", "%s_%p_%d", "-o", str(out), str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [load_ct(path) for path in sorted(out.glob("*.nii"))]


def counterpart(volume, converted):
    """The dcm2niix volume on the same grid as ``volume`` (same canonical shape, nearest affine)."""
    same_shape = [c for c in converted if c.shape == volume.shape]
    assert same_shape, f"dcm2niix wrote no volume of shape {volume.shape}: {[c.shape for c in converted]}"
    return min(same_shape, key=lambda c: np.abs(c.affine - volume.affine).max())


def read_quietly(folder, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DicomNotice)
        volume = load_dicom(folder, **kwargs)
    return volume, [str(w.message) for w in caught if issubclass(w.category, DicomNotice)]


# ---------------------------------------------------------------------------
# The corpus: name -> writer(folder) returning what differs by design (None: nothing)
# ---------------------------------------------------------------------------


PYDICOM_DESIGNED = {
    # a 13-bit signed slice whose JPEG 2000 codestream says unsigned, of a tilted gantry (-22 degrees)
    "J2K_pixelrep_mismatch.dcm": "sign and tilted slice",
    # lossy JPEG 2000 with PixelPaddingValue -2000: the padding, blurred by the compression, below air
    "693_J2KI.dcm": "padding",
}


def _pydicom_file(name):
    def write(folder):
        pytest.importorskip("pydicom.data")
        from pydicom.data import get_testdata_file

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = get_testdata_file(name)
        if source is None:
            pytest.skip(f"pydicom's test file {name} is not installed")
        folder.mkdir(parents=True)
        shutil.copy(source, folder / name)
        return PYDICOM_DESIGNED.get(name)
    return write


def _axial(folder):
    write_series(folder, raw_volume(0), axial_affine())


def _blank_uids_jpeg2000(folder):
    write_series(folder, raw_volume(1), axial_affine(), syntax="jpeg2000", blank_uids=True, number=4)


def _mixed_nested(folder):
    """A study as a PACS export leaves it: the CT beside a localiser, a PET series, a screenshot, a dose report."""
    write_series(folder / "study" / "ct", raw_volume(2), axial_affine(), number=2, description="Abdomen 2.5")
    scout = np.zeros((40, 32, 2), dtype=np.int64) + 1000
    write_series(folder / "study" / "scout", scout, sagittal_affine(), number=1, description="Topogram",
                 image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_series(folder / "study" / "pet", raw_volume(3)[:, :, :4], axial_affine(), number=3, modality="PT",
                 description="PET AC")
    write_series(folder / "study" / "screens", raw_volume(4)[:, :, :1], axial_affine(), number=998,
                 description="Dose screen", sop_class=pydicom.uid.SecondaryCaptureImageStorage)
    write_report(folder / "study" / "report" / "dose.dcm")


def _enhanced(folder):
    n = 12
    write_enhanced(folder / "enhanced.dcm", raw_volume(5), axial_affine(),
                   slopes=[1.0] * n, intercepts=[-1024.0 + (k % 3) for k in range(n)])


def _legacy_converted(folder):
    highdicom = pytest.importorskip("highdicom")
    source = folder.parent / f"{folder.name}_single"
    paths = write_series(source, raw_volume(6), oblique_affine())
    from pydicom.uid import generate_uid

    image = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(p) for p in paths], series_instance_uid=generate_uid(), series_number=7,
        sop_instance_uid=generate_uid(), instance_number=1)
    folder.mkdir(parents=True)
    image.save_as(folder / "legacy.dcm")


def _dicomdir(folder):
    from pydicom.fileset import FileSet

    source = folder.parent / f"{folder.name}_files"
    paths = write_series(source, raw_volume(7), sagittal_affine(), syntax="rle")
    fileset = FileSet()
    for path in paths:
        fileset.add(pydicom.dcmread(path))
    fileset.write(folder)


def _no_preamble_no_suffix(folder):
    write_series(folder, raw_volume(8), oblique_affine(), preamble=False, suffix="")


def _oblique(folder):
    write_series(folder, raw_volume(9), oblique_affine(degrees=-23.0))


def _sagittal_jpeg_lossless(folder):
    pytest.importorskip("imagecodecs", reason="imagecodecs encodes the JPEG lossless fixture")
    write_series(folder, raw_volume(10), sagittal_affine(), syntax="jpeg-lossless", signed=False)


def _rescale_per_slice(folder):
    n = raw_volume(0).shape[2]
    write_series(folder, raw_volume(11, high=1800), axial_affine(), slope=[1.0 + (k % 2) for k in range(n)],
                 intercept=[-1024.0 - 10 * k for k in range(n)])


def _unsigned_padding(folder):
    raw = raw_volume(12, low=1, high=3000)
    raw[:4, :, :] = 0  # outside the field of view: the padding value
    write_series(folder, raw, axial_affine(), signed=False, padding=0, intercept=-1000.0)
    return "padding"


def _gantry_tilt(folder):
    paths = write_series(folder, raw_volume(13), axial_affine())
    for path in paths:
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.4 * (z + 31.25) / 2.5, z]
        ds.GantryDetectorTilt = "9.09"
        ds.save_as(path)
    return "tilt"


CORPUS = {
    **{f"pydicom {name}": _pydicom_file(name) for name in PYDICOM_CT},
    "axial": _axial,
    "blank UIDs, JPEG 2000": _blank_uids_jpeg2000,
    "mixed nested folder": _mixed_nested,
    "Enhanced CT multi-frame": _enhanced,
    "Legacy Converted Enhanced CT (highdicom)": _legacy_converted,
    "DICOMDIR, sagittal, RLE": _dicomdir,
    "no preamble, no .dcm, oblique": _no_preamble_no_suffix,
    "oblique": _oblique,
    "sagittal, JPEG lossless": _sagittal_jpeg_lossless,
    "rescale per slice": _rescale_per_slice,
    "unsigned with padding": _unsigned_padding,
    "gantry tilt": _gantry_tilt,
}


@pytest.mark.parametrize("kind", list(CORPUS))
def test_the_same_volume_as_dcm2niix(tmp_path, kind):
    folder = tmp_path / "in"
    designed = CORPUS[kind](folder)
    converted = convert(folder, tmp_path / "out")
    if designed == "tilt":
        # dcm2niix resamples a tilted-gantry series onto a straight grid; the project refuses it
        # rather than interpolate the HU it attacks.
        assert converted, "dcm2niix converts the tilted series"
        with pytest.raises(InputFileError, match=r"not stacked along their normal \(gantry tilt"):
            load_dicom(folder)
        print(f"{kind}: differs by design: dcm2niix resamples it, the project refuses it")
        return

    found = find_series(folder)
    assert found, kind
    for series in found:
        volume, notes = read_quietly(folder, series=series.uid)
        other = counterpart(volume, converted)
        if designed == "sign and tilted slice":
            # One slice of a tilted gantry: dcm2niix puts the third (slice) axis along the table, as a tilted
            # stack would run, the project along the slice normal; the in-plane axes and the origin, so every
            # voxel centre, are the same.
            np.testing.assert_allclose(volume.affine[:, [1, 2, 3]], other.affine[:, [1, 2, 3]], atol=AFFINE_ATOL)
            assert np.linalg.norm(volume.affine[:3, 0]) == pytest.approx(np.linalg.norm(other.affine[:3, 0]))
            # pydicom (and so the project) sign-extends the 13-bit samples the header declares signed;
            # dcm2niix keeps the codestream's unsigned reading: 8192 more wherever the value is negative.
            offset = other.hu - volume.hu
            assert set(np.unique(offset)) == {0.0, 8192.0} and np.all(volume.hu[offset > 0] < 0)
            assert volume.hu.min() == -2000 and other.hu.min() >= 0
            print(f"{kind}: differs by design: the slice axis (table vs normal) and the sign of "
                  f"{np.count_nonzero(offset)} voxels (dcm2niix + 8192); the in-plane affine and the other "
                  f"{np.count_nonzero(offset == 0)} voxels equal")
            continue
        np.testing.assert_allclose(volume.affine, other.affine, rtol=0, atol=AFFINE_ATOL, err_msg=kind)
        same = volume.hu == other.hu
        if designed == "padding":
            # PixelPaddingValue marks pixels outside the field of view: air here (with what lossy compression
            # spread around a padding below air), the padding's own HU there
            padding = ~same
            assert padding.any() and np.all(volume.hu[padding] == PADDING_HU)
            assert np.all(other.hu[padding] < PADDING_HU) or np.all(other.hu[padding] == -1000.0)
            print(f"{kind}: {padding.sum()} padding voxels differ by design (project {PADDING_HU:g} HU, dcm2niix "
                  f"{other.hu[padding].min():g}..{other.hu[padding].max():g}); the other {same.sum()} equal, "
                  f"affine within {np.abs(volume.affine - other.affine).max():.1e} mm")
        else:
            assert same.all(), f"{kind}: {np.count_nonzero(~same)} voxels differ, most by " \
                               f"{np.abs(volume.hu - other.hu).max()} HU"
            print(f"{kind}: {series.label()}: {volume.shape} equal in HU, affine within "
                  f"{np.abs(volume.affine - other.affine).max():.1e} mm")
