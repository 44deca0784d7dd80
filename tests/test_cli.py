"""The `advseg` command line: a tiny end-to-end run and clear errors on bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_advseg.cli import main

FAST = ["--steps", "2", "--batch-size", "2", "--critic-steps", "1", "--device", "cpu", "--quiet"]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command_and_explains_flags():
    result = subprocess.run([sys.executable, "-m", "napari_advseg.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("train-target", "train", "evaluate", "sweep", "sample"):
        assert command in result.stdout
    result = subprocess.run([sys.executable, "-m", "napari_advseg.cli", "train", "--help"], capture_output=True,
                            text=True)
    assert "--gamma" in result.stdout and "(default: 3)" in result.stdout and "--device" in result.stdout
    assert "--lambda-mean" not in result.stdout  # an expert option: --help-all lists it
    result = subprocess.run([sys.executable, "-m", "napari_advseg.cli", "train", "--help-all"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "--lambda-mean" in result.stdout and "--gamma" in result.stdout


def test_end_to_end_train_evaluate_sample(tiny_files, tmp_path, capsys):
    data = ["--ct", tiny_files["ct"], "--labels", tiny_files["labels"], "--target", tiny_files["target"]]
    code, out, err = run(["train", *data, *FAST, "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    ckpt = tmp_path / "run" / "generator.pt"
    assert ckpt.is_file()
    from napari_advseg.attack.checkpoint import load_checkpoint

    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written == load_checkpoint(ckpt)["config"] and written["steps"] == 2  # the resolved config

    code, out, err = run(["evaluate", *data, "--generator", ckpt, "--json", tmp_path / "report.json",
                          "--samples", "1", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "| U-Net, clean |" in out and "| 30 % decrease |" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) >= {"organs", "rho", "fold_fraction", "config", "samples"}
    for row in report["organs"].values():
        assert set(row) >= {"dice_clean", "dice_adv", "drop", "success"}
    assert np.isfinite(report["rho"])

    out_dir = tmp_path / "sample"
    code, out, err = run(["sample", *data, "--generator", ckpt, "--out", out_dir, "--seed", "3",
                          "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    ct = nib.load(tiny_files["ct"])
    for name in ("adversarial_hu", "adversarial_seg", "clean_seg", "warped_reference", "bias_field"):
        img = nib.load(out_dir / f"{name}.nii.gz")
        assert img.shape == ct.shape, name
        assert np.allclose(img.affine, ct.affine), name
    disp = nib.load(out_dir / "displacement.nii.gz")
    assert disp.shape == ct.shape + (2,)
    sidecar = json.loads((out_dir / "sample.json").read_text())
    assert sidecar["seed"] == 3 and len(sidecar["latent_codes"]["z_phi"]) == ct.shape[2]
    assert sidecar["generator_sha256"] and sidecar["target_sha256"]
    seg = np.asarray(nib.load(out_dir / "adversarial_seg.nii.gz").dataobj)
    assert seg.dtype == np.uint8 and seg.max() < 6

    # never overwrite without --overwrite; with it, it works
    before = (out_dir / "sample.json").stat().st_mtime_ns
    code, out, err = run(["sample", *data, "--generator", ckpt, "--out", out_dir, "--device", "cpu", "--quiet"],
                         capsys)
    assert code == 2 and "exists already" in err and "Traceback" not in err
    assert (out_dir / "sample.json").stat().st_mtime_ns == before
    code, out, err = run(["sample", *data, "--generator", ckpt, "--out", out_dir, "--device", "cpu", "--quiet",
                          "--overwrite", "--eps-phi", "0,0,0,0,0,0,0,0", "--eps-b", "1,0,0,0,0,0,0,0",
                          "--slices", "2,4-5"], capsys)
    assert code == 0, err
    sidecar = json.loads((out_dir / "sample.json").read_text())
    assert sidecar["slices"] == [2, 4, 5] and sidecar["fixed_deviates"]["eps_b"][0] == 1.0
    # slices left out are written unchanged: the canonical z axis is the stored third axis here (RAS)
    adversarial = np.asarray(nib.load(out_dir / "adversarial_hu.nii.gz").dataobj)
    original = np.asarray(ct.dataobj).astype(np.float32)
    assert np.array_equal(adversarial[:, :, 3], original[:, :, 3])
    assert not np.array_equal(adversarial[:, :, 4], original[:, :, 4])

    # several samples: one per seed, files named by seed, each the same as the single sample of its seed
    many, single = tmp_path / "many", tmp_path / "single"
    code, out, err = run(["sample", *data, "--generator", ckpt, "--out", many, "--seed", "3", "--count", "2",
                          "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert "seed 3 (seed3_*):" in out and "seed 4 (seed4_*):" in out
    code, out, err = run(["sample", *data, "--generator", ckpt, "--out", single, "--seed", "4",
                          "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    for name in ("adversarial_hu", "adversarial_seg", "clean_seg"):
        assert np.array_equal(np.asarray(nib.load(many / f"seed4_{name}.nii.gz").dataobj),
                              np.asarray(nib.load(single / f"{name}.nii.gz").dataobj)), name
    assert json.loads((many / "seed4_sample.json").read_text())["organs"] == \
        json.loads((single / "sample.json").read_text())["organs"]
    assert not np.array_equal(np.asarray(nib.load(many / "seed3_adversarial_hu.nii.gz").dataobj),
                              np.asarray(nib.load(many / "seed4_adversarial_hu.nii.gz").dataobj))
    # one existing output stops the whole run before anything is written
    (many / "seed3_sample.json").unlink()
    before = (many / "seed4_sample.json").stat().st_mtime_ns
    code, out, err = run(["sample", *data, "--generator", ckpt, "--out", many, "--seed", "3", "--count", "2",
                          "--device", "cpu", "--quiet"], capsys)
    assert code == 2 and "exists already" in err
    assert not (many / "seed3_sample.json").exists() and (many / "seed4_sample.json").stat().st_mtime_ns == before
    code, out, err = run(["sample", *data, "--generator", ckpt, "--out", many, "--count", "2", "--eps-phi",
                          "0,0,0,0,0,0,0,0", "--eps-b", "0,0,0,0,0,0,0,0", "--device", "cpu", "--quiet"], capsys)
    assert code == 2 and "every sample would be the same" in err

    # resume continues from the checkpoint's step
    code, out, err = run(["train", *data, "--steps", "3", "--device", "cpu", "--quiet", "--out", tmp_path / "run",
                          "--resume", ckpt], capsys)
    assert code == 0, err
    assert "step 3" in out
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == load_checkpoint(ckpt)["config"]


def _bad_files(tmp_path, tiny_files):
    ct = nib.load(tiny_files["ct"])
    data = np.asarray(ct.dataobj)
    files = {}
    files["missing"] = tmp_path / "nope.nii.gz"
    files["corrupt"] = tmp_path / "corrupt.nii.gz"
    files["corrupt"].write_bytes(gzip.compress(b"this is not a nifti file at all" * 20)[:60])
    files["text"] = tmp_path / "text.nii"
    files["text"].write_text("hello")
    files["2d"] = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(data[:, :, 0], ct.affine), files["2d"])
    files["4d"] = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), ct.affine), files["4d"])
    files["nan"] = tmp_path / "nan.nii.gz"
    with_nan = data.astype(np.float32)
    with_nan[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(with_nan, ct.affine), files["nan"])
    return files


@pytest.mark.parametrize("kind,needle", [("missing", "not found"), ("corrupt", "not a NIfTI file"),
                                         ("text", "not a NIfTI file"),
                                         ("2d", "3D"), ("4d", "3D"), ("nan", "NaN")])
def test_bad_ct_gives_one_clear_line(kind, needle, tiny_files, tmp_path, capsys):
    bad = _bad_files(tmp_path, tiny_files)[kind]
    out_dir = tmp_path / "out"
    code, out, err = run(["sample", "--ct", bad, "--target", tiny_files["target"], "--generator",
                          tiny_files["generator"], "--out", out_dir,
                          "--device", "cpu", "--quiet"], capsys)
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("advseg: error:") and len(err.strip().splitlines()) == 1
    assert needle and bad.name in err and needle.lower() in err.lower()
    assert not out_dir.exists() or not any(out_dir.iterdir())  # no partial output


def test_labels_on_another_grid_and_empty_organs(tiny_files, tmp_path, capsys):
    ct = nib.load(tiny_files["ct"])
    other = tmp_path / "other_grid.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), ct.affine), other)
    code, _, err = run(["train", "--ct", tiny_files["ct"], "--labels", other, "--target", tiny_files["target"],
                        *FAST, "--out", tmp_path / "r1"], capsys)
    assert code == 2 and "other_grid" in err and "Traceback" not in err
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(ct.shape, np.uint8), ct.affine), empty)
    code, _, err = run(["train", "--ct", tiny_files["ct"], "--labels", empty, "--target", tiny_files["target"],
                        *FAST, "--out", tmp_path / "r2"], capsys)
    assert code == 2 and "organs to attack" in err
    assert not (tmp_path / "r2" / "generator.pt").exists()


def test_model_file_that_is_not_a_model(tiny_files, tmp_path, capsys):
    for name, content in (("notes.pt", b"just some text"), ("random.pt", np.random.bytes(300))):
        bad = tmp_path / name
        bad.write_bytes(content)
        code, _, err = run(["train", "--ct", tiny_files["ct"], "--labels", tiny_files["labels"], "--target", bad,
                            *FAST, "--out", tmp_path / "r"], capsys)
        assert code == 2 and name in err and "Traceback" not in err
        code, _, err = run(["evaluate", "--ct", tiny_files["ct"], "--labels", tiny_files["labels"], "--target",
                            tiny_files["target"], "--generator", bad, "--device", "cpu"], capsys)
        assert code == 2 and name in err


def test_labels_without_ct_and_bad_numbers(tiny_files, capsys):
    code, _, err = run(["evaluate", "--labels", tiny_files["labels"]], capsys)
    assert code == 2 and "--labels was given without --ct" in err
    with pytest.raises(SystemExit):
        main(["sweep", "--gammas", "a,b"])


def test_train_target_and_sweep_tiny(tiny_files, tmp_path, capsys):
    data = ["--ct", tiny_files["ct"], "--labels", tiny_files["labels"]]
    code, out, err = run(["train-target", *data, "--steps", "2", "--batch-size", "2", "--patch-size", "32",
                          "--base-channels", "4", "--out", tmp_path / "unet.pt", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert "| organ | test Dice (%) |" in out and "liver" in out
    code, out, err = run(["sweep", *data, "--target", tmp_path / "unet.pt", "--gammas", "1,2", "--steps", "1",
                          "--batch-size", "2", "--critic-steps", "1", "--samples", "1", "--out", tmp_path / "sweep",
                          "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    table = (tmp_path / "sweep" / "table.md").read_text()
    for row in ("| gamma 1 |", "| gamma 2 |", "| phi only (gamma 2) |", "| b only (gamma 2) |"):
        assert row in table
    rows = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["row"] for r in rows] == ["gamma 1", "gamma 2", "phi only (gamma 2)", "b only (gamma 2)"]
    assert rows[2]["config"]["fields"] == "phi" and rows[3]["config"]["fields"] == "bias"
    for folder, row in zip(("gamma_1", "gamma_2", "phi_only_gamma_2", "b_only_gamma_2"), rows):
        assert json.loads((tmp_path / "sweep" / folder / "config.json").read_text()) == row["config"]
