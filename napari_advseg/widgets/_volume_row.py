"""The Explore tab's "Apply to whole volume" row: every slice attacked in the background, two new layers.

The code of the sliders (or fresh deviates per slice) and the strength set
are applied to the whole CT; the adversarial volume and its segmentation
become whole-volume layers named "volume: ...", and no file is written.
They go below the Explore tab's layers, so that the sliders keep acting on
what the canvas shows; a coronal or sagittal view (or hiding the Explore
layers) shows them.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from napari_advseg.widgets import _layers as L
from napari_advseg.widgets._tasks import SliceRequest, volume_run


class VolumeRow(QGroupBox):
    """Button, "one code per volume" switch and progress bar; ``request_from()`` gives the tab's current request."""

    def __init__(self, owner, request_from: Callable[[], SliceRequest], parent=None,
                 on_added: Callable[[], None] | None = None):
        super().__init__(parent)
        self.owner = owner
        self._request_from = request_from
        self._on_added = on_added
        self.job = None
        self._revision = None
        self.button = QPushButton("Apply to whole volume")
        self.button.setToolTip("Attack every slice with these slider values and strength, into the layers "
                               "'volume: ...' below the Explore layers (no files)")
        self.button.clicked.connect(self.apply)
        self.one_code = QCheckBox("one code per volume")
        self.one_code.setChecked(True)
        self.one_code.setToolTip("Ticked: the sliders' code for every slice. Unticked: fresh random deviates "
                                 "for each slice (seed 0); the fields then jump between slices")
        self.progress = QProgressBar()
        self.progress.setFormat("")
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.button)
        row.addWidget(self.one_code)
        row.addWidget(self.progress, 1)
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 4)
        column.addLayout(row)
        column.addWidget(self.status)

    def apply(self) -> None:
        """Attack every slice with the current sliders and strength; results become two whole-volume layers."""
        owner = self.owner
        try:
            owner.session.require("volume", "target", "generator")
        except Exception as exc:
            owner.notify_error(exc)
            return
        if self.job is not None:
            return
        request = self._request_from()
        n = owner.session.case.volume.n_slices
        self.progress.setRange(0, n)
        self.progress.setValue(0)
        self.progress.setFormat("%v/%m slices")
        inner = volume_run(owner.session.snapshot(), request.eps_phi, request.eps_b, request.temperature,
                           request.use_phi, request.use_bias, rho=request.rho,
                           latent="volume" if self.one_code.isChecked() else "slice")
        self._revision = owner.session.revision
        self.button.setEnabled(False)
        try:
            self.job = owner.jobs.generator_job("volume", inner, connect={
                "yielded": self._progress, "returned": self._done,
                "errored": owner.notify_error, "finished": self._finished})
        except Exception as exc:
            self.button.setEnabled(True)
            owner.notify_error(exc)

    def _progress(self, progress) -> None:
        if not self.owner.closing:
            self.progress.setValue(progress[0])

    def _done(self, arrays) -> None:
        owner = self.owner
        ct = owner.session.layer
        if owner.closing or ct is None or arrays is None or self._revision != owner.session.revision:
            return
        adversarial, segmentation = arrays
        whole = L.geometry(ct)
        L.show_image(owner.viewer, L.VOLUME_ADVERSARIAL, adversarial, whole, colormap="gray",
                     contrast_limits=tuple(ct.contrast_limits))
        L.show_labels(owner.viewer, L.VOLUME_SEG, segmentation, whole, class_names=owner.session.class_names,
                      opacity=0.45)
        if self._on_added is not None:
            self._on_added()
        self.status.setText(f"The attacked volume is in the layers '{L.VOLUME_ADVERSARIAL}' and "
                            f"'{L.VOLUME_SEG}', below the Explore layers: the coronal or sagittal view shows "
                            "it (or hide the Explore layers). The sliders act on the Explore layers.")

    def _finished(self) -> None:
        self.job = None
        if not self.owner.closing:
            self.button.setEnabled(True)
