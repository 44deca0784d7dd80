"""Reference labels that name their values: the sidecar JSON, ``--label-names``, other numberings scored by name."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from torch import nn

from napari_advseg.cli import main
from napari_advseg.data.cases import load_case
from napari_advseg.data.class_map import map_classes
from napari_advseg.errors import InputFileError
from napari_advseg.io.labels import label_sidecar_path, read_label_names
from napari_advseg.io.nifti import load_labels
from napari_advseg.io.nifti_save import save_volume
from napari_advseg.io.volumes import load_volume
from napari_advseg.organs import ORGAN_CLASSES

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_thread")]

OTHER_NUMBERING = ("background", "spleen", "kidney_right", "liver", "pancreas", "kidney_left")
"""Value -> name of the relabelled map: liver is 3 and spleen 1, the other organs moved too."""


def relabel(standard: np.ndarray, names=OTHER_NUMBERING) -> np.ndarray:
    """The standard organ map written in the numbering ``names``."""
    table = np.array([names.index(name) for name in ORGAN_CLASSES], dtype=np.uint8)
    return table[standard]


@pytest.fixture(scope="module")
def renumbered(tiny_files, tmp_path_factory):
    """conftest's tiny labels written with :data:`OTHER_NUMBERING`, without a sidecar (tests add theirs)."""
    volume = load_volume(tiny_files["ct"])
    standard = load_labels(tiny_files["labels"], volume)
    folder = tmp_path_factory.mktemp("renumbered")
    path = folder / "seg.nii.gz"
    save_volume(relabel(standard), volume, path, dtype=np.uint8)
    assert {1, 2, 3} <= set(np.unique(standard).tolist())
    return {"path": path, "standard": standard, "folder": folder}


