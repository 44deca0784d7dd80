"""Every `advseg` command on nnU-Net folders and MONAI bundles: attack, report, harden, robustness, --organs."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from folder_helpers import (CLASS_NAMES, bundle_config, nnunet_dataset, nnunet_plans, synthetic_ct,
                            write_monai_bundle, write_nnunet_folder)
from napari_advseg.cli import main
from napari_advseg.organs import ORGAN_CLASSES

pytest.importorskip("dynamic_network_architectures")

FAST = ["--device", "cpu", "--quiet"]
TRAIN = ["--steps", "2", "--batch-size", "2", "--critic-steps", "1", *FAST]
WINDOW = [{"_target_": "LoadImaged", "keys": "image"},
          {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -160, "a_max": 240, "b_min": -1.0,
           "b_max": 1.0, "clip": True}]
EXTRA_CLASSES = ("stomach", "aorta", "gallbladder", "esophagus", "duodenum", "colon")
"""Beside the six reference organs: a 12-class network, as TotalSegmentator's has many more."""


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _plans():
    """2d plans with a 64-pixel patch at 2.5 mm: the phantom's 3 mm slices are resampled, 4 windows each."""
    return nnunet_plans(spacing_2d=(2.5, 2.5), patch_2d=(64, 64))


def _folder(root, kind: str):
    if kind == "nnunet":
        return write_nnunet_folder(root, "2d", plans=_plans())
    pytest.importorskip("monai")
    return write_monai_bundle(root, config=bundle_config(2, (64, 64), transforms=WINDOW))


@pytest.fixture(scope="module")
def trained(tiny_files, tmp_path_factory):
    """Per kind: the folder target and a generator `advseg train` trained against it (2 steps)."""
    runs = {}

    def get(kind: str, capsys):
        if kind not in runs:
            root = tmp_path_factory.mktemp(kind)
            folder = _folder(root, kind)
            code, out, err = run(["train", *_data(tiny_files), "--target", folder, *TRAIN, "--out", root / "run"],
                                 capsys)
            assert code == 0, err
            runs[kind] = {"folder": folder, "generator": root / "run" / "generator.pt", "root": root}
        return runs[kind]

    return get


def _data(tiny_files):
    return ["--ct", tiny_files["ct"], "--labels", tiny_files["labels"]]


