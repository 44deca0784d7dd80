"""The "Train" tab: attack settings, Start / Pause / Resume / Stop, progress and a live plot.

Training runs in a generator thread_worker (``_tasks.training_run``, its steps
in a thread of their own behind the viewer's, so Explore stays responsive)
that yields each step's metrics; its ``finally`` block writes
``<checkpoint folder>/generator.pt``, so Stop and closing napari keep every
finished step. When the job ends, the run is added to the session's generator
list (:mod:`._generators`); a run that trained all its steps, or the first
generator of the session, becomes the current one (Explore and Export follow),
a run stopped early is only listed. Each run gets a folder of its own
(``run-1``, ``run-2``, ... unless the user names one).

Before Start, the tab measures the time of a training step with the form's
settings on the session's device (:func:`~._tasks.step_seconds`) and shows
the estimated total; on the CPU it offers a quick setting that finishes in
minutes, with the full setting one click away, and takes the quick one while
the form still holds the untouched defaults. The organ list follows the
session's target, the plot the current generator's history while idle.
"""

from __future__ import annotations

import threading
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                            QListWidget, QListWidgetItem, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from napari_advseg.errors import AdvsegError, first_line, path_last
from napari_advseg.attack.config import GENERATOR_FILE, SLIDER_OPTIONS_OFF, SLIDER_OPTIONS_ON
from napari_advseg.widgets._model import DEFAULT_CONFIG, same_file
from napari_advseg.widgets._spinboxes import double_box, int_box
from napari_advseg.widgets._subscriptions import Subscriptions
from napari_advseg.widgets._tasks import step_seconds, training_run
from napari_advseg.widgets._plot import TrainingPlot
from napari_advseg.widgets._words import GLOSSARY, term_label

IDLE, RUNNING, PAUSED, STOPPING = "idle", "running", "paused", "stopping"

RUNS_FOLDER = Path.home() / "napari-advseg"
"""Where the tab proposes a new folder for each run (``run-1``, ``run-2``, ...)."""

QUICK_SECONDS = 300.0
"""The quick setting offered on the CPU aims to finish in about this long."""

QUICK_BATCH = 4
"""Batch size of the quick setting."""

QUICK_MIN_STEPS = 100
"""The quick setting trains at least this many steps (fewer give a weak attack)."""

MEASURE_DELAY_MS = 700
"""The time per step is measured this long after the last change of the settings it depends on."""


def format_duration(seconds: float) -> str:
    """A duration in words: ``"< 1 min"``, ``"4 min"``, ``"1 h 37 min"``."""
    minutes = int(round(seconds / 60.0))
    if minutes < 1:
        return "< 1 min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def next_run_folder(root: Path = RUNS_FOLDER) -> Path:
    """``root/run-N`` for the smallest N whose folder holds no generator yet."""
    n = 1
    while (root / f"run-{n}" / GENERATOR_FILE).exists():
        n += 1
    return root / f"run-{n}"


def quick_steps(step_seconds_at_quick_batch: float, full_steps: int) -> int:
    """Steps of the quick setting: what fits :data:`QUICK_SECONDS`, in tens, between
    :data:`QUICK_MIN_STEPS` and the full setting's steps."""
    fit = int(QUICK_SECONDS / max(step_seconds_at_quick_batch, 1e-6)) // 10 * 10
    return int(min(full_steps, max(QUICK_MIN_STEPS, fit)))


