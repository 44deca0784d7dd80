"""The Explore tab's strength controls: "Set rho" with its slider, and the dose-response plot.

rho (Eq. 7) is the relative L2 change of a slice. Unticked, the view shows
the generator's own strength; ticked, the shown code's fields are scaled to
the slider's rho (:func:`napari_advseg.attack.strength.scale_to_rho`), and
the session's latent choice carries it to "Apply to whole volume" and Export.
"Dose-response" computes each organ's Dice on the shown slice and code over
a grid of rho in a worker and plots it, with a line at the rho shown now.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSlider,
                            QVBoxLayout, QWidget)

from napari_advseg.widgets._plot import embed_figure

RHO_SLIDER_MAX = 0.12
RHO_SLIDER_STEP = 0.002
RHO_DEFAULT = 0.05


class DoseResponsePlot(QWidget):
    """A matplotlib figure of one dose-response curve (hidden until the first)."""

    def __init__(self, parent=None, background: str = "#262930", foreground: str = "#f0f1f2"):
        super().__init__(parent)
        self.background, self.foreground = background, foreground
        self.figure, self.canvas = embed_figure(self, (3.6, 2.6), background, fixed_height=220)
        self.axes = self.figure.subplots()
        self.marker = None
        self.setVisible(False)

    def show_curve(self, curve, class_names, current: float | None) -> None:
        """Draw ``curve`` (a DoseResponse) with a vertical line at ``current``."""
        from napari_advseg.evaluation.curve import draw_curve

        ax, fg = self.axes, self.foreground
        ax.clear()
        ax.set_facecolor(self.background)
        ax.tick_params(colors=fg, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color("#5a626c")
        ax.grid(True, color="#3a4048", linewidth=0.5)
        self.marker = draw_curve(ax, curve, class_names, current, foreground=fg)
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(self.background)
            legend.get_frame().set_edgecolor("#5a626c")
            for text in legend.get_texts():
                text.set_color(fg)
        self.setVisible(True)
        self.canvas.draw_idle()

    def mark(self, rho: float) -> None:
        """Move the vertical line to ``rho`` (after a curve has been drawn)."""
        if self.marker is not None:
            self.marker.set_xdata([rho, rho])
            self.canvas.draw_idle()


class StrengthPanel(QWidget):
    """"Set rho" and its slider, the "Dose-response" button and the plot.

    Parameters
    ----------
    owner : AttackWidget
        For the session, the job registry and notifications.
    request_from : callable
        Returns the Explore tab's current SliceRequest (slice, code, switches, rho).
    on_change : callable
        Called when the strength changes (the tab records it and re-renders).
    """

    def __init__(self, owner, request_from: Callable, on_change: Callable, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.request_from = request_from
        self.on_change = on_change
        self.job = None
        self.current_rho: float | None = None
        self._curve_revision = None

        self.enabled = QCheckBox("Set rho")
        self.enabled.setToolTip("Scale the fields of the code shown so that rho = ||x_adv - x|| / ||x|| is the "
                                "slider's value (unticked: the generator's own strength)")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, round(RHO_SLIDER_MAX / RHO_SLIDER_STEP))
        self.slider.setValue(round(RHO_DEFAULT / RHO_SLIDER_STEP))
        self.slider.setPageStep(5)
        self.slider.setEnabled(False)
        self.value_label = QLabel("as sampled")
        self.value_label.setMinimumWidth(70)
        self.enabled.toggled.connect(self._changed)
        self.slider.valueChanged.connect(self._changed)
        self.curve_button = QPushButton("Dose-response")
        self.curve_button.setToolTip("Each organ's Dice on this slice and code against rho (0 to 0.12)")
        self.curve_button.clicked.connect(self.start_curve)
        self.curve_status = QLabel("")
        self.plot = DoseResponsePlot()

        row = QHBoxLayout()
        row.addWidget(self.enabled)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.curve_button)
        buttons.addWidget(self.curve_status, 1)
        box = QGroupBox("Strength (rho)")
        inner = QVBoxLayout(box)
        inner.setContentsMargins(4, 4, 4, 4)
        inner.addLayout(row)
        inner.addLayout(buttons)
        inner.addWidget(self.plot)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(box)

    def rho(self) -> float | None:
        """The rho asked for, or None ("as sampled")."""
        if not self.enabled.isChecked():
            return None
        return round(self.slider.value() * RHO_SLIDER_STEP, 6)

    def set_rho(self, rho: float | None) -> None:
        """Tick "Set rho" and move the slider to ``rho`` (None: untick)."""
        self.enabled.setChecked(rho is not None)
        if rho is not None:
            self.slider.setValue(round(float(rho) / RHO_SLIDER_STEP))

    def _changed(self, *_args) -> None:
        rho = self.rho()
        self.slider.setEnabled(rho is not None)
        self.value_label.setText("as sampled" if rho is None else f"{rho:.3f}")
        self.on_change()

    def mark(self, rho: float) -> None:
        """The rho of the view shown now: the plot's vertical line goes there."""
        self.current_rho = float(rho)
        self.plot.mark(self.current_rho)

    # ------------------------------------------------------------------ dose-response
    def start_curve(self) -> None:
        """Compute the curve of the current slice and code in a worker."""
        from napari_advseg.attack.strength import DEFAULT_RHOS
        from napari_advseg.widgets._tasks import SliceRenderer

        owner = self.owner
        if self.job is not None or owner.closing:
            return
        try:
            owner.session.require("volume", "target", "generator")
            request = self.request_from()
            renderer = SliceRenderer(owner.session)  # its own explorer: renders go on meanwhile
            self._curve_revision = owner.session.revision
            self.curve_button.setEnabled(False)
            self.curve_status.setText(f"slice {request.z}: {len(DEFAULT_RHOS)} rho values …")
            self.job = owner.jobs.function_job("dose-response", renderer.dose_response, request, DEFAULT_RHOS,
                                               connect={"returned": self._curve_done,
                                                        "errored": owner.notify_error,
                                                        "finished": self._curve_finished})
        except Exception as exc:
            self.curve_button.setEnabled(True)
            self.curve_status.setText("")
            owner.notify_error(exc)

    def _curve_done(self, curve) -> None:
        owner = self.owner
        if owner.closing or self._curve_revision != owner.session.revision:
            return
        self.plot.show_curve(curve, owner.session.class_names, self.current_rho)
        reached = "every rho reached" if all(curve.reached()) else f"highest rho reached {max(curve.achieved):.3f}"
        self.curve_status.setText(f"{len(curve.dice)} organ(s); {reached}")

    def _curve_finished(self) -> None:
        self.job = None
        if not self.owner.closing:
            self.curve_button.setEnabled(True)
