"""Reference labels mapped by class name into a target's classes: other order, fewer classes, extra classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from napari_advseg.cli import main
from napari_advseg.data.cases import load_case
from napari_advseg.data.class_map import map_classes
from napari_advseg.io.nifti import load_labels
from napari_advseg.io.volumes import load_volume
from napari_advseg.organs import ORGAN_CLASSES

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_thread")]

SPLEEN_LIVER = ["background", "spleen", "liver"]


def conv_target(tmp_path, n_classes: int):
    """A TorchScript one-layer network with ``n_classes`` output channels."""
    torch.manual_seed(0)
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(nn.Conv2d(1, n_classes, 3, padding=1).eval()), str(path))
    return path


def test_identical_names_map_nothing():
    mapping = map_classes(ORGAN_CLASSES, list(ORGAN_CLASSES))
    assert mapping.identical and mapping.message() is None
    assert mapping.record() == {name: i for i, name in enumerate(ORGAN_CLASSES)}
    labels = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    assert mapping.apply(labels) is labels


def test_other_order_and_fewer_classes():
    mapping = map_classes(ORGAN_CLASSES, SPLEEN_LIVER)
    assert mapping.record() == {"background": 0, "liver": 2, "spleen": 1, "kidney_left": None,
                                "kidney_right": None, "pancreas": None}
    assert mapping.unmatched_reference == ("kidney_left", "kidney_right", "pancreas")
    assert mapping.unmatched_target == ()
    labels = np.arange(6, dtype=np.uint8)
    assert mapping.apply(labels).tolist() == [0, 2, 1, 0, 0, 0]
    assert mapping.message() == ("class mapping by name: reference label values scored as network classes "
                                 "liver 1->2, spleen 2->1; reference kidney_left, kidney_right, pancreas have no "
                                 "network class (scored as background)")


def test_a_network_class_with_no_reference_label():
    mapping = map_classes(ORGAN_CLASSES, ["bg", "Liver", "spleen", "kidney"])
    assert mapping.record() == {"background": 0, "liver": 1, "spleen": 2, "kidney_left": None,
                                "kidney_right": None, "pancreas": None}
    assert mapping.unmatched_target == ("kidney",)
    assert mapping.message() == ("class mapping by name: reference kidney_left, kidney_right, pancreas have no "
                                 "network class (scored as background); network class kidney has no reference "
                                 "label (left out of Dice)")


def test_no_shared_name_reads_values_as_indices():
    mapping = map_classes(ORGAN_CLASSES, ["bg", "a", "b"])
    assert not mapping.by_name
    assert mapping.record() == {"background": 0, "liver": 1, "spleen": 2, "kidney_left": None,
                                "kidney_right": None, "pancreas": None}
    assert "read as the target's class indices" in mapping.message()


def test_load_case_maps_the_labels(tiny_files):
    raw = load_labels(tiny_files["labels"], load_volume(tiny_files["ct"]))
    case = load_case(tiny_files["ct"], tiny_files["labels"], {"mode": "zscore"}, SPLEEN_LIVER)
    expected = np.select([raw == 1, raw == 2], [2, 1], 0).astype(np.uint8)
    assert {1, 2} <= set(np.unique(raw).tolist()) and np.array_equal(case.labels, expected)
    assert case.class_mapping.record()["liver"] == 2
    same = load_case(tiny_files["ct"], tiny_files["labels"], {"mode": "zscore"}, ORGAN_CLASSES)
    assert np.array_equal(same.labels, raw) and same.class_mapping.identical


def test_evaluate_maps_by_name_and_says_so_once(tiny_files, tmp_path, capsys):
    path = conv_target(tmp_path, 3)
    report = tmp_path / "report.json"
    code = main(["evaluate", "--target", str(path), "--ct", str(tiny_files["ct"]), "--labels",
                 str(tiny_files["labels"]), "--device", "cpu", "--normalisation", "zscore",
                 "--class-names", ",".join(SPLEEN_LIVER), "--json", str(report)])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if "class mapping" in line]
    assert lines == ["advseg: warning: " + map_classes(ORGAN_CLASSES, SPLEEN_LIVER).message()]
    record = json.loads(report.read_text())
    assert record["class_mapping"] == {"background": 0, "liver": 2, "spleen": 1, "kidney_left": None,
                                       "kidney_right": None, "pancreas": None}
    assert set(record["organs"]) == {"spleen", "liver"}
    assert all(row["dice_clean"] is not None for row in record["organs"].values())


def test_evaluate_with_identical_names_is_unchanged(tiny_files, tmp_path, capsys):
    path = conv_target(tmp_path, len(ORGAN_CLASSES))
    report = tmp_path / "report.json"
    code = main(["evaluate", "--target", str(path), "--ct", str(tiny_files["ct"]), "--labels",
                 str(tiny_files["labels"]), "--device", "cpu", "--normalisation", "zscore",
                 "--class-names", ",".join(ORGAN_CLASSES), "--json", str(report)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "class mapping" not in err
    record = json.loads(report.read_text())
    assert "class_mapping" not in record and list(record["organs"]) == list(ORGAN_CLASSES[1:])
