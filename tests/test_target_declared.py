"""What a researcher declares about a target: --normalisation, --class-names, a sidecar JSON, and what is assumed."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from napari_advseg.cli import main
from napari_advseg.cli.arguments import class_names, normalisation
from napari_advseg.errors import InputFileError
from napari_advseg.models.target_files import TORCHSCRIPT_META_FILE
from napari_advseg.models.target_load import load_target
from napari_advseg.organs import ORGAN_CLASSES

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_thread")]

CT = {"mode": "ct", "clip": [-958.0, 327.0], "mean": 82.9, "std": 136.9}
MONAI = {"mode": "window", "window": [-175.0, 250.0], "range": [0.0, 1.0]}


def script_file(tmp_path, name: str = "net.pt", n_classes: int = len(ORGAN_CLASSES), meta: dict | None = None):
    torch.manual_seed(0)
    path = tmp_path / name
    extra = {TORCHSCRIPT_META_FILE: json.dumps(meta)} if meta is not None else {}
    torch.jit.save(torch.jit.script(nn.Conv2d(1, n_classes, 3, padding=1).eval()), str(path), _extra_files=extra)
    return path


@pytest.mark.parametrize("text, expected", [
    ("zscore", {"mode": "zscore"}),
    ("none", {"mode": "none"}),
    ("window:-200,300", {"mode": "window", "window": [-200.0, 300.0]}),
    ("window:-175,250:0,1", MONAI),
    ("ct:-958,327,82.9,136.9", CT),
    ("CT:-958,327,82.9,136.9", CT),
])
def test_normalisation_flag_syntax(text, expected):
    assert normalisation(text) == expected


@pytest.mark.parametrize("text", ["minmax", "window", "window:300,-200", "window:1,2:3", "window:1,2:1,0",
                                  "ct:-958,327,82.9", "ct:-958,327,82.9,0", "zscore:1", "window:a,b"])
def test_bad_normalisation_flags(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
        normalisation(text)


def test_class_names_flag():
    assert class_names("background, liver,spleen") == ["background", "liver", "spleen"]
    for bad in ("", "background,,liver", "liver,liver"):
        with pytest.raises(argparse.ArgumentTypeError):
            class_names(bad)


def test_nothing_declared_is_said(tmp_path):
    target = load_target(script_file(tmp_path), "cpu")
    assert target.normalisation == {"mode": "zscore"} and target.class_names == tuple(ORGAN_CLASSES)
    assert len(target.notes) == 2
    assert "declares no input normalisation; assuming per-volume z-score" in target.notes[0]
    assert "--normalisation" in target.notes[0] and "net.json" in target.notes[0]
    assert "declares no class names" in target.notes[1]


def test_project_checkpoint_declares_everything(tiny_files):
    assert load_target(tiny_files["target"], "cpu").notes == []


def test_precedence_flags_then_sidecar_then_archive(tmp_path):
    archive = {"format": "napari-advseg-torchscript", "normalisation": {"mode": "zscore"},
               "class_names": ["bg", "a", "b"]}
    path = script_file(tmp_path, n_classes=3, meta=archive)
    assert load_target(path, "cpu").normalisation == {"mode": "zscore"}
    (tmp_path / "net.json").write_text(json.dumps({"normalisation": MONAI}))
    target = load_target(path, "cpu")
    assert target.normalisation == MONAI and target.class_names == ("bg", "a", "b") and target.notes == []
    target = load_target(path, "cpu", normalisation=CT, class_names=["x", "y", "z"])
    assert target.normalisation == CT and target.class_names == ("x", "y", "z")


def test_sidecar_declares_class_names_and_input_multiple(tmp_path):
    path = script_file(tmp_path, n_classes=2)
    (tmp_path / "net.json").write_text(json.dumps({"class_names": ["background", "liver"], "input_multiple": 4,
                                                   "normalisation": {"mode": "none"}}))
    target = load_target(path, "cpu")
    assert target.class_names == ("background", "liver") and target.input_multiple == 4
    assert target.normalisation == {"mode": "none"} and target.notes == []


@pytest.mark.parametrize("text, expected", [
    ("{not json", "is not readable JSON"),
    ('{"normalization": {"mode": "none"}}', "unknown keys normalization"),
    ('{"normalisation": {"mode": "ct", "clip": [0, 1]}}', "needs 'mean'"),
    ('{"input_multiple": 0}', "invalid input_multiple 0"),
    ('[1, 2]', "must hold a JSON object"),
])
def test_bad_sidecar_names_the_sidecar(tmp_path, text, expected):
    path = script_file(tmp_path)
    (tmp_path / "net.json").write_text(text)
    with pytest.raises(InputFileError) as info:
        load_target(path, "cpu")
    assert expected in str(info.value) and str(tmp_path / "net.json") in str(info.value)


def test_cli_flags_reach_the_target_and_the_report(tiny_files, tmp_path, capsys):
    path = script_file(tmp_path)
    report = tmp_path / "report.json"
    code = main(["evaluate", "--target", str(path), "--ct", str(tiny_files["ct"]), "--labels",
                 str(tiny_files["labels"]), "--device", "cpu", "--normalisation", "ct:-958,327,82.9,136.9",
                 "--class-names", ",".join(ORGAN_CLASSES), "--json", str(report)])
    _, err = capsys.readouterr()
    assert code == 0
    assert "declares no" not in err
    assert json.loads(report.read_text())["normalisation"] == CT


def test_cli_says_the_assumed_normalisation_once(tiny_files, tmp_path, capsys):
    path = script_file(tmp_path)
    code = main(["evaluate", "--target", str(path), "--ct", str(tiny_files["ct"]), "--labels",
                 str(tiny_files["labels"]), "--device", "cpu", "--class-names", ",".join(ORGAN_CLASSES)])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if "assuming per-volume z-score" in line]
    assert len(lines) == 1 and lines[0].startswith("advseg: warning: net.pt declares no input normalisation")
    assert "declares no input normalisation" not in out


def test_cli_bad_normalisation_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--normalisation", "window:300,-200"])
    _, err = capsys.readouterr()
    assert info.value.code == 2
    assert "argument --normalisation: expected zscore | window:LO,HI[:A,B] | ct:LO,HI,MEAN,STD | none" in err


def test_robustness_takes_the_same_overrides_for_every_target(tiny_files, tmp_path, capsys):
    path = script_file(tmp_path)
    out = tmp_path / "report"
    code = main(["robustness", "--target", str(path), "--ct", str(tiny_files["ct"]), "--labels",
                 str(tiny_files["labels"]), "--generator", str(tiny_files["generator"]), "--device", "cpu",
                 "--class-names", ",".join(ORGAN_CLASSES), "--rhos", "0.05", "--new-generator-steps", "1",
                 "--samples", "1", "--out", str(out), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if "assuming per-volume z-score" in line]
    assert len(lines) == 1 and lines[0].startswith("advseg: warning: net.pt declares no input normalisation")
    assert "declares no class names" not in err and "declare" not in err.replace(lines[0], "")
