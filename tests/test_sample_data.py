"""The shipped sample data: present, small, and the shipped generator passes the paper's bar on it."""

from __future__ import annotations

import json

import pytest

from napari_advseg.cli import main
from napari_advseg.data.cases import SAMPLE_FILES, load_case, sample_data_dir
from napari_advseg.models.target_load import load_target
from napari_advseg.attack.trainer import load_generator
from napari_advseg.workflows import evaluate_case


def test_sample_files_exist_and_are_small():
    folder = sample_data_dir()
    sizes = {name: (folder / name).stat().st_size for name in SAMPLE_FILES.values()}
    assert sum(sizes.values()) < 20 * 2**20, sizes


def test_shipped_generator_passes_the_paper_bar():
    target = load_target(sample_data_dir() / SAMPLE_FILES["target"], "cpu")
    generator, config, meta = load_generator(sample_data_dir() / SAMPLE_FILES["generator"], "cpu")
    case = load_case(normalisation=target.normalisation)
    assert meta["class_names"] == list(target.class_names)
    report = evaluate_case(generator, config, target, case, samples=2, seed=1)
    assert set(report["organs"]) == set(target.class_names[1:])   # every organ is in the sample volume
    for organ, row in report["organs"].items():
        assert row["dice_clean"] > 0.6, organ                       # the target segments the sample well
        assert row["drop"] >= 0.30, (organ, row)                    # the paper's success bar
    assert report["rho"] <= 0.08
    assert report["fold_fraction"] < 0.01


def test_evaluate_with_no_arguments_uses_the_sample(tmp_path, capsys):
    code = main(["evaluate", "--samples", "1", "--device", "cpu", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "| U-Net, clean |" in out and "phantom_ct.nii.gz" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["organs"]) == 5
