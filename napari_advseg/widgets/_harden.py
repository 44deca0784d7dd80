"""The "Harden" tab: fine-tune the target on attacks in the background, then explore the hardened network.

Hardening runs :func:`~napari_advseg.defense.driver.hardening_events` in a
generator thread_worker on the session's case (training slices z % 3 != 2);
its ``finally`` writes the hardened checkpoint and the resume state, so Stop
and closing napari keep every finished step. A live plot shows the Dice of
each batch's adversarial and clean slices. When the run ends, the clean Dice
of the original and the hardened network on the held-out slices (z % 3 == 2)
is shown, and "Use hardened network" switches the session's target (Explore
and Export follow) and back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
                            QPushButton, QVBoxLayout, QWidget)

from napari_advseg.errors import AdvsegError
from napari_advseg.widgets._plot import TrainingPlot
from napari_advseg.widgets._spinboxes import double_box, int_box
from napari_advseg.widgets._subscriptions import Subscriptions
from napari_advseg.widgets._workers import background_priority, in_own_thread
from napari_advseg.widgets._words import GLOSSARY, term_label

HARDEN_SERIES = (
    (0, "dice_adversarial", "adversarial slices", "#ef5350"),
    (0, "dice_clean", "clean slices", "#81c784"),
    (1, "loss", "loss", "#4fc3f7"),
)
METHOD_TEXT = {
    "generator": "generator's attacks",
    "clean": "clean only (baseline)",
    "random_fields": "random fields (baseline)",
    "optimised_fields": "optimised fields (baseline)",
}
"""The method combo's short names (the dock is narrow); :data:`METHOD_TIPS` says what each one is."""

METHOD_TIPS = {
    "generator": "Attacks of the current generator, fresh random codes every batch (with rounds > 1 the "
                 "generator is trained again against the network being hardened).",
    "clean": "No attacks: plain fine-tuning on clean slices, the baseline that shows what the extra training "
             "alone does.",
    "random_fields": "Random smooth deformations and intensity changes, as an augmentation library makes them.",
    "optimised_fields": "Smooth deformations and intensity changes optimised for each image against the network "
                        "being hardened (adversarial training without a generator).",
}


def hardening_run(snapshot, config, out: str, report: dict, resume: bool, steps: int | None = None
                  ) -> Iterator[dict]:
    """Harden in a worker thread; yields the driver's events (the hardener stays in the thread) and,
    at the end, ``{"kind": "dice", "original": ..., "hardened": ...}`` on the held-out slices.

    The steps run in a thread of their own behind the viewer (:func:`~._workers.background_priority`),
    as training does, so that Explore stays responsive.
    """
    def events() -> Iterator[dict]:
        from napari_advseg.defense.driver import hardening_events
        from napari_advseg.evaluation.metrics import network_dice

        case = snapshot.case
        train = case.part("train")[:2]
        test = case.part("test")[:2]
        hardener = None
        for event in hardening_events(config, snapshot.target, *train, out, generator=snapshot.generator_path,
                                      device=snapshot.device, resume=resume, steps=steps, test=test,
                                      report=report):
            if event["kind"] == "ready":
                hardener = event.pop("hardener")
                event["method"] = hardener.config.method
            yield event
        if hardener is not None and report.get("test_dice"):  # the final save measured it: the run is complete
            yield {"kind": "dice", "original": network_dice(snapshot.target, *test, snapshot.target.class_names),
                   "hardened": report["test_dice"], "slices": int(len(test[0]))}

    return (yield from in_own_thread(events, lambda: background_priority(snapshot.device), "advseg-hardening"))


