"""`advseg` with a DICOM series for --ct: the same results as the NIfTI, outputs in the series' geometry."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from dicom_helpers import axial_affine, raw_volume, write_series
from napari_advseg.cli import main
from napari_advseg.io.dicom import load_dicom
from napari_advseg.io.nifti import load_ct

UID = "1.2.826.0.1.3680043.2.1125.77.1"
OTHER_UID = "1.2.826.0.1.3680043.2.1125.77.2"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def dicom_ct(tiny_files, tmp_path_factory):
    """conftest's tiny phantom CT written as an axial DICOM series (LPS storage, as scanners write it)."""
    ct = load_ct(tiny_files["ct"])
    raw = np.rint(ct.hu.transpose(2, 1, 0) + 1024).astype(np.int32)  # stored (columns, rows, slices)
    affine = ct.affine[:, [2, 1, 0, 3]]  # i -> left, j -> posterior, k -> superior
    folder = tmp_path_factory.mktemp("dicom") / "phantom"
    write_series(folder, raw, affine, series_uid=UID, description="Phantom abdomen", number=2)
    return folder


def _models(tiny_files):
    return ["--target", tiny_files["target"], "--generator", tiny_files["generator"], "--device", "cpu"]


def test_sample_from_dicom_matches_nifti_and_overlays_the_series(dicom_ct, tiny_files, tmp_path, capsys):
    volume = load_dicom(dicom_ct)
    nifti = load_ct(tiny_files["ct"])
    assert np.array_equal(volume.hu, nifti.hu)
    np.testing.assert_allclose(volume.affine, nifti.affine, atol=1e-4)

    runs = {}
    for name, ct in (("dicom", dicom_ct), ("nifti", tiny_files["ct"])):
        out = tmp_path / name
        code, _, err = run(["sample", "--ct", ct, "--labels", tiny_files["labels"], *_models(tiny_files),
                            "--out", out, "--slices", "3,5", "--seed", "4", "--quiet"], capsys)
        assert code == 0, err
        runs[name] = out

    out = runs["dicom"]
    sidecar = json.loads((out / "sample.json").read_text())
    assert sidecar["source"] == {"kind": "dicom", "path": str(dicom_ct), "series_uid": UID}
    assert sidecar["ct"] == str(dicom_ct)
    assert json.loads((runs["nifti"] / "sample.json").read_text())["source"]["kind"] == "nifti"
    for name in ("adversarial_hu", "adversarial_seg", "clean_seg", "warped_reference", "bias_field"):
        image = nib.load(out / f"{name}.nii.gz")
        assert image.shape == volume.source.shape, name  # the series' (columns, rows, slices)
        np.testing.assert_allclose(image.affine, volume.source.affine, atol=1e-4, err_msg=name)
        assert int(image.header["sform_code"]) == 1
        again = load_ct(out / f"{name}.nii.gz")
        np.testing.assert_allclose(again.affine, volume.affine, atol=1e-4, err_msg=name)
        # the same canonical result as from the NIfTI of the same scan
        from_nifti = load_ct(runs["nifti"] / f"{name}.nii.gz")
        np.testing.assert_allclose(again.hu, from_nifti.hu, atol=1e-3, err_msg=name)
    adversarial = load_ct(out / "adversarial_hu.nii.gz").hu
    untouched = [z for z in range(volume.n_slices) if z not in (3, 5)]
    assert np.array_equal(adversarial[untouched], volume.hu[untouched])


def test_evaluate_and_several_series(dicom_ct, tiny_files, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(dicom_ct, study / "a")
    write_series(study / "b", raw_volume(0), axial_affine(), series_uid=OTHER_UID, description="Scout", number=1)
    data = ["--labels", tiny_files["labels"], *_models(tiny_files), "--samples", "1"]

    code, out, err = run(["evaluate", "--ct", study, *data], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"advseg: error: {study}: holds 2 DICOM series; choose one (advseg --series UID")
    assert f'{OTHER_UID} "Scout" (12 slices, CT)' in lines[0]
    assert f'{UID} "Phantom abdomen" (9 slices, CT)' in lines[0]

    code, out, err = run(["evaluate", "--ct", study, "--series", UID, *data, "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["source"] == {"kind": "dicom", "path": str(study), "series_uid": UID}
    assert "| U-Net, clean |" in out

    code, _, err = run(["evaluate", "--ct", study, "--series", "1.2.3", *data], capsys)
    assert code == 2 and "holds no DICOM series 1.2.3; it holds" in err


def test_bad_dicom_input_gives_one_line(tiny_files, tmp_path, capsys):
    code, _, err = run(["evaluate", "--series", UID, *_models(tiny_files)], capsys)
    assert code == 2 and "--series was given without --ct" in err

    mr = tmp_path / "mr"
    paths = write_series(mr, raw_volume(0), axial_affine(), modality="MR")
    code, _, err = run(["sample", "--ct", mr, *_models(tiny_files), "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{sorted(paths)[0]}: modality MR, not CT" in err
    assert not (tmp_path / "out").exists()

    code, _, err = run(["evaluate", "--ct", tiny_files["ct"], "--series", UID, *_models(tiny_files)], capsys)
    assert code == 2 and "is a NIfTI file, not DICOM" in err


def test_train_target_reads_a_dicom_series(dicom_ct, tiny_files, tmp_path, capsys):
    code, out, err = run(["train-target", "--ct", dicom_ct, "--series", UID, "--labels", tiny_files["labels"],
                          "--steps", "1", "--batch-size", "2", "--patch-size", "32", "--base-channels", "4",
                          "--out", tmp_path / "unet.pt", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert f"data: {dicom_ct}: slices" in out and (tmp_path / "unet.pt").is_file()


def test_anonymised_series_in_a_mixed_folder_reads_with_one_warning_line_each(dicom_ct, tiny_files, tmp_path, capsys):
    """Blank UIDs and a localiser beside the CT: the command runs, saying how it grouped and what it skipped."""
    import pydicom

    study = tmp_path / "export"
    shutil.copytree(dicom_ct, study / "ct")
    for path in (study / "ct").iterdir():
        ds = pydicom.dcmread(path)
        for name in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            setattr(ds, name, "")
        ds.save_as(path)
    write_series(study / "scout", raw_volume(0)[:, :, :2], axial_affine(), series_uid=OTHER_UID, number=1,
                 description="Topogram", image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    code, out, err = run(["evaluate", "--ct", study, "--labels", tiny_files["labels"], *_models(tiny_files),
                          "--samples", "1", "--json", tmp_path / "r.json"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("advseg: warning: ")]
    assert warnings[0] == (f"advseg: warning: {study}: 9 DICOM image files without SeriesInstanceUID (blank or "
                           "missing), grouped into 1 series by modality, SOP class, series number, series "
                           "description, orientation, size and frame of reference")
    assert warnings[1].startswith(f'advseg: warning: {study}: read series-2 "Phantom abdomen" (9 slices, CT; no '
                                  f'SeriesInstanceUID); skipped 1 DICOM series or object that is not a CT volume: '
                                  f'{OTHER_UID} "Topogram" (2 slices, CT): a localizer (scout) image')
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["source"] == {"kind": "dicom", "path": str(study), "series_uid": "series-2"}
