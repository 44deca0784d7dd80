"""The generator list above the tabs: the shipped generator, those loaded and the runs trained since the
viewer opened, each with its steps and Table-1 summary; choosing one makes it the session's current
generator (Explore and Export follow).

The list itself is the session's (:attr:`~._model.AttackSession.generators`): the Train tab adds each
finished or stopped run to it, a load adds its file. This widget shows it and measures each entry's
summary on the session's case in the background (:func:`~._tasks.generator_summary`), one entry at a
time, again whenever the CT, its labels, the target or the device change.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from napari_advseg.errors import AdvsegError, first_line, path_last
from napari_advseg.widgets._model import GeneratorEntry
from napari_advseg.widgets._subscriptions import Subscriptions
from napari_advseg.widgets._tasks import SUMMARY_PART, generator_summary

SHIPPED_NAME = "shipped sample"
"""The list's name of the generator shipped with the plugin (``sample_data/generator.pt``)."""

SUCCESS_PERCENT = 30
"""Table 1 counts an organ's attack as a success when its Dice drops by this many per cent or more."""


def shipped_generator() -> Path | None:
    """The shipped generator's file, or None where the sample data is missing."""
    from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir

    path = sample_data_dir() / SAMPLE_FILES["generator"]
    return path if path.is_file() else None


def entry_text(entry: GeneratorEntry, key: int, measuring: bool = False) -> str:
    """One line of the list: name, steps and (when measured on the case of ``key``) the Table-1 summary."""
    steps = f"{entry.steps} steps" if entry.complete() else f"{entry.steps} of {entry.total} steps"
    text = f"{entry.name} ({steps})"
    if entry.summary_key == key and entry.summary is not None:
        summary = entry.summary
        drop = summary["mean_drop"]
        drop_text = "n/a" if math.isnan(drop) else f"-{100 * drop:.0f} %"
        return (f"{text}: Dice {drop_text} on average, {summary['succeeded']}/{len(summary['organs'])} organs "
                f"-{SUCCESS_PERCENT} % or more")
    if entry.summary_key == key and entry.problem:
        return f"{text}: not usable here"
    if measuring:
        return f"{text}: measuring…"
    return text


def summary_line(entry: GeneratorEntry | None, key: int, measuring: bool = False) -> str:
    """The current generator's summary in words, under the list."""
    if entry is None:
        return ""
    if entry.summary_key == key and entry.summary is not None:
        s = entry.summary
        drop = "n/a" if math.isnan(s["mean_drop"]) else f"{100 * s['mean_drop']:.0f} %"
        return (f"Table 1 on this CT ({s['slices']} slices): mean Dice drop {drop}; {s['succeeded']} of "
                f"{len(s['organs'])} organs drop by {SUCCESS_PERCENT} % or more; rho {s['rho']:.3f}.")
    if entry.summary_key == key and entry.problem:
        return entry.problem
    return "Measuring its Table-1 figures on this CT…" if measuring else ""


def entry_tooltip(entry: GeneratorEntry, key: int) -> str:
    """The entry's file and its summary in full."""
    lines = [f"{entry.name}: {entry.steps} training steps"
             + ("" if entry.complete() else f" of the {entry.total} its run was set up for (stopped early)"),
             f"file: {entry.path}"]
    if entry.summary_key == key and entry.summary is not None:
        s = entry.summary
        against = "the reference labels" if s["reference"] == "labels" else "the target's clean prediction"
        lines.append(f"Table 1 on {s['slices']} slices ({SUMMARY_PART}) of this CT, one sample per slice "
                     f"(advseg evaluate --samples 1), Dice against {against}:")
        for organ, drop in s["organs"].items():
            lines.append(f"  {organ}: Dice {'n/a' if math.isnan(drop) else f'-{100 * drop:.1f} %'}")
        lines.append(f"  {s['succeeded']} of {len(s['organs'])} organs drop by {SUCCESS_PERCENT} % or more; "
                     f"perceptibility rho {s['rho']:.3f}")
    elif entry.summary_key == key and entry.problem:
        lines.append(entry.problem)
    lines.append("Choose it to explore and export it.")
    return "\n".join(lines)