@pytest.fixture(scope="module")
def standard_net(tmp_path_factory):
    """A TorchScript one-layer network with the six organ channels in the standard order."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("net") / "net.pt"
    torch.jit.save(torch.jit.script(nn.Conv2d(1, len(ORGAN_CLASSES), 3, padding=1).eval()), str(path))
    return path


def write_sidecar(labels_path, content) -> None:
    label_sidecar_path(labels_path).write_text(json.dumps(content))


def evaluate(tiny_files, labels, net, out, capsys, *extra) -> tuple[int, dict | None, str]:
    report = out / "report.json"
    report.unlink(missing_ok=True)
    code = main(["evaluate", "--target", str(net), "--ct", str(tiny_files["ct"]), "--labels", str(labels),
                 "--device", "cpu", "--normalisation", "zscore", "--class-names", ",".join(ORGAN_CLASSES),
                 "--json", str(report), *extra])
    _, err = capsys.readouterr()
    return code, (json.loads(report.read_text()) if report.is_file() else None), err


def clean_dice(record: dict) -> dict:
    return {name: row["dice_clean"] for name, row in record["organs"].items()}


def test_sidecar_path_drops_the_nifti_suffix(tmp_path):
    assert label_sidecar_path(tmp_path / "labels.nii.gz") == tmp_path / "labels.json"
    assert label_sidecar_path(tmp_path / "seg.nii") == tmp_path / "seg.json"
    assert label_sidecar_path(tmp_path / "CT.SEG.NII.GZ") == tmp_path / "CT.SEG.json"
    assert label_sidecar_path(tmp_path / "seg.mha") == tmp_path / "seg.json"


@pytest.mark.parametrize("content", [
    {"class_names": list(OTHER_NUMBERING)},
    {"labels": {"1": "spleen", "2": "kidney_right", "3": "liver", "4": "pancreas", "5": "kidney_left"}},
    {"labels": {"0": "background", "5": "kidney_left", "3": "liver", "1": "spleen", "2": "kidney_right",
                "4": "pancreas"}},
])
def test_both_sidecar_forms_name_the_values(tmp_path, content):
    path = tmp_path / "seg.nii.gz"
    path.write_bytes(b"")
    assert read_label_names(path) is None  # no sidecar: nothing declared
    write_sidecar(path, content)
    assert read_label_names(path) == OTHER_NUMBERING


def test_unlisted_values_get_a_name_that_matches_no_class(tmp_path):
    path = tmp_path / "seg.nii"
    path.write_bytes(b"")
    write_sidecar(path, {"labels": {"1": "liver", "3": "spleen"}})
    names = read_label_names(path)
    assert names == ("background", "liver", "value 2", "spleen")
    mapping = map_classes(names, ORGAN_CLASSES)
    assert mapping.record() == {"background": 0, "liver": 1, "value 2": None, "spleen": 2}


@pytest.mark.parametrize("content, problem", [
    ({"class_name": ["background", "liver"]}, "unknown keys class_name"),
    ({"class_names": ["background", "liver"], "labels": {"1": "liver"}}, "both class_names and labels"),
    ({"class_names": ["background", "liver", "liver"]}, "liver is repeated"),
    ({"labels": {"one": "liver"}}, "labels keys must be label values"),
    ({"labels": {"1": 5}}, "each value to a name"),
    ([["background", "liver"]], "must hold a JSON object"),
])
def test_a_bad_sidecar_is_refused_naming_it(tmp_path, content, problem):
    path = tmp_path / "labels.nii.gz"
    path.write_bytes(b"")
    write_sidecar(path, content)
    with pytest.raises(InputFileError) as caught:
        read_label_names(path)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "labels.json") + ":") and problem in message
    assert "\n" not in message


def test_cli_refuses_a_misspelt_sidecar_key_with_status_2(tiny_files, renumbered, standard_net, tmp_path, capsys):
    labels = tmp_path / "labels.nii.gz"
    labels.write_bytes(renumbered["path"].read_bytes())
    write_sidecar(labels, {"classnames": list(OTHER_NUMBERING)})
    code, record, err = evaluate(tiny_files, labels, standard_net, tmp_path, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and record is None
    assert len(lines) == 1 and str(tmp_path / "labels.json") in lines[0] and "unknown keys classnames" in lines[0]


def test_renumbered_labels_score_as_the_standard_ones(tiny_files, renumbered, standard_net, tmp_path, capsys):
    code, standard, err = evaluate(tiny_files, tiny_files["labels"], standard_net, tmp_path, capsys)
    assert code == 0, err
    assert "class mapping" not in err
    labels = tmp_path / "seg.nii.gz"
    labels.write_bytes(renumbered["path"].read_bytes())
    write_sidecar(labels, {"labels": {"1": "spleen", "2": "kidney_right", "3": "liver", "4": "pancreas",
                                      "5": "kidney_left"}})
    code, mapped, err = evaluate(tiny_files, labels, standard_net, tmp_path, capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "class mapping" in line]
    assert warnings == ["advseg: warning: " + map_classes(OTHER_NUMBERING, ORGAN_CLASSES).message()]
    assert "liver 3->1" in warnings[0] and "spleen 1->2" in warnings[0]
    assert mapped["class_mapping"] == {name: ORGAN_CLASSES.index(name) for name in OTHER_NUMBERING}
    assert clean_dice(mapped) == clean_dice(standard)
    assert any(d for d in clean_dice(standard).values())  # the figures compared are not all zero

    # the same file read as if it had the standard numbering gives other figures
    label_sidecar_path(labels).unlink()
    code, unmapped, err = evaluate(tiny_files, labels, standard_net, tmp_path, capsys)
    assert code == 0, err
    assert clean_dice(unmapped) != clean_dice(standard)


def test_the_flag_overrides_the_sidecar(tiny_files, renumbered, standard_net, tmp_path, capsys):
    labels = tmp_path / "seg.nii.gz"
    labels.write_bytes(renumbered["path"].read_bytes())
    write_sidecar(labels, {"class_names": list(ORGAN_CLASSES)})  # wrong: the file is renumbered
    code, standard, _ = evaluate(tiny_files, tiny_files["labels"], standard_net, tmp_path, capsys)
    assert code == 0
    code, from_sidecar, _ = evaluate(tiny_files, labels, standard_net, tmp_path, capsys)
    assert code == 0 and clean_dice(from_sidecar) != clean_dice(standard)
    code, from_flag, err = evaluate(tiny_files, labels, standard_net, tmp_path, capsys,
                                    "--label-names", ",".join(OTHER_NUMBERING))
    assert code == 0, err
    assert clean_dice(from_flag) == clean_dice(standard)

    case = load_case(tiny_files["ct"], labels, {"mode": "zscore"}, ORGAN_CLASSES, label_names=OTHER_NUMBERING)
    assert np.array_equal(case.labels, renumbered["standard"])
    assert np.array_equal(load_case(tiny_files["ct"], labels, {"mode": "zscore"}).labels,
                          relabel(renumbered["standard"]))  # the sidecar's (standard) names: read as they are


def test_declared_names_are_a_strict_class_map(tiny_files, renumbered, tmp_path):
    labels = tmp_path / "seg.nii.gz"
    labels.write_bytes(renumbered["path"].read_bytes())
    write_sidecar(labels, {"class_names": ["background", "spleen", "kidney_right", "liver"]})
    with pytest.raises(InputFileError, match=r"seg\.nii\.gz: label values must be 0\.\.3 .* found 4, 5"):
        load_case(tiny_files["ct"], labels, {"mode": "zscore"}, ORGAN_CLASSES)


def test_label_names_flag_errors_and_every_labels_command_has_it(tiny_files, capsys):
    from napari_advseg.cli.parser import build_parser

    code = main(["evaluate", "--ct", str(tiny_files["ct"]), "--label-names", "background,liver"])
    assert code == 2 and "--label-names was given without --labels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["evaluate", "--ct", str(tiny_files["ct"]), "--labels", str(tiny_files["labels"]),
              "--label-names", "background,liver,liver"])
    assert caught.value.code == 2 and "one per label value, value 0 first" in capsys.readouterr().err

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    with_labels = [name for name, sub in commands.items() if "--labels" in sub._option_string_actions]
    assert {"train", "evaluate", "sample", "harden", "train-target"} <= set(with_labels)
    assert all("--label-names" in commands[name]._option_string_actions for name in with_labels)


def test_train_target_maps_named_labels_into_the_organ_classes(tiny_files, renumbered, tmp_path, capsys):
    from napari_advseg.models.target_load import load_target

    out = tmp_path / "unet.pt"
    code = main(["train-target", "--ct", str(tiny_files["ct"]), "--labels", str(renumbered["path"]),
                 "--label-names", ",".join(OTHER_NUMBERING), "--steps", "1", "--batch-size", "2",
                 "--patch-size", "32", "--base-channels", "4", "--device", "cpu", "--quiet", "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert ["advseg: warning: " + map_classes(OTHER_NUMBERING, ORGAN_CLASSES).message()] == \
        [line for line in err.splitlines() if "class mapping" in line]
    assert load_target(out, "cpu").class_names == tuple(ORGAN_CLASSES)


def test_the_reader_keeps_the_sidecar_names(renumbered, tmp_path):
    from napari_advseg._napari import layers as meta
    from napari_advseg._napari.reader import read_layer

    labels = tmp_path / "seg.nii.gz"
    labels.write_bytes(renumbered["path"].read_bytes())
    assert meta.LABEL_NAMES not in read_layer(labels, kind="labels")[1]["metadata"]
    write_sidecar(labels, {"class_names": list(OTHER_NUMBERING)})
    data, kwargs, kind = read_layer(labels)
    assert kind == "labels" and kwargs["metadata"][meta.LABEL_NAMES] == list(OTHER_NUMBERING)
    write_sidecar(labels, {"names": list(OTHER_NUMBERING)})
    with pytest.raises(InputFileError, match="unknown keys names"):
        read_layer(labels)