@pytest.mark.parametrize("kind", ["nnunet", "monai"])
def test_attack_commands_run_on_a_folder_target(kind, trained, tiny_files, tmp_path, capsys):
    setup = trained(kind, capsys)
    data = [*_data(tiny_files), "--target", setup["folder"], "--generator", setup["generator"]]
    assert json.loads((setup["generator"].parent / "config.json").read_text())["steps"] == 2

    code, out, err = run(["evaluate", *data, "--samples", "1", "--json", tmp_path / "report.json", *FAST], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target"] == str(setup["folder"]) and report["class_names"] == list(CLASS_NAMES)
    assert set(report["organs"]) == {"liver", "spleen"} and "other_classes" not in report
    assert "| gamma 3 |" in out

    code, out, err = run(["sample", *data, "--out", tmp_path / "sample", *FAST], capsys)
    assert code == 0, err
    seg = nib.load(tmp_path / "sample" / "adversarial_seg.nii.gz")
    assert seg.shape == nib.load(tiny_files["ct"]).shape and np.asarray(seg.dataobj).max() < len(CLASS_NAMES)

    code, out, err = run(["curve", *data, "--out", tmp_path / "curve", "--rhos", "0,0.05", "--samples", "1", *FAST],
                         capsys)
    assert code == 0, err
    curve = json.loads((tmp_path / "curve" / "curve.json").read_text())
    assert curve["target"] == str(setup["folder"]) and (tmp_path / "curve" / "curve.png").is_file()


def _weights_differ(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["nnunet", "monai"])
def test_harden_writes_a_folder_of_the_same_kind(kind, trained, tiny_files, tmp_path, capsys):
    from napari_advseg.models.folder_targets import METRICS_FILE, weights_sha256
    from napari_advseg.models.target_load import load_target

    setup = trained(kind, capsys)
    source = setup["folder"]
    args = ["harden", *_data(tiny_files), "--target", source, "--generator", setup["generator"],
            "--batch-size", "2", *FAST]
    code, out, err = run([*args, "--steps", "2", "--out", tmp_path / "hardened.pt"], capsys)
    assert code == 0, err
    out_dir = tmp_path / "hardened"  # a folder target's output is a folder: the .pt suffix goes
    assert f"saved {out_dir}" in out and (tmp_path / "hardened.resume.pt").is_file()
    hardened = load_target(out_dir, "cpu")
    original = load_target(source, "cpu")
    assert hardened.kind == kind and hardened.class_names == CLASS_NAMES
    assert hardened.normalisation == original.normalisation
    record = hardened.metrics["hardening"]
    assert record["step"] == 2 and record["original"]["sha256"] == weights_sha256(source)
    assert record["generator"]["path"] == str(setup["generator"])
    assert _weights_differ(hardened.model.state_dict(), original.model.state_dict())
    if kind == "nnunet":
        for name in ("dataset.json", "plans.json"):
            assert (out_dir / name).read_bytes() == (source / name).read_bytes()
        before = torch.load(source / "fold_0" / "checkpoint_final.pth", weights_only=False)
        after = torch.load(out_dir / "fold_0" / "checkpoint_final.pth", weights_only=False)
        assert after.keys() == before.keys() and after["init_args"]["configuration"] == "2d"
        assert _weights_differ(after["network_weights"], before["network_weights"])
    else:
        for name in ("configs/inference.json", "configs/metadata.json"):
            assert (out_dir / name).read_bytes() == (source / name).read_bytes()
        weights = torch.load(out_dir / "models" / "model.pt", weights_only=True)
        assert _weights_differ(weights, torch.load(source / "models" / "model.pt", weights_only=True))
    assert json.loads((out_dir / METRICS_FILE).read_text())["hardening"]["complete"] is True

    code, out, err = run([*args, "--steps", "3", "--out", out_dir, "--resume"], capsys)
    assert code == 0, err
    assert load_target(out_dir, "cpu").metrics["hardening"]["step"] == 3
    code, out, err = run([*args, "--steps", "1", "--out", source], capsys)
    assert code == 2 and "would replace the original" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    code, out, err = run([*args, "--steps", "1", "--out", tmp_path / "other"], capsys)
    assert code == 2 and "holds files of something else" in err


def test_hardened_nnunet_folder_loads_in_nnunet_and_is_reported(trained, tiny_files, tmp_path, capsys):
    """nnUNetPredictor reads the hardened folder and predicts what the project's loader does; robustness
    attacks it with the generator of its hardening record."""
    from test_nnunet_folder import dice, nnunet_reference

    from napari_advseg.models.nnunet_folder import read_nnunet_folder

    setup = trained("nnunet", capsys)
    out_dir = tmp_path / "hardened"
    code, out, err = run(["harden", *_data(tiny_files), "--target", setup["folder"], "--generator",
                          setup["generator"], "--steps", "1", "--batch-size", "2", "--out", out_dir, *FAST], capsys)
    assert code == 0, err
    image, spacing = synthetic_ct((6, 40, 44)), (3.0, 1.2, 1.1)
    reference = nnunet_reference(out_dir, "2d", image, spacing)
    with torch.no_grad():
        ours = read_nnunet_folder(out_dir).logits(torch.tensor(image), spacing).argmax(0).numpy()
    for c in range(len(CLASS_NAMES)):
        assert dice(ours, reference, c) >= 0.999

    code, out, err = run(["robustness", *_data(tiny_files), "--target", out_dir, "--rhos", "0.05",
                          "--new-generator-steps", "1", "--samples", "1", "--out", tmp_path / "robustness", *FAST],
                         capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "robustness" / "robustness.json").read_text())
    network = report["networks"][0]
    assert network["hardening"]["method"] == "generator" and network["sha256"]
    assert network["attacks"]["hardening_generator"]["source"] == "hardening record (generator)"


