"""The Train tab's honest defaults, the generator list, plain words and readable messages.

The GUI tests run under a display (``xvfb-run -a``) on the tiny phantom of conftest.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading

import numpy as np
import pytest

from test_widget import SPACING, _strong_generator, _tiny_scene, _tiny_training


# ---------------------------------------------------------------------------------------------- no display


def test_messages_put_the_problem_before_the_path():
    from napari_advseg.errors import InputFileError, path_last

    long = "/home/someone/a rather long folder/of many parts/ct.nii.gz"
    assert path_last(f"{long}: not a NIfTI file") == f"not a NIfTI file ({long})"
    assert path_last(InputFileError(long, "no such file")) == f"no such file ({long})"
    assert path_last("runs/x/generator.pt: trained against: other classes") == \
        "trained against: other classes (runs/x/generator.pt)"
    assert path_last("net.json: not valid JSON") == "not valid JSON (net.json)"
    for plain in ("labels layer 'x': shape (3, 4) differs", "step 3: the attack term", "gamma must be >= 0",
                  "RuntimeError: failed reading /x/y"):
        assert path_last(plain) == plain  # no leading path: as it is


def test_in_own_thread_steps_a_generator_in_a_thread_of_its_own():
    from napari_advseg.widgets._workers import call_in_own_thread, in_own_thread

    caller = threading.get_native_id()
    where = {}

    def counting():
        try:
            for i in range(10):
                where[i] = threading.get_native_id()
                yield i
            return "done"
        finally:
            where["finally"] = threading.get_native_id()

    steps = in_own_thread(counting)
    assert [next(steps), next(steps)] == [0, 1]
    assert 2 not in where  # one step per next, like a generator
    steps.close()  # closes the iterator in its own thread: its finally runs there, now
    assert where["finally"] not in (None, caller) and where[0] == where["finally"]

    def whole():
        result = yield from in_own_thread(counting)
        yield result

    assert list(whole()) == list(range(10)) + ["done"]  # every value, then the return value

    def failing():
        yield 1
        raise ValueError("boom")

    failing_run = in_own_thread(failing)
    assert next(failing_run) == 1
    with pytest.raises(ValueError, match="boom"):
        next(failing_run)
    assert call_in_own_thread(threading.get_native_id) != caller


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are set on Linux")
def test_background_priority_lowers_the_thread_and_leaves_a_core():
    import torch

    from napari_advseg.widgets._workers import BACKGROUND_NICE, background_priority, call_in_own_thread

    def inside():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), torch.get_num_threads()

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    before = torch.get_num_threads()
    nice, threads = call_in_own_thread(inside, setup=lambda: background_priority("cpu"))
    assert nice == min(19, mine + BACKGROUND_NICE)
    assert threads == max(1, min(before, (os.cpu_count() or 1) - 1))
    assert torch.get_num_threads() == before  # given back afterwards
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the caller is untouched


def test_quick_setting_durations_and_run_folders(tmp_path):
    from napari_advseg.widgets._train import (QUICK_MIN_STEPS, QUICK_SECONDS, format_duration, next_run_folder,
                                              quick_steps)

    assert format_duration(20) == "< 1 min" and format_duration(299) == "5 min"
    assert format_duration(7000) == "1 h 57 min"
    assert quick_steps(QUICK_SECONDS / 230, 1000) == 230  # what fits the budget, in tens
    assert quick_steps(60.0, 1000) == QUICK_MIN_STEPS  # never fewer than the minimum
    assert quick_steps(0.01, 1000) == 1000  # never more than the full setting
    assert next_run_folder(tmp_path) == tmp_path / "run-1"
    (tmp_path / "run-1").mkdir()
    assert next_run_folder(tmp_path) == tmp_path / "run-1"  # an empty folder is free
    (tmp_path / "run-1" / "generator.pt").write_bytes(b"x")
    assert next_run_folder(tmp_path) == tmp_path / "run-2"


def test_every_technical_word_has_one_plain_sentence():
    from napari_advseg.widgets._words import GLOSSARY

    for term in ("gamma", "alpha", "beta", "temperature", "rho", "steps", "batch"):
        sentence = GLOSSARY[term]
        assert sentence.endswith(".") and ". " not in sentence[:-1], term  # one sentence
        assert 40 < len(sentence) < 220, term


def test_the_demo_keeps_napari_s_pyqt5_notice_off_the_canvas():
    from napari.utils.notifications import notification_manager, show_warning

    from napari_advseg.widgets.demo import QT5_NOTICE, without_qt5_notice

    shown = []
    listener = notification_manager.notification_ready.connect(lambda event: shown.append(str(event.message)))
    try:
        seen = len(notification_manager.records)
        with without_qt5_notice():
            show_warning(QT5_NOTICE + " and will be removed")
            show_warning("a warning a user should see")
        assert shown == ["a warning a user should see"]
        assert len(notification_manager.records) == seen + 2  # recorded, only not shown
    finally:
        notification_manager.notification_ready.disconnect(listener)


def test_step_seconds_measures_training_as_the_tab_runs_it(tiny):
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.widgets._model import AttackSession
    from napari_advseg.widgets._tasks import step_seconds

    session = AttackSession()
    session.device = "cpu"
    session.load_target(tiny["target"])
    session.set_volume(volume_from_array(tiny["hu"], SPACING), tiny["labels"])
    config = session.make_config(steps=1000, batch_size=2, critic_steps=1, base_channels=8)
    timing = step_seconds(session.snapshot(), config)
    assert timing["device"] == "cpu" and timing["batch_size"] == 2
    assert 0 < timing["step"] < 60 and timing["setup"] >= 0


# ---------------------------------------------------------------------------------------------- napari


@pytest.mark.gui
def test_time_estimate_and_the_quick_setting_on_the_cpu(make_napari_viewer, qtbot, tiny, monkeypatch):
    import napari_advseg.widgets._train as train_module
    from napari_advseg.widgets._model import DEFAULT_CONFIG

    measured = []

    def fake_step_seconds(snapshot, config, cancelled=None):  # 3 s per step at batch 8 on the CPU, in proportion to the batch
        measured.append(config.batch_size)
        return {"step": 3.0 * config.batch_size / 8, "setup": 2.0, "device": "cpu", "batch_size": config.batch_size}

    monkeypatch.setattr(train_module, "step_seconds", fake_step_seconds)
    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    train = widget.train
    assert (train.steps.value(), train.batch_size.value()) == (DEFAULT_CONFIG.steps, DEFAULT_CONFIG.batch_size)
    assert not train.presets.isVisibleTo(train)  # nothing to offer before a measurement

    train.measure()
    qtbot.waitUntil(lambda: train.timing_job is None and len(measured) == 1, timeout=30_000)
    # 1000 steps of 8 would take 50 min: the untouched form takes the quick setting, 200 steps of 4
    assert measured == [DEFAULT_CONFIG.batch_size]
    assert (train.steps.value(), train.batch_size.value()) == (200, train_module.QUICK_BATCH)
    assert "scaled" in train.estimate_label.text()  # batch 4 is not measured yet
    train.measure()
    qtbot.waitUntil(lambda: train.timing_job is None and len(measured) == 2, timeout=30_000)
    text = train.estimate_label.text()
    assert "1.50 s per step on the CPU (measured)" in text and "200 steps of 4 ≈ 5 min" in text
    assert "full one is a click away" in text
    assert train.presets.isVisibleTo(train)
    assert train.full_button.text() == "Full: 1000 × 8 (≈ 50 min)" and train.full_button.isEnabled()
    assert train.quick_button.text() == "Quick: 200 × 4 (≈ 5 min)" and not train.quick_button.isEnabled()

    train.full_button.click()
    assert (train.steps.value(), train.batch_size.value()) == (1000, 8)
    assert "1000 steps of 8 ≈ 50 min" in train.estimate_label.text()
    train.quick_button.click()
    assert (train.steps.value(), train.batch_size.value()) == (200, 4)
    train.steps.setValue(250)  # the user's own choice is kept from now on
    assert not train.form_untouched and "click away" not in train.estimate_label.text()
    assert len(measured) == 2  # both batch sizes are known: nothing measured again


@pytest.mark.gui
def test_the_slider_switch_and_the_learning_rate_box(make_napari_viewer, qtbot, tiny, monkeypatch):
    """The switch (off by default) turns the four shaping terms on and its runs are timed apart; the
    learning rate shows in full and takes scientific notation."""
    import napari_advseg.widgets._train as train_module
    from napari_advseg.attack.config import SLIDER_OPTIONS_OFF, SLIDER_OPTIONS_ON, AttackConfig

    measured = []

    def fake_step_seconds(snapshot, config, cancelled=None):  # shaping doubles a step's time
        measured.append(config.single_alone)
        step = 3.0 if config.single_alone else 1.5
        return {"step": step, "setup": 2.0, "device": "cpu", "batch_size": config.batch_size}

    monkeypatch.setattr(train_module, "step_seconds", fake_step_seconds)
    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    train, session = widget.train, widget.session
    assert not train.sliders.isChecked() and len(train.sliders.toolTip()) > 30
    off = session.make_config(**train.settings())
    assert off == AttackConfig(**train.settings()) and all(getattr(off, k) == getattr(AttackConfig(), k)
                                                           for k in SLIDER_OPTIONS_OFF)
    assert all(getattr(off, k) == v for k, v in SLIDER_OPTIONS_OFF.items())
    train.measure()
    qtbot.waitUntil(lambda: train.timing_job is None and measured == [False], timeout=30_000)

    train.sliders.setChecked(True)
    on = session.make_config(**train.settings())
    assert all(getattr(on, k) == v for k, v in SLIDER_OPTIONS_ON.items())
    assert train.estimate() is None  # the time measured with the shaping off does not stand for this one
    train.measure()
    qtbot.waitUntil(lambda: train.timing_job is None and measured == [False, True], timeout=30_000)
    assert f"{train.estimate()['step']:.2f}" == "3.00"
    train.config_overrides = {"lambda_mean": 5.0}  # a setting the form does not show still wins
    assert train.settings()["lambda_mean"] == 5.0 and train.settings()["single_alone"] is True

    assert train.lr.text() == "0.0005"  # the default learning rate in full, not cut to 0.000
    train.lr.lineEdit().selectAll()
    qtbot.keyClicks(train.lr.lineEdit(), "2e-4")
    train.lr.interpretText()
    assert train.lr.value() == pytest.approx(2e-4) and train.settings()["lr_generator"] == pytest.approx(2e-4)

    train.show_config(on)  # a resumed run's switch shows how it was trained
    assert train.sliders.isChecked()
    train.show_config(off)
    assert not train.sliders.isChecked()


@pytest.mark.gui
def test_runs_join_the_generator_list_and_the_shipped_one_stays_a_click_away(make_napari_viewer, qtbot, tiny,
                                                                            tmp_path):
    from napari.utils.notifications import notification_manager

    from napari_advseg.widgets._generators import SHIPPED_NAME, shipped_generator
    from napari_advseg.widgets._train import IDLE

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    session, listed, train = widget.session, widget.generators, widget.train
    shipped = shipped_generator()
    assert [e.name for e in session.generators] == ([SHIPPED_NAME] if shipped else [])
    assert listed.combo.currentText().startswith("none")

    first = _strong_generator(tiny, tmp_path)
    assert widget.load_generator_file(first)
    assert session.current_entry().path == str(first) and listed.combo.currentData() == str(first)

    # a run trained in the tab, stopped early: listed, but Explore keeps the current generator
    _tiny_training(widget, tmp_path / "run-a", steps=50)
    train.start_button.click()
    qtbot.waitUntil(lambda: len(train.plot.history) >= 2, timeout=60_000)
    training = [t for t in threading.enumerate() if t.name == "advseg-training"]
    assert len(training) == 1  # the steps run in a thread of their own ...
    if sys.platform.startswith("linux"):  # ... behind the viewer's
        assert os.getpriority(os.PRIO_PROCESS, training[0].native_id) > os.getpriority(os.PRIO_PROCESS, 0)
    seen = len(notification_manager.records)
    train.stop_button.click()
    qtbot.waitUntil(lambda: train.state == IDLE and train.job is None, timeout=60_000)
    stopped = tmp_path / "run-a" / "generator.pt"
    entry = session.generator_entry(stopped)
    assert entry.name == "run-a" and entry.total == 50 and 2 <= entry.steps < 50
    assert session.generator_path == str(first)
    message = str(notification_manager.records[seen].message)
    assert message.startswith(f"Training stopped at step {entry.steps} of 50: 'run-a' is in the Generator list")

    # a run that trained all its steps becomes current; the one before is a click away
    done = tmp_path / "run-b" / "generator.pt"
    done.parent.mkdir()
    shutil.copy(first, done)
    seen = len(notification_manager.records)
    train.add_run(str(done), 1, 1)
    assert session.generator_path == str(done)
    assert "Explore now uses 'run-b'" in str(notification_manager.records[seen].message)
    assert "one click away" in str(notification_manager.records[seen].message)
    names = [e.name for e in session.generators]
    assert names[-2:] == ["run-a", "run-b"] and len(names) == len(set(names))  # added, never in another's place

    # every entry gets its Table-1 summary on this CT in the background
    qtbot.waitUntil(lambda: listed.job is None and all(e.summary_key == session.case_revision
                                                       for e in session.generators), timeout=120_000)
    summary = session.generator_entry(stopped).summary
    assert summary["slices"] == 8 and summary["reference"] == "labels"  # every slice of the tiny CT
    assert 0 <= summary["succeeded"] <= len(summary["organs"]) and np.isfinite(summary["rho"])
    lines = listed.entries()
    assert any(line.startswith(f"run-a ({entry.steps} of 50 steps): Dice ") for line in lines)
    assert all("organs -30 % or more" in line for line in lines)
    assert listed.summary_label.text().startswith("Table 1 on this CT (8 slices): mean Dice drop ")

    # the earlier generators are one click away
    assert listed.choose_path(first)
    assert session.generator_path == str(first) and listed.combo.currentData() == str(first)
    assert len(widget.explore.phi_sliders.sliders) == session.config.latent_dim  # Explore follows
    if shipped:
        assert listed.choose_path(shipped) and session.generator_path == str(shipped)

    # a file that cannot be loaded: the cause comes first in the message, the long path after it
    bad = tmp_path / ("a folder with a long name " * 3).strip() / "generator.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint" * 8)
    seen = len(notification_manager.records)
    assert not widget.load_generator_file(bad)
    message = str(notification_manager.records[seen].message)
    assert not message.startswith(str(tmp_path)) and message.endswith(f"({bad})")


@pytest.mark.gui
def test_train_and_harden_explain_every_setting(make_napari_viewer, qtbot, tiny):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QAbstractSpinBox, QFormLayout, QLabel

    viewer, widget = _tiny_scene(make_napari_viewer, qtbot, tiny)
    for panel in (widget.train, widget.harden):
        labels = [label for form in panel.findChildren(QFormLayout)
                  for row in range(form.rowCount())
                  if (item := form.itemAt(row, QFormLayout.LabelRole)) is not None
                  and isinstance(label := item.widget(), QLabel)]
        assert len(labels) >= 6
        for label in labels:
            assert len(label.toolTip()) > 30, label.text()
        for box in panel.findChildren(QAbstractSpinBox):
            assert len(box.toolTip()) > 30
    method = widget.harden.method
    widest = max(method.fontMetrics().horizontalAdvance(method.itemText(i)) for i in range(method.count()))
    assert widest < 200  # the names fit a narrow dock; each one's tooltip says what it is
    assert all(len(method.itemData(i, Qt.ToolTipRole)) > 30 for i in range(method.count()))
