"""One compatibility check between a generator and a target: every path that loads a generator refuses a
generator trained against other classes or another intensity normalisation, with the same message."""

from __future__ import annotations

import pytest
import torch

from napari_advseg.attack.checkpoint import generator_mismatch, load_checkpoint, load_generator
from napari_advseg.errors import AdvsegError
from napari_advseg.models.target_load import load_target

OTHER_CLASSES = ["background", "heart", "lung"]


def _saved_with(tiny_files, folder, **changes):
    """The tiny generator checkpoint with some of its record changed, saved under ``folder``."""
    state = load_checkpoint(tiny_files["generator"])
    state.update(changes)
    path = folder / "other.pt"
    torch.save(state, path)
    return path


def _classes_message(path, target) -> str:
    return f"{path}: trained against classes {OTHER_CLASSES}, but the target has {list(target.class_names)}"


def test_load_generator_refuses_other_classes_and_other_intensities(tiny_files, tmp_path):
    target = load_target(tiny_files["target"], "cpu")
    assert load_checkpoint(tiny_files["generator"])["normalisation"] == target.normalisation  # recorded
    generator, _, meta = load_generator(tiny_files["generator"], "cpu", target=target)
    assert meta["class_names"] == list(target.class_names)

    other = _saved_with(tiny_files, tmp_path, class_names=OTHER_CLASSES)
    load_generator(other, "cpu")  # without a target there is nothing to compare with
    with pytest.raises(AdvsegError) as refused:
        load_generator(other, "cpu", target=target)
    assert str(refused.value) == _classes_message(other, target)

    window = _saved_with(tiny_files, tmp_path, normalisation={"mode": "window", "window": [-160.0, 240.0]})
    with pytest.raises(AdvsegError, match=r"trained against a target that sees the HU window \[-160, 240\], "
                                          r"but this target sees zscore intensities"):
        load_generator(window, "cpu", target=target)


def test_the_mismatch_rule():
    classes = ("background", "liver")
    assert generator_mismatch({"class_names": list(classes)}, classes) is None  # no normalisation recorded
    assert generator_mismatch({"class_names": ["background", "spleen"]}, classes) is not None
    window = {"mode": "window", "window": [-160, 240]}
    assert generator_mismatch({"class_names": list(classes), "normalisation": window}, classes,
                              {"mode": "window", "window": [-160.0, 240.0], "note": "kept"}) is None
    assert generator_mismatch({"class_names": list(classes), "normalisation": window}, classes,
                              {"mode": "window", "window": [-100.0, 240.0]}) is not None
    assert generator_mismatch({"class_names": list(classes), "normalisation": {"mode": "zscore"}}, classes,
                              None) is None


def test_resume_and_hardening_refuse_with_the_same_message(tiny_files, tmp_path):
    from napari_advseg.attack.trainer import AttackTrainer
    from napari_advseg.data.cases import load_case
    from napari_advseg.defense.sources import load_generator_state

    target = load_target(tiny_files["target"], "cpu")
    other = _saved_with(tiny_files, tmp_path, class_names=OTHER_CLASSES)
    case = load_case(tiny_files["ct"], tiny_files["labels"], target.normalisation)
    with pytest.raises(AdvsegError) as refused:
        AttackTrainer.resume(other, target, case.images, case.labels, "cpu")
    assert str(refused.value) == _classes_message(other, target)
    with pytest.raises(AdvsegError) as refused:
        load_generator_state(other, target)
    assert str(refused.value) == _classes_message(other, target)


def test_the_command_line_refuses_to_resume_a_generator_of_other_classes(tiny_files, tmp_path, capsys):
    from napari_advseg.cli import main

    target = load_target(tiny_files["target"], "cpu")
    other = _saved_with(tiny_files, tmp_path, class_names=OTHER_CLASSES)
    code = main([str(a) for a in ["train", "--ct", tiny_files["ct"], "--labels", tiny_files["labels"], "--target",
                                  tiny_files["target"], "--steps", "3", "--device", "cpu", "--quiet",
                                  "--out", tmp_path / "run", "--resume", other]])
    _, err = capsys.readouterr()
    assert code != 0
    assert _classes_message(other, target) in err


@pytest.mark.parametrize("command", ["evaluate", "sample", "curve"])
def test_evaluate_sample_and_curve_refuse_a_generator_of_other_classes(tiny_files, tmp_path, capsys, command):
    from napari_advseg.cli import main

    target = load_target(tiny_files["target"], "cpu")
    other = _saved_with(tiny_files, tmp_path, class_names=OTHER_CLASSES)
    args = [command, "--ct", tiny_files["ct"], "--labels", tiny_files["labels"], "--target", tiny_files["target"],
            "--generator", other, "--device", "cpu", "--quiet"]
    if command != "evaluate":
        args += ["--out", tmp_path / "out"]
    code = main([str(a) for a in args])
    _, err = capsys.readouterr()
    assert code == 2
    assert _classes_message(other, target) in err
    assert not (tmp_path / "out").exists()


def test_the_widget_session_refuses_a_generator_of_other_classes(tiny_files, tmp_path):
    from napari_advseg.widgets._model import AttackSession

    session = AttackSession()
    session.set_device("cpu")
    session.load_target(tiny_files["target"])
    other = _saved_with(tiny_files, tmp_path, class_names=OTHER_CLASSES)
    with pytest.raises(AdvsegError) as refused:
        session.load_generator(other)
    assert str(refused.value) == _classes_message(other, session.target)
    assert session.generator is None
    session.load_generator(tiny_files["generator"])
    assert session.generator is not None
    session.load_target(tiny_files["target"])  # the same classes: the generator stays
    assert session.generator is not None