def test_attack_commands_run_on_a_3d_folder(tiny_files, tmp_path, capsys):
    """A 3d_fullres folder (plans at the phantom's 5 x 3 x 3 mm, a 4-slice patch) is attacked slab by slab:
    train on the train split, then every report scores the held-out slices with the network on the whole volume."""
    from napari_advseg.attack.checkpoint import load_checkpoint

    plans = nnunet_plans(spacing_3d=(5.0, 3.0, 3.0), patch_3d=(4, 32, 32))
    folder = write_nnunet_folder(tmp_path, "3d_fullres", plans=plans)
    data = [*_data(tiny_files), "--target", folder]
    code, out, err = run(["train", *data, *TRAIN, "--split", "train", "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    assert out.startswith("3D target: each step attacks one slab of 4 consecutive slices")
    assert "held-out slices (z % 3 == 2) are input only" in out
    generator = tmp_path / "run" / "generator.pt"
    state = load_checkpoint(generator)
    assert state["config"]["z_smooth"] == 1.0 and len(state["history"]) == 2
    assert all(np.isfinite(h["attack_ce"]) for h in state["history"])
    data += ["--generator", generator]

    code, out, err = run(["evaluate", *data, "--split", "test", "--samples", "1", "--json", tmp_path / "r.json",
                          *FAST], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["slices"] == 3 and set(report["organs"]) <= {"liver", "spleen"} and report["rho"] > 0

    code, out, err = run(["sample", *data, "--slices", "2-4", "--out", tmp_path / "sample", *FAST], capsys)
    assert code == 0, err
    sidecar = json.loads((tmp_path / "sample" / "sample.json").read_text())
    assert sidecar["slices"] == [2, 3, 4] and sidecar["z_smooth"] == 1.0
    seg = np.asarray(nib.load(tmp_path / "sample" / "adversarial_seg.nii.gz").dataobj)
    assert seg.shape == nib.load(tiny_files["ct"]).shape and seg.max() < len(CLASS_NAMES)

    code, out, err = run(["curve", *data, "--split", "test", "--out", tmp_path / "curve", "--rhos", "0,0.05",
                          "--samples", "1", *FAST], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "curve" / "curve.json").read_text())["slices"] == [2, 5, 8]

    code, out, err = run(["robustness", *_data(tiny_files), "--target", folder, "--rhos", "0.05",
                          "--new-generator-steps", "1", "--samples", "1", "--out", tmp_path / "robustness", *FAST],
                         capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "robustness" / "robustness.json").read_text())
    assert report["slices"] == 3 and report["networks"][0]["attacks"]["pgd_l2"]["rhos"]["0.05"]["dice"]

    code, out, err = run(["harden", *data, "--steps", "1", *FAST], capsys)
    assert code == 2 and "3D network" in err and err.count("\n") == 1 and "Traceback" not in err


def test_organs_choose_the_rows_and_pool_the_other_classes(tiny_files, tmp_path, capsys):
    """A 12-class network: --organs picks the rows; its other classes are one row, 'other'."""
    from napari_advseg.attack.checkpoint import load_checkpoint
    from napari_advseg.cli.common import load_case
    from napari_advseg.cli.parser import build_parser
    from napari_advseg.models.target_load import load_target
    from napari_advseg.workflows import evaluate_case

    names = (*ORGAN_CLASSES, *EXTRA_CLASSES)
    folder = write_nnunet_folder(tmp_path, "2d", plans=_plans(), dataset=nnunet_dataset(names))
    data = [*_data(tiny_files), "--target", folder]
    code, out, err = run(["train", *data, *TRAIN, "--organs", "liver,spleen", "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    generator = tmp_path / "run" / "generator.pt"
    assert load_checkpoint(generator)["config"]["organs"] == ["liver", "spleen"]

    code, out, err = run(["evaluate", *data, "--generator", generator, "--samples", "1", "--json",
                          tmp_path / "chosen.json", *FAST], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "chosen.json").read_text())
    assert list(report["organs"]) == ["liver", "spleen", "other"]
    assert report["other_classes"] == [*ORGAN_CLASSES[3:], *EXTRA_CLASSES]
    header = out.splitlines()[1]
    assert "| liver | spleen | other |" in header and "organs >= 30 %" in header
    assert out.splitlines()[-2].endswith("/2 |")  # the success count is over the chosen organs only

    code, out, err = run(["evaluate", *data, "--generator", generator, "--samples", "1", "--organs", "pancreas",
                          "--json", tmp_path / "asked.json", *FAST], capsys)
    assert code == 0, err
    assert list(json.loads((tmp_path / "asked.json").read_text())["organs"]) == ["pancreas", "other"]
    code, out, err = run(["evaluate", *data, "--generator", generator, "--organs", "heart", *FAST], capsys)
    assert code == 2 and "heart" in err and "stomach" in err
    code, out, err = run(["evaluate", *data, "--organs", "liver", "--json", tmp_path / "clean.json", *FAST], capsys)
    assert code == 0 and "clean Dice only" in out, err
    clean = json.loads((tmp_path / "clean.json").read_text())
    assert list(clean["organs"]) == ["liver", "other"] and len(clean["other_classes"]) == 10

    # no organs chosen: the classes the reference labels name are the rows; the network's others, which the
    # reference lacks, pool into an 'other' with no reference (left out)
    args = build_parser().parse_args(["evaluate", *map(str, data), "--device", "cpu"])
    target = load_target(folder, "cpu")
    case = load_case(args, target)
    from napari_advseg.attack.checkpoint import load_generator

    model, config, _ = load_generator(generator, "cpu", target=target)
    report = evaluate_case(model, config.replace(organs=None), target, case, samples=1)
    assert set(report["organs"]) <= set(ORGAN_CLASSES[1:]) and "other" in report["absent_organs"]
    assert report["other_classes"] == list(EXTRA_CLASSES)