class GeneratorList(QWidget):
    """A combo box of the session's generators; choosing one makes it current."""

    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.job = None
        self.measuring: str | None = None  # the file whose summary is being measured
        self.cancel = threading.Event()
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(16)
        self.combo.setToolTip("The generator Explore and Export use: the shipped one, those loaded and the runs "
                              "trained since napari opened")
        label = QLabel("Generator")
        label.setToolTip(self.combo.toolTip())
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.summary_label.setToolTip("The current generator's figures as `advseg evaluate --samples 1` gives them "
                                      "on the CT chosen in the Data and model tab")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(label)
        row.addWidget(self.combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.summary_label)
        self.combo.activated.connect(self.choose)
        session = owner.session
        shipped = shipped_generator()
        if shipped is not None and session.generator_entry(shipped) is None:
            session.add_generator(shipped, SHIPPED_NAME)
        self.subscriptions = Subscriptions()
        self.subscriptions.connect(session.generators_changed, self.refresh)
        self.subscriptions.connect(session.changed, self.refresh)
        self.refresh()

    def shutdown(self) -> None:
        """Stop listening and ask a running measurement to stop (the widget is closing)."""
        self.subscriptions.disconnect_all()
        self.cancel.set()

    # ------------------------------------------------------------------ showing
    def refresh(self, *_args) -> None:
        """Show the session's list, the current generator chosen; measure what has no summary yet."""
        if self.owner.closing:
            return
        session = self.owner.session
        key = session.case_revision
        combo = self.combo
        combo.blockSignals(True)
        combo.clear()
        for entry in session.generators:
            combo.addItem(entry_text(entry, key, measuring=entry.path == self.measuring), entry.path)
            combo.setItemData(combo.count() - 1, entry_tooltip(entry, key), Qt.ToolTipRole)
        current = session.current_entry()
        if current is None:
            combo.insertItem(0, "none: train one (Train tab) or load one (Data and model tab)", None)
            combo.setCurrentIndex(0)
        else:
            combo.setCurrentIndex(session.generators.index(current))
        combo.blockSignals(False)
        measuring = current is not None and current.path == self.measuring
        self.summary_label.setText(summary_line(current, key, measuring))
        self.summary_label.setVisible(bool(self.summary_label.text()))
        view = combo.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 24)  # the list shows whole lines
        self._measure_next()

    def entries(self) -> list[str]:
        """The lines shown (for scripts and tests)."""
        return [self.combo.itemText(i) for i in range(self.combo.count())]

    # ------------------------------------------------------------------ choosing
    def choose(self, index: int) -> None:
        """Make the generator at ``index`` the session's current one (an error leaves the current one)."""
        path = self.combo.itemData(index)
        session = self.owner.session
        if path is None or session.generator_entry(path) is session.current_entry():
            return
        try:
            session.load_generator(path)
        except Exception as exc:
            self.owner.notify_error(exc)
            self.refresh()

    def choose_path(self, path: str | os.PathLike) -> bool:
        """Choose a listed file (as a click would); True when it is now current."""
        session = self.owner.session
        entry = session.generator_entry(path)
        if entry is None:
            return False
        self.choose(session.generators.index(entry) + (1 if session.current_entry() is None else 0))
        return session.current_entry() is entry

    # ------------------------------------------------------------------ summaries
    def _measure_next(self) -> None:
        """Measure the first entry without a summary of the current case (one at a time, in the background)."""
        owner = self.owner
        session = owner.session
        if self.job is not None or owner.closing or session.target is None or session.volume is None:
            return
        key = session.case_revision
        entry = next((e for e in session.generators if e.summary_key != key), None)
        if entry is None:
            return
        if not os.path.isfile(entry.path):
            session.set_generator_summary(entry.path, key, problem=f"the file is gone: {entry.path}")
            return
        path = entry.path
        try:
            self.job = owner.jobs.function_job("summary", generator_summary, path, session.snapshot(),
                                               cancelled=self.cancel.is_set, connect={
                "returned": lambda summary: self._measured(path, key, summary),
                "errored": lambda error: self._failed(path, key, error),
                "finished": self._done})
        except Exception as exc:  # the widget is closing
            self.job = None
            owner.notify_error(exc)
            return
        self.measuring = path
        self._show_measuring(path, key)

    def _show_measuring(self, path: str, key: int) -> None:
        entry = self.owner.session.generator_entry(path)
        index = self.combo.findData(path)
        if entry is not None and index >= 0:
            self.combo.setItemText(index, entry_text(entry, key, measuring=True))
        if entry is not None and entry is self.owner.session.current_entry():
            self.summary_label.setText(summary_line(entry, key, measuring=True))
            self.summary_label.setVisible(True)

    def _measured(self, path: str, key: int, summary: dict) -> None:
        if not self.owner.closing:
            self.owner.session.set_generator_summary(path, key, summary)

    def _failed(self, path: str, key: int, error: BaseException) -> None:
        if self.owner.closing:
            return
        text = path_last(error) if isinstance(error, AdvsegError) else first_line(error)
        self.owner.session.set_generator_summary(path, key, problem=f"no summary on this CT: {text}")

    def _done(self) -> None:
        self.job = None
        self.measuring = None
        if not self.owner.closing:
            self.refresh()