def format_left(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a time left."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainPanel(QWidget):
    """Settings and controls of the generator's training."""

    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.job = None
        self.report: dict = {}
        self.state = IDLE
        self.config_overrides: dict = {}
        """Extra AttackConfig values (e.g. ``critic_steps``) for settings the form does not show."""
        c = DEFAULT_CONFIG

        self.gamma = double_box(c.gamma, 0.0, 50.0, 0.5, 2, GLOSSARY["gamma"])
        self.alpha = double_box(c.alpha, 0.0, 100.0, 0.01, 3, GLOSSARY["alpha"])
        self.beta = double_box(c.beta, 0.0, 100.0, 0.01, 3, GLOSSARY["beta"])
        self.steps = int_box(c.steps, 1, 1_000_000, GLOSSARY["steps"] + " A resumed run continues up to it.")
        self.batch_size = int_box(c.batch_size, 1, 512, GLOSSARY["batch"])
        self.lr = double_box(c.lr_generator, 1e-6, 1.0, 1e-4, 6, GLOSSARY["learning rate"], short=True)
        self.seed = int_box(c.seed, 0, 2_147_483_647, GLOSSARY["seed"])
        self.sliders = QCheckBox("shape the sliders")
        self.sliders.setChecked(False)
        self.sliders.setToolTip(GLOSSARY["slider shaping"])
        self.organs = QListWidget()
        self.organs.setToolTip(GLOSSARY["organs"])
        self.organs.setMaximumHeight(92)
        self.proposed_folder = str(next_run_folder())
        """The tab's own proposal; while the folder field holds it, the next run gets the next free one."""
        self.folder = QLineEdit(self.proposed_folder)
        self.folder.setToolTip(f"{GLOSSARY['checkpoint folder']} Each run gets a new folder (run-1, run-2, ...) "
                               f"unless you name one.")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse_folder)
        folder_row = QWidget()
        row = QHBoxLayout(folder_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)

        terms = QFormLayout()
        terms.setContentsMargins(0, 0, 0, 0)
        terms.addRow(term_label("attack strength (gamma)", "gamma"), self.gamma)
        terms.addRow(term_label("warp smoothness (alpha)", "alpha"), self.alpha)
        terms.addRow(term_label("bias smoothness (beta)", "beta"), self.beta)
        settings = QGridLayout()
        pairs = [(term_label("steps"), self.steps), (term_label("batch", "batch"), self.batch_size),
                 (term_label("learning rate"), self.lr), (term_label("seed"), self.seed)]
        for i, (label, box) in enumerate(pairs):
            form = QFormLayout()
            form.setContentsMargins(0, 0, 0, 0)
            form.addRow(label, box)
            settings.addLayout(form, i // 2, i % 2)
        settings.addWidget(self.sliders, (len(pairs) + 1) // 2, 0, 1, 2)
        form = QFormLayout()
        form.addRow(term_label("organs"), self.organs)
        form.addRow(term_label("checkpoint folder"), folder_row)

        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setToolTip("Measured with two training steps of these settings on the session's "
                                       "device, behind the viewer as training runs")
        self.quick_button = QPushButton("Quick")
        self.full_button = QPushButton(f"Full: {c.steps} × {c.batch_size}")
        self.quick_button.setToolTip(f"Fewer steps of a smaller batch ({QUICK_BATCH} slices): a run that finishes "
                                     f"in minutes on this CPU; a weaker attack than the full setting")
        self.full_button.setToolTip(f"The full setting: {c.steps} steps of {c.batch_size} slices, as the shipped "
                                    f"generator was trained")
        self.quick_button.clicked.connect(self.use_quick)
        self.full_button.clicked.connect(self.use_full)
        presets = QHBoxLayout()
        presets.addWidget(self.quick_button)
        presets.addWidget(self.full_button)
        self.presets = QWidget()
        self.presets.setLayout(presets)
        presets.setContentsMargins(0, 0, 0, 0)
        self.presets.setVisible(False)
        self.timings: dict[tuple, dict] = {}
        """Measured step times by (case revision, batch size, extra settings)."""
        self.timing_job = None
        self.form_untouched = True
        """Whether steps and batch still hold the defaults nobody chose (then the CPU gets the quick setting)."""
        self._setting_form = False
        self.estimate_note = ""
        """A line added to the estimate (that the quick setting was chosen for this CPU)."""
        self.cancel_measure = threading.Event()
        self.measure_timer = QTimer(self)
        self.measure_timer.setSingleShot(True)
        self.measure_timer.setInterval(MEASURE_DELAY_MS)
        self.measure_timer.timeout.connect(self.measure)

        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        self.resume_file_button = QPushButton("Resume from checkpoint…")
        self.start_button.setToolTip("Train a new generator with these settings")
        self.stop_button.setToolTip("Stop after the current step; the checkpoint is saved")
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            buttons.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setValue(0)
        self.progress.setFormat("not training")
        self.plot = TrainingPlot(self)

        layout = QVBoxLayout(self)
        layout.addLayout(terms)
        layout.addLayout(settings)
        layout.addLayout(form)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.presets)
        layout.addLayout(buttons)
        layout.addWidget(self.resume_file_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.plot, 1)

        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.resume_file_button.clicked.connect(self._browse_checkpoint)
        self.set_organs(owner.session.class_names[1:])
        self._set_state(IDLE)
        self.subscriptions = Subscriptions()
        self.subscriptions.connect(owner.session.target_changed, self._target_changed)
        self.subscriptions.connect(owner.session.changed, self._session_changed)
        self.steps.valueChanged.connect(self._steps_changed)
        self.batch_size.valueChanged.connect(self._batch_changed)
        self.sliders.toggled.connect(self._batch_changed)  # a step's time changes with it (about twice)

    # ------------------------------------------------------------------ session
    def _target_changed(self) -> None:
        if not self.owner.closing:
            self.set_organs(self.owner.session.class_names[1:])

    def _session_changed(self, what=()) -> None:
        """While idle, the plot shows the current generator's training; a new case, target or device
        is timed again."""
        session = self.owner.session
        if self.owner.closing:
            return
        if self.job is None and session.config is not None:
            self.plot.set_history(session.generator_history, session.config.gamma)
        if {"device", "target", "volume"} & set(what):
            self._show_estimate()
            self._schedule_measure()

    def shutdown(self) -> None:
        """Stop the plot's and the measurement's timers and stop listening to the session (the widget is closing)."""
        self.subscriptions.disconnect_all()
        self.measure_timer.stop()
        self.cancel_measure.set()
        self.plot.stop()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._schedule_measure()

    # ------------------------------------------------------------------ time estimate and presets
    def _extra_settings(self) -> dict:
        """The settings beside the boxes': the slider switch's and :attr:`config_overrides` (which win)."""
        extra = dict(SLIDER_OPTIONS_ON if self.sliders.isChecked() else SLIDER_OPTIONS_OFF)
        extra.update(self.config_overrides)
        return extra

    def _timing_key(self, batch: int) -> tuple:
        extra = tuple(sorted((k, repr(v)) for k, v in self._extra_settings().items()))
        return (self.owner.session.case_revision, int(batch), extra)

    def estimate(self, batch: int | None = None) -> dict | None:
        """The time of one step (and of the setup) at ``batch`` (default: the form's), or None before any
        measurement: ``{"step", "setup", "device", "measured"}``; not ``measured`` when scaled (in
        proportion to the batch) from a measurement at another batch size."""
        batch = self.batch_size.value() if batch is None else int(batch)
        exact = self.timings.get(self._timing_key(batch))
        if exact is not None:
            return {**exact, "measured": True}
        key = self._timing_key(batch)
        near = [t for k, t in self.timings.items() if (k[0], k[2]) == (key[0], key[2])]
        if not near:
            return None
        t = min(near, key=lambda t: abs(t["batch_size"] - batch))
        return {**t, "step": t["step"] * batch / t["batch_size"], "batch_size": batch, "measured": False}

    def total_seconds(self, steps: int, batch: int | None = None) -> float | None:
        """Estimated seconds of a new run of ``steps`` steps at ``batch``; None before any measurement."""
        e = self.estimate(batch)
        return None if e is None else e["setup"] + steps * e["step"]

    def _schedule_measure(self) -> None:
        session = self.owner.session
        if (self.state == IDLE and not self.owner.closing and self.isVisible() and session.volume is not None
                and session.target is not None and self.timings.get(self._timing_key(self.batch_size.value()))
                is None):
            self.measure_timer.start()

    def measure(self) -> None:
        """Measure the time of a step with the form's settings on the session's device (in the background)."""
        owner, session = self.owner, self.owner.session
        if (self.timing_job is not None or self.state != IDLE or owner.closing or session.volume is None
                or session.target is None or self.chosen_organs() == []):
            return
        key = self._timing_key(self.batch_size.value())
        if key in self.timings:
            self._show_estimate()
            return
        try:
            config = session.make_config(**self.settings())
            self.timing_job = owner.jobs.function_job("timing", step_seconds, session.snapshot(), config,
                                                      cancelled=self.cancel_measure.is_set, connect={
                "returned": lambda timing: self._measured(key, timing), "errored": self._measure_failed,
                "finished": self._measure_done})
        except Exception as exc:  # settings the form cannot train: Start will say why
            self.timing_job = None
            self.estimate_label.setText(f"No time estimate: {exc}")
            return
        self._show_estimate()

    def _measured(self, key: tuple, timing: dict) -> None:
        if self.owner.closing:
            return
        self.timings[key] = timing
        if (timing["device"] == "cpu" and self.form_untouched and self.state == IDLE
                and (self.steps.value(), self.batch_size.value()) == (DEFAULT_CONFIG.steps, DEFAULT_CONFIG.batch_size)):
            full = self.total_seconds(DEFAULT_CONFIG.steps, DEFAULT_CONFIG.batch_size)
            if full is not None and full > 2 * QUICK_SECONDS:
                self.use_quick()
                self.estimate_note = "The quick setting was chosen for this CPU; the full one is a click away."
        self._show_estimate()

    def _measure_failed(self, error) -> None:
        if not self.owner.closing:
            text = path_last(error) if isinstance(error, AdvsegError) else first_line(error)
            self.estimate_label.setText(f"No time estimate: {text}")

    def _measure_done(self) -> None:
        self.timing_job = None
        if not self.owner.closing and self.state == IDLE:
            self._schedule_measure()  # the settings may have changed meanwhile

    def quick_setting(self) -> tuple[int, int] | None:
        """(steps, batch) of the quick setting on this CPU; None before a measurement or off the CPU."""
        e = self.estimate(QUICK_BATCH)
        if e is None or e["device"] != "cpu":
            return None
        return quick_steps(e["step"], DEFAULT_CONFIG.steps), QUICK_BATCH

    def use_quick(self) -> None:
        """Steps and batch of the quick setting (what finishes in minutes on this CPU)."""
        quick = self.quick_setting()
        if quick is not None:
            self._set_form(*quick)

    def use_full(self) -> None:
        """Steps and batch of the full setting (the defaults, as the shipped generator was trained)."""
        self._set_form(DEFAULT_CONFIG.steps, DEFAULT_CONFIG.batch_size)

    def _set_form(self, steps: int, batch: int) -> None:
        self._setting_form = True
        try:
            self.steps.setValue(steps)
            self.batch_size.setValue(batch)
        finally:
            self._setting_form = False
        self._show_estimate()

    def _steps_changed(self, *_args) -> None:
        if not self._setting_form:
            self.form_untouched = False
            self.estimate_note = ""
        self._show_estimate()

    def _batch_changed(self, *_args) -> None:
        self._steps_changed()
        self._schedule_measure()

    def _show_estimate(self) -> None:
        """The estimate line and the quick / full buttons, from the measurements so far."""
        if self.state != IDLE or self.owner.closing:
            return
        steps, batch = self.steps.value(), self.batch_size.value()
        e = self.estimate(batch)
        busy = self.timing_job is not None
        if e is None:
            session = self.owner.session
            ready = session.volume is not None and session.target is not None
            self.estimate_label.setText("Measuring the time per step on this device…" if busy else
                                        ("The time per step is measured when this tab is shown." if ready else ""))
            self.presets.setVisible(False)
            return
        device = {"cpu": "the CPU", "cuda": "the GPU", "mps": "the Apple GPU"}.get(e["device"], e["device"])
        how = "measured" if e["measured"] else "scaled from another batch size; measuring…" if busy else "scaled"
        total = e["setup"] + steps * e["step"]
        text = (f"≈ {e['step']:.2f} s per step on {device} ({how}): {steps} steps of {batch} ≈ "
                f"{format_duration(total)}.")
        if e["device"] == "cpu":
            text += " Explore stays usable meanwhile (training runs behind it)."
        if self.estimate_note:
            text += " " + self.estimate_note
        self.estimate_label.setText(text)
        quick = self.quick_setting()
        self.presets.setVisible(quick is not None)
        if quick is not None:
            q_steps, q_batch = quick
            q_total = self.total_seconds(q_steps, q_batch)
            f_total = self.total_seconds(DEFAULT_CONFIG.steps, DEFAULT_CONFIG.batch_size)
            self.quick_button.setText(f"Quick: {q_steps} × {q_batch} (≈ {format_duration(q_total)})")
            self.full_button.setText(f"Full: {DEFAULT_CONFIG.steps} × {DEFAULT_CONFIG.batch_size} "
                                     f"(≈ {format_duration(f_total)})")
            self.quick_button.setEnabled((steps, batch) != quick)
            self.full_button.setEnabled((steps, batch) != (DEFAULT_CONFIG.steps, DEFAULT_CONFIG.batch_size))

    # ------------------------------------------------------------------ settings
    def set_organs(self, names, checked=None) -> None:
        """List the target's organs (all checked unless ``checked`` names a subset)."""
        previous = self.chosen_organs() if self.organs.count() else None
        wanted = checked if checked is not None else previous
        self.organs.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            on = wanted is None or name in wanted
            item.setCheckState(Qt.Checked if on else Qt.Unchecked)
            self.organs.addItem(item)

    def chosen_organs(self) -> list[str] | None:
        """The checked organs; None when all are checked (attack every organ)."""
        items = [self.organs.item(i) for i in range(self.organs.count())]
        names = [item.text() for item in items if item.checkState() == Qt.Checked]
        return None if len(names) == len(items) else names

    def settings(self) -> dict:
        """AttackConfig values from the form."""
        values = dict(gamma=self.gamma.value(), alpha=self.alpha.value(), beta=self.beta.value(),
                      steps=self.steps.value(), batch_size=self.batch_size.value(), lr_generator=self.lr.value(),
                      seed=self.seed.value(), organs=self.chosen_organs())
        values.update(self._extra_settings())
        return values

    def show_config(self, config) -> None:
        """Show a (resumed) run's settings in the form."""
        self.gamma.setValue(config.gamma)
        self.alpha.setValue(config.alpha)
        self.beta.setValue(config.beta)
        self.steps.setValue(max(self.steps.value(), config.steps))
        self.batch_size.setValue(config.batch_size)
        self.lr.setValue(config.lr_generator)
        self.seed.setValue(config.seed)
        self.sliders.setChecked(any(getattr(config, k) != v for k, v in SLIDER_OPTIONS_OFF.items()))
        self.set_organs(self.owner.session.class_names[1:], checked=config.organs)

    def checkpoint_path(self) -> Path:
        return Path(self.folder.text()).expanduser() / GENERATOR_FILE

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Checkpoint folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Resume from a generator checkpoint", self.folder.text(),
                                              "Generator checkpoints (*.pt);;All files (*)")
        if path:
            self.resume_from(path)

    # ------------------------------------------------------------------ controls
    def _set_state(self, state: str) -> None:
        self.state = state
        idle = state == IDLE
        self.start_button.setEnabled(idle)
        self.resume_file_button.setEnabled(idle)
        self.pause_button.setEnabled(state == RUNNING)
        self.resume_button.setEnabled(state == PAUSED)
        self.stop_button.setEnabled(state in (RUNNING, PAUSED))
        for box in (self.gamma, self.alpha, self.beta, self.steps, self.batch_size, self.lr, self.seed,
                    self.sliders, self.organs, self.folder, self.presets):
            box.setEnabled(idle)

    def start(self) -> None:
        """Train a new generator with the form's settings."""
        if self.state != IDLE:
            return
        owner = self.owner
        try:
            owner.session.require("volume", "target")
            if self.chosen_organs() == []:
                raise AdvsegError("tick at least one organ to attack (Train tab)")
            config = owner.session.make_config(**self.settings())
        except Exception as exc:
            owner.notify_error(exc)
            return
        path = self.checkpoint_path()
        if path.exists() and not owner._confirm_overwrite([path]):
            return
        self.plot.set_history([], config.gamma)
        self._launch(config, path, None)
        if self.state == RUNNING:
            expected = self.total_seconds(config.steps, config.batch_size)
            if expected is not None:
                self.estimate_label.setText(f"Training {config.steps} steps of {config.batch_size}: "
                                            f"≈ {format_duration(expected)} expected.")

    def resume_from(self, checkpoint: str | Path) -> None:
        """Continue training from a generator checkpoint, up to the form's number of steps."""
        if self.state != IDLE:
            return
        try:
            self.owner.session.require("volume", "target")
        except Exception as exc:
            self.owner.notify_error(exc)
            return
        self._launch(None, self.checkpoint_path(), str(checkpoint))

    def _launch(self, config, path: Path, resume: str | None) -> None:
        self.measure_timer.stop()
        self.report = {"checkpoint": str(path), "resume": resume, "total": config.steps if config else None}
        inner = training_run(self.owner.session.snapshot(), config, path, self.report, resume_from=resume,
                             steps=self.steps.value() if resume else None)
        self.progress.setRange(0, max(1, config.steps if config else self.steps.value()))
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        try:
            self.job = self.owner.jobs.generator_job("train", inner, connect={
                "yielded": self._on_yielded, "errored": self.owner.notify_error, "paused": self._on_paused,
                "resumed": self._on_resumed, "finished": self._on_finished})
        except Exception as exc:
            self.owner.notify_error(exc)
            return
        self._set_state(RUNNING)

    def pause(self) -> None:
        """Pause after the current step."""
        if self.job is not None and self.state == RUNNING:
            self.job.worker.pause()
            self.pause_button.setEnabled(False)
            self.progress.setFormat(self.progress.format() + " (pausing…)")

    def resume(self) -> None:
        """Continue a paused training."""
        if self.job is not None and self.state == PAUSED:
            self.job.worker.resume()

    def stop(self) -> None:
        """Stop after the current step; the checkpoint is saved by the job itself."""
        if self.job is not None and self.state in (RUNNING, PAUSED):
            self._set_state(STOPPING)
            self.progress.setFormat(self.progress.format().split(" (")[0] + " (stopping, saving…)")
            self.job.stop()

    # ------------------------------------------------------------------ job signals
    def _on_yielded(self, item: dict) -> None:
        if self.owner.closing:
            return
        if item["kind"] == "ready":
            self.report["total"] = item["total"]
            self.show_config(item["config"])
            self.plot.set_history(item["history"], item["config"].gamma)
            self.progress.setRange(0, max(1, item["total"]))
            self.progress.setValue(min(item["step"], item["total"]))
            self.progress.setFormat(f"step {item['step']}/{item['total']}")
            return
        if item["kind"] == "warning":
            self.owner.notify_info(f"step {item['step']}: {item['message']}")
            return
        metrics, total = item["metrics"], item["total"]
        step = int(metrics["step"])
        self.plot.add(metrics)
        recent = [m.get("seconds", 0.0) for m in self.plot.history[-10:]]
        left = (total - step) * (sum(recent) / max(1, len(recent)))
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(min(step, total))
        text = f"step {step}/{total}, ~{format_left(left)} left"
        if self.state == PAUSED:
            text += " (paused)"
        elif self.state == STOPPING:
            text += " (stopping, saving…)"
        self.progress.setFormat(text)

    def _on_paused(self) -> None:
        if self.state == RUNNING:
            self._set_state(PAUSED)
            self.progress.setFormat(self.progress.format().split(" (")[0] + " (paused)")

    def _on_resumed(self) -> None:
        if self.state == PAUSED:
            self._set_state(RUNNING)
            self.progress.setFormat(self.progress.format().split(" (")[0])

    def _on_finished(self) -> None:
        job, self.job = self.job, None
        if self.owner.closing:
            return
        self._set_state(IDLE)
        self.plot.redraw()
        report = self.report
        error = report.get("save_error") or (job.close_error if job is not None else None)
        if error is not None:
            self.owner.notify_error(error)
        saved = report.get("saved")
        if not saved:
            self.progress.setFormat("not training")
            self._show_estimate()
            return
        step, total = report.get("step", 0), report.get("total") or self.progress.maximum()
        self.progress.setFormat(f"step {step}/{total}: saved {Path(saved).name}")
        if self.folder.text() == self.proposed_folder:  # the next run gets a folder of its own
            self.proposed_folder = str(next_run_folder(Path(self.proposed_folder).parent))
            self.folder.setText(self.proposed_folder)
        self._show_estimate()
        if report.get("resume") and report.get("new_steps", 0) == 0:
            self.owner.notify_info(f"The checkpoint is already at step {step}: raise 'steps' to train further.")
        self.add_run(saved, step, total)

    def add_run(self, saved: str, step: int, total: int) -> None:
        """Add a saved run to the session's generator list; make it current when it trained every step
        (or nothing else is current, or it is the current file trained further) and say so."""
        session = self.owner.session
        name = Path(saved).parent.name or Path(saved).name
        previous = session.current_entry()
        entry = session.add_generator(saved, name=name, steps=step, total=total)
        switch = entry.complete() or session.generator is None or same_file(session.generator_path, saved)
        if not switch:
            keeps = previous.name if previous is not None else "the current generator"
            self.owner.notify_info(f"Training stopped at step {step} of {total}: '{name}' is in the Generator list "
                                   f"above the tabs; Explore keeps '{keeps}' (checkpoint {saved})")
            return
        try:
            session.load_generator(saved)
        except Exception as exc:
            self.owner.notify_error(exc)
            return
        back = (f"; '{previous.name}' is one click away in the Generator list"
                if previous is not None and previous is not entry else "")
        how = "finished" if entry.complete() else "stopped"
        self.owner.notify_info(f"Training {how} at step {step}: Explore now uses '{name}'{back} "
                               f"(checkpoint {saved})")
