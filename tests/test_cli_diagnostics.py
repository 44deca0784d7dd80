"""`advseg evaluate` says what it attacked with (or that it measured clean Dice only); --threads reaches torch."""

from __future__ import annotations

import json
import shutil

import torch

from napari_advseg.cli import main
from napari_advseg.data.samples import SAMPLE_FILES


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_without_generator_on_other_data_reports_clean_dice_only(tiny_files, tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        code, out, err = run(["evaluate", "--ct", tiny_files["ct"], "--labels", tiny_files["labels"],
                              "--target", tiny_files["target"], "--json", tmp_path / "r.json", "--device", "cpu",
                              "--threads", "2"], capsys)
        assert torch.get_num_threads() == 2  # --threads reached torch
    finally:
        torch.set_num_threads(before)
    assert code == 0, err
    assert out.splitlines()[0].startswith("no --generator: clean Dice only")
    assert "| organ | clean Dice (%) |" in out and "decrease" not in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["generator"] is None
    assert report["normalisation"] == {"mode": "zscore"}
    assert all(set(row) == {"dice_clean"} for row in report["organs"].values())
    assert report["slices"] > 0


def test_evaluate_with_the_shipped_sample_names_its_generator(tiny_files, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "sample"
    folder.mkdir()
    for kind in ("ct", "labels", "target", "generator"):
        shutil.copy(tiny_files[kind], folder / SAMPLE_FILES[kind])
    monkeypatch.setenv("ADVSEG_SAMPLE_DATA", str(folder))
    code, out, err = run(["evaluate", "--samples", "1", "--json", tmp_path / "r.json", "--device", "cpu",
                          "--threads", "1"], capsys)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("generator: the shipped sample generator") and SAMPLE_FILES["generator"] in first
    assert "| 30 % decrease |" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["generator"].endswith(SAMPLE_FILES["generator"])
    assert report["normalisation"] == {"mode": "zscore"}


def test_evaluate_with_a_given_generator_names_it(tiny_files, tmp_path, capsys):
    code, out, err = run(["evaluate", "--ct", tiny_files["ct"], "--labels", tiny_files["labels"], "--target",
                          tiny_files["target"], "--generator", tiny_files["generator"], "--samples", "1",
                          "--device", "cpu"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == f"generator: {tiny_files['generator']}"


def test_threads_must_be_positive(capsys):
    try:
        main(["evaluate", "--threads", "0"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("--threads 0 was accepted")
    assert "--threads" in capsys.readouterr().err
