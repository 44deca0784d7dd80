"""The "Export" tab: write adversarial slices as NIfTI and/or DICOM in the input's geometry.

Calls :func:`napari_advseg.attack.sampling.sample_volume` in a worker with the
Explore tab's slider values, switches, temperature and "Set rho" (the session's
``latent`` choice). The slice range follows the session's volume. File names
start with the optional run name and the slices
(:func:`~napari_advseg.attack.sampling.export_prefix`, e.g.
``slices_10-20_adversarial_hu.nii.gz``), so exports of other slices never
replace each other; existing files are replaced only after the user agrees
(``AttackWidget._confirm_overwrite``).
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QProgressBar, QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from napari_advseg.widgets._subscriptions import Subscriptions
from napari_advseg.widgets._tasks import Cancelled, existing_outputs, export_run

CURRENT, RANGE, ALL = "current", "range", "all"

FORMAT_CHOICES = (("NIfTI", "nifti"), ("DICOM (CT series + SEG)", "dicom"), ("NIfTI and DICOM", "both"))
"""The format box's entries: label, ``advseg sample --format`` value."""


class _Progress(QObject):
    """Carries progress from the export thread to the main thread (a queued signal)."""

    advanced = Signal(int)


class ExportPanel(QWidget):
    """Which slices, where, and the Export button."""

    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.job = None
        self.last_sidecar: dict | None = None
        self._done = 0
        self._signals = _Progress(self)
        self._signals.advanced.connect(self._advance)

        self.current_radio = QRadioButton("current slice")
        self.range_radio = QRadioButton("slices")
        self.all_radio = QRadioButton("all slices")
        self.current_radio.setChecked(True)
        self.mode_group = QButtonGroup(self)
        for button in (self.current_radio, self.range_radio, self.all_radio):
            self.mode_group.addButton(button)
        self.first = QSpinBox()
        self.last = QSpinBox()
        for box in (self.first, self.last):
            box.setRange(0, 0)
            box.valueChanged.connect(lambda *_: self.range_radio.setChecked(True))
        range_row = QHBoxLayout()
        range_row.addWidget(self.range_radio)
        range_row.addWidget(QLabel("from"))
        range_row.addWidget(self.first)
        range_row.addWidget(QLabel("to"))
        range_row.addWidget(self.last)
        range_row.addStretch(1)

        self.folder = QLineEdit(str(Path.home() / "napari-advseg" / "export"))
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        self.run_name = QLineEdit()
        self.run_name.setPlaceholderText("optional: starts the file names")
        self.format = QComboBox()
        for label, value in FORMAT_CHOICES:
            self.format.addItem(label, value)
        self.format.setToolTip("DICOM: the adversarial CT as a derived series (new UIDs, ImageType DERIVED) and "
                               "the clean and adversarial segmentations as DICOM SEG on it. A DICOM input's "
                               "patient and study are kept and its geometry copied; a NIfTI input gets a fresh "
                               "anonymous study")
        self.drop_patient = QCheckBox("drop patient and study tags (DICOM)")
        self.drop_patient.setToolTip("a fresh anonymous patient, study and frame of reference for the DICOM "
                                     "output, with no reference to the input images")
        self.format.currentIndexChanged.connect(self._format_changed)
        self._format_changed()
        form = QFormLayout()
        form.addRow("output folder", folder_row)
        form.addRow("run name", self.run_name)
        form.addRow("format", self.format)
        form.addRow("", self.drop_patient)

        self.export_button = QPushButton("Export")
        self.export_button.setToolTip("Adversarial CT, segmentations, fields and a JSON sidecar (NIfTI), or the "
                                      "CT and segmentations as DICOM, in the geometry of the input; other "
                                      "slices keep the CT unchanged")
        self.export_button.clicked.connect(self.export)
        self.progress = QProgressBar()
        self.progress.setFormat("")
        self.progress.setValue(0)
        self.status = QLabel("Uses the Explore tab's sliders, switches and temperature.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.current_radio)
        layout.addLayout(range_row)
        layout.addWidget(self.all_radio)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.subscriptions = Subscriptions()
        self.subscriptions.connect(owner.session.volume_changed, self.volume_changed)

    def shutdown(self) -> None:
        """Stop listening to the session (the widget is closing)."""
        self.subscriptions.disconnect_all()

    def volume_changed(self) -> None:
        """The slice range spans the session's volume."""
        if self.owner.closing:
            return
        volume = self.owner.session.volume
        top = 0 if volume is None else volume.n_slices - 1
        for box in (self.first, self.last):
            box.blockSignals(True)
            box.setRange(0, top)
            box.blockSignals(False)

    def _format_changed(self, *_) -> None:
        self.drop_patient.setEnabled(self.chosen_format() != "nifti")

    def chosen_format(self) -> str:
        """``"nifti"``, ``"dicom"`` or ``"both"``."""
        return self.format.currentData()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def set_range(self, first: int, last: int) -> None:
        """Choose the slices ``first..last`` (inclusive)."""
        self.first.setValue(first)
        self.last.setValue(last)
        self.range_radio.setChecked(True)

    def chosen_slices(self) -> list[int] | None:
        """The slice indices to export (None: all)."""
        if self.all_radio.isChecked():
            return None
        if self.current_radio.isChecked():
            return [self.owner.current_slice()]
        low, high = sorted((self.first.value(), self.last.value()))
        return list(range(low, high + 1))

    def export(self) -> None:
        """Ask before replacing files, then write them in a worker."""
        owner = self.owner
        if self.job is not None:
            return
        try:
            owner.session.require("volume", "target", "generator")
        except Exception as exc:
            owner.notify_error(exc)
            return
        from napari_advseg.attack.sampling import FORMATS, export_prefix

        out_dir = Path(self.folder.text()).expanduser()
        slices = self.chosen_slices()
        n_slices = owner.session.volume.n_slices
        try:
            prefix = export_prefix(slices, n_slices, self.run_name.text().strip())
        except Exception as exc:
            owner.notify_error(exc)
            return
        formats = FORMATS[self.chosen_format()]
        drop = self.drop_patient.isChecked() and "dicom" in formats
        existing = existing_outputs(out_dir, owner.session.labels is not None, prefix=prefix, formats=formats)
        if existing and not owner._confirm_overwrite(existing):
            self.status.setText("Export cancelled: nothing was written.")
            return
        latent = owner.session.latent
        n = n_slices if slices is None else len(slices)
        self._done = 0
        self.progress.setRange(0, n)
        self.progress.setValue(0)
        self.progress.setFormat("%v/%m slices")
        self.status.setText(f"Writing {n} adversarial slice(s) to {out_dir} …")
        self.export_button.setEnabled(False)
        try:
            self.job = owner.jobs.function_job(
                "export", export_run, owner.session.snapshot(), out_dir, slices, latent.eps_phi.copy(),
                latent.eps_b.copy(), latent.temperature, latent.use_phi, latent.use_bias,
                progress=self._signals.advanced.emit, cancelled=self._cancelled, rho=latent.rho, prefix=prefix,
                formats=formats, drop_patient_tags=drop,
                connect={"returned": self._written, "errored": self._failed, "finished": self._finished})
        except Exception as exc:
            self.export_button.setEnabled(True)
            owner.notify_error(exc)

    def _cancelled(self) -> bool:
        job = self.job
        return self.owner.closing or (job is not None and job.cancel_requested)

    def _advance(self, n: int) -> None:
        self._done += n
        self.progress.setValue(self._done)

    def _written(self, sidecar: dict) -> None:
        self.last_sidecar = sidecar
        if self.owner.closing:
            return
        files = ", ".join(sorted(sidecar.get("files", {}).values()))
        text = f"Wrote {files} to {Path(self.folder.text()).expanduser()}"
        if "dicom" in sidecar:
            fresh = sidecar["dicom"]["series"]["study"] == "fresh"
            text += (". DICOM: a fresh anonymous study" if fresh else ". DICOM: in the input's study")
        self.status.setText(text)
        self.owner.notify_info(f"Exported {len(sidecar.get('slices', []))} adversarial slice(s)")

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, Cancelled):
            if not self.owner.closing:
                self.status.setText("Export cancelled: nothing was written.")
            return
        if not self.owner.closing:
            self.status.setText("Export failed.")
        self.owner.notify_error(exc)

    def _finished(self) -> None:
        self.job = None
        if not self.owner.closing:
            self.export_button.setEnabled(True)