class HardenPanel(QWidget):
    """Settings, Start / Resume / Stop, progress, live plot and the target switch."""

    def __init__(self, owner, parent=None):
        from napari_advseg.defense.config import HARDEN_METHODS, HardenConfig

        super().__init__(parent)
        self.owner = owner
        self.job = None
        self.report: dict = {}
        self.original_path: str | None = None
        self.hardened_path: str | None = None
        d = HardenConfig()
        self.method = QComboBox()
        for name in HARDEN_METHODS:
            self.method.addItem(METHOD_TEXT[name], name)
            self.method.setItemData(self.method.count() - 1, METHOD_TIPS[name], Qt.ToolTipRole)
        self.method.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.method.setMinimumContentsLength(12)
        self.method.setToolTip(GLOSSARY["fine-tune on"])
        self.steps = int_box(d.steps, 1, 1_000_000, GLOSSARY["steps"])
        self.mix = double_box(d.mix, 0.0, 1.0, 0.05, 3, GLOSSARY["adversarial fraction"])
        self.rounds = int_box(d.rounds, 1, 100, GLOSSARY["rounds"])
        self.generator_steps = int_box(d.generator_steps, 0, 100_000, GLOSSARY["generator steps"])
        self.rho_low = double_box(d.rho_low, 0.001, 0.5, 0.01, 3, GLOSSARY["rho range"] + " " + GLOSSARY["rho"])
        self.rho_high = double_box(d.rho_high, 0.001, 0.5, 0.01, 3, "Upper end of the rho range. " + GLOSSARY["rho"])
        self.out = QLineEdit(str(Path.home() / "napari-advseg" / "hardened.pt"))
        self.out.setToolTip(GLOSSARY["hardened file"])
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        out_row = QWidget()
        row = QHBoxLayout(out_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.out, 1)
        row.addWidget(browse)
        rho_row = QWidget()
        row = QHBoxLayout(rho_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.rho_low)
        row.addWidget(QLabel("to"))
        row.addWidget(self.rho_high)

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        form.addRow(term_label("fine-tune on"), self.method)
        form.addRow(term_label("steps"), self.steps)
        form.addRow(term_label("adversarial fraction"), self.mix)
        form.addRow(term_label("rounds"), self.rounds)
        form.addRow(term_label("generator steps / round", "generator steps"), self.generator_steps)
        form.addRow(term_label("rho range"), rho_row)
        form.addRow(term_label("hardened file"), out_row)

        self.start_button = QPushButton("Start")
        self.resume_button = QPushButton("Resume")
        self.stop_button = QPushButton("Stop")
        self.start_button.setToolTip("Harden a copy of the current target with these settings")
        self.resume_button.setToolTip("Continue the run whose state lies beside the hardened file")
        self.stop_button.setToolTip("Stop after the current step; the hardened checkpoint is saved")
        buttons = QHBoxLayout()
        for button in (self.start_button, self.resume_button, self.stop_button):
            buttons.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("not hardening")
        self.plot = TrainingPlot(self, series=HARDEN_SERIES, titles=("batch Dice", "loss"), gamma_axis=None)
        self.dice_label = QLabel("")
        self.dice_label.setWordWrap(True)
        self.switch_button = QPushButton("Use hardened network")
        self.switch_button.setToolTip("Switch the session's target between the original and the hardened "
                                      "network: Explore and Export follow")

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.dice_label)
        layout.addWidget(self.switch_button)

        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.stop_button.clicked.connect(self.stop)
        self.switch_button.clicked.connect(self.toggle_target)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.subscriptions = Subscriptions()
        self.subscriptions.connect(owner.session.target_changed, self._target_changed)
        self._set_running(False)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Hardened checkpoint", self.out.text(), "Checkpoints (*.pt)")
        if path:
            self.out.setText(path)

    def _method_changed(self, *_args) -> None:
        game = self.method.currentData() == "generator"
        self.rounds.setEnabled(game and self.job is None)
        self.generator_steps.setEnabled(game and self.job is None)

    def _target_changed(self) -> None:
        if not self.owner.closing:
            self._update_switch()

    def _update_switch(self) -> None:
        current = self.owner.session.target_path
        self.switch_button.setEnabled(self.hardened_path is not None and self.job is None)
        using_hardened = self.hardened_path is not None and current == self.hardened_path
        self.switch_button.setText("Use original network" if using_hardened else "Use hardened network")

    def shutdown(self) -> None:
        self.subscriptions.disconnect_all()
        self.plot.stop()

    # ------------------------------------------------------------------ controls
    def settings(self):
        from napari_advseg.defense.config import HardenConfig

        return HardenConfig(method=self.method.currentData(), steps=self.steps.value(), mix=self.mix.value(),
                            rounds=self.rounds.value() if self.method.currentData() == "generator" else 1,
                            generator_steps=self.generator_steps.value(), rho_low=self.rho_low.value(),
                            rho_high=self.rho_high.value())

    def _set_running(self, running: bool) -> None:
        for box in (self.method, self.steps, self.mix, self.rho_low, self.rho_high, self.out):
            box.setEnabled(not running)
        self.start_button.setEnabled(not running)
        self.resume_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self._method_changed()
        self._update_switch()

    def start(self, resume: bool = False) -> None:
        """Harden a copy of the current target (or continue the run beside the hardened file)."""
        if self.job is not None:
            return
        from napari_advseg.defense.hardener import resume_path

        owner, session = self.owner, self.owner.session
        out = Path(self.out.text()).expanduser()
        try:
            session.require("volume", "target")
            if session.labels is None:
                raise AdvsegError("hardening needs reference labels: choose a labels layer (Data and model tab)")
            config = None if resume else self.settings()
            if resume and not resume_path(out).is_file():
                raise AdvsegError(f"no run to continue: {resume_path(out)} not found")
            if config is not None and config.needs_generator:
                session.require("generator")
            if session.target_path is not None and out.resolve() == Path(session.target_path).resolve():
                raise AdvsegError("the hardened file would replace the target itself: choose another name")
        except Exception as exc:
            owner.notify_error(exc)
            return
        if not resume and out.exists() and not owner._confirm_overwrite([out]):
            return
        self.original_path = session.target_path
        self.report = {"out": str(out)}
        inner = hardening_run(session.snapshot(), config, str(out), self.report, resume,
                              steps=self.steps.value() if resume else None)
        self.plot.set_history([])
        self.dice_label.setText("")
        self.progress.setRange(0, max(1, config.steps if config else self.steps.value()))
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        try:
            self.job = owner.jobs.generator_job("harden", inner, connect={
                "yielded": self._on_yielded, "errored": owner.notify_error, "finished": self._on_finished})
        except Exception as exc:
            owner.notify_error(exc)
            return
        self._set_running(True)

    def stop(self) -> None:
        """Stop after the current step; the job writes the files on its way out."""
        if self.job is not None:
            self.progress.setFormat(self.progress.format().split(" (")[0] + " (stopping, saving…)")
            self.stop_button.setEnabled(False)
            self.job.stop()

    def toggle_target(self) -> None:
        """Switch the session's target between the original and the hardened network."""
        session = self.owner.session
        if self.hardened_path is None:
            return
        path = self.original_path if session.target_path == self.hardened_path else self.hardened_path
        try:
            if path is None:
                raise AdvsegError("the original network's file is not known")
            session.load_target(path)
        except Exception as exc:
            self.owner.notify_error(exc)
        self._update_switch()

    # ------------------------------------------------------------------ job signals
    def _on_yielded(self, event: dict) -> None:
        if self.owner.closing:
            return
        kind = event["kind"]
        if kind == "ready":
            self.plot.set_history(event["history"])
            self.progress.setRange(0, max(1, event["total"]))
            self.progress.setValue(min(event["step"], event["total"]))
            self.progress.setFormat(f"{event['method']}: step {event['step']}/{event['total']}")
        elif kind == "step":
            self.plot.add(event["metrics"])
            self.progress.setMaximum(max(1, event["total"]))
            self.progress.setValue(event["step"])
            self.progress.setFormat(f"step {event['step']}/{event['total']}")
        elif kind == "generator":
            self.progress.setFormat(f"step {event['step']}/{event['total']}: round {event['round'] + 1}, "
                                    f"generator step {event['generator_step']}/{event['generator_total']}")
        elif kind == "dice":
            organs = [o for o, v in event["original"].items() if v is not None]
            rows = [f"{o}: {100 * event['original'][o]:.1f} → {100 * (event['hardened'].get(o) or 0):.1f}"
                    for o in organs]
            self.dice_label.setText(f"Clean Dice, original → hardened, on {event['slices']} held-out slices: "
                                    + "; ".join(rows))

    def _on_finished(self) -> None:
        job, self.job = self.job, None
        if self.owner.closing:
            return
        self.plot.redraw()
        error = self.report.get("save_error") or (job.close_error if job is not None else None)
        if error is not None:
            self.owner.notify_error(error)
        saved = self.report.get("saved")
        if saved:
            self.hardened_path = saved
            self.progress.setFormat(f"step {self.report.get('step', 0)}/{self.progress.maximum()}: "
                                    f"saved {Path(saved).name}")
            self.owner.notify_info(f"Hardened network saved to {saved}")
        else:
            self.progress.setFormat("not hardening")
        self._set_running(False)
