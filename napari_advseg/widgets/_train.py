"""The "Train" tab: attack settings, Start / Pause / Resume / Stop, progress and a live plot.

Training runs in a generator thread_worker (``_model.training_run``) that
yields each step's metrics; its ``finally`` block writes
``<checkpoint folder>/generator.pt``, so Stop and closing napari keep every
finished step. When the job ends, the trained generator becomes the session's
current one (Explore and Export follow the session). The organ list follows
the session's target, the plot the current generator's history while idle.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QFileDialog, QFormLayout, QGridLayout, QHBoxLayout, QLineEdit, QListWidget,
                            QListWidgetItem, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from napari_advseg.errors import AdvsegError
from napari_advseg.attack.config import GENERATOR_FILE
from napari_advseg.widgets._model import DEFAULT_CONFIG
from napari_advseg.widgets._spinboxes import double_box, int_box
from napari_advseg.widgets._subscriptions import Subscriptions
from napari_advseg.widgets._tasks import training_run
from napari_advseg.widgets._plot import TrainingPlot

IDLE, RUNNING, PAUSED, STOPPING = "idle", "running", "paused", "stopping"


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

        self.gamma = double_box(c.gamma, 0.0, 50.0, 0.5, 2, "Attack strength: the masked cross-entropy to reach")
        self.alpha = double_box(c.alpha, 0.0, 100.0, 0.01, 3, "Smoothness weight of the deformation field")
        self.beta = double_box(c.beta, 0.0, 100.0, 0.01, 3, "Smoothness weight of the bias field")
        self.steps = int_box(c.steps, 1, 1_000_000, "Total training steps (a resumed run continues up to it)")
        self.batch_size = int_box(c.batch_size, 1, 512, "Slices per training batch")
        self.lr = double_box(c.lr_generator, 1e-6, 1.0, 1e-4, 6, "Learning rate of the generator (RMSProp)")
        self.seed = int_box(c.seed, 0, 2_147_483_647, "Random seed (batches, latent noise)")
        self.organs = QListWidget()
        self.organs.setToolTip("Organs whose masks the attack targets")
        self.organs.setMaximumHeight(92)
        self.folder = QLineEdit(str(Path.home() / "napari-advseg" / "run"))
        self.folder.setToolTip(f"The checkpoint is written to <folder>/{GENERATOR_FILE}")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse_folder)
        folder_row = QWidget()
        row = QHBoxLayout(folder_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)

        settings = QGridLayout()
        pairs = [("gamma", self.gamma), ("steps", self.steps), ("alpha", self.alpha), ("batch", self.batch_size),
                 ("beta", self.beta), ("seed", self.seed)]
        for i, (label, box) in enumerate(pairs):
            form = QFormLayout()
            form.setContentsMargins(0, 0, 0, 0)
            form.addRow(label, box)
            settings.addLayout(form, i // 2, i % 2)
        form = QFormLayout()
        form.addRow("learning rate", self.lr)
        form.addRow("organs", self.organs)
        form.addRow("checkpoint folder", folder_row)

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
        layout.addLayout(settings)
        layout.addLayout(form)
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

    # ------------------------------------------------------------------ session
    def _target_changed(self) -> None:
        if not self.owner.closing:
            self.set_organs(self.owner.session.class_names[1:])

    def _session_changed(self, *_args) -> None:
        """While idle, the plot shows the current generator's training."""
        session = self.owner.session
        if not self.owner.closing and self.job is None and session.config is not None:
            self.plot.set_history(session.generator_history, session.config.gamma)

    def shutdown(self) -> None:
        """Stop the plot's timer and stop listening to the session (the widget is closing)."""
        self.subscriptions.disconnect_all()
        self.plot.stop()

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
        values.update(self.config_overrides)
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
                    self.organs, self.folder):
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
        self.report = {"checkpoint": str(path), "resume": resume}
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
            return
        step = report.get("step", 0)
        self.progress.setFormat(f"step {step}/{self.progress.maximum()}: saved {Path(saved).name}")
        if report.get("resume") and report.get("new_steps", 0) == 0:
            self.owner.notify_info(f"The checkpoint is already at step {step}: raise 'steps' to train further.")
        else:
            self.owner.notify_info(f"Training stopped at step {step}; checkpoint saved to {saved}")
        try:  # the trained generator becomes the current one (Explore and Export follow)
            self.owner.session.load_generator(saved)
        except Exception as exc:
            self.owner.notify_error(exc)
