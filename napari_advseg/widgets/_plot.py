"""Live plot of the training metrics (matplotlib in a Qt canvas).

Three panels: generator and critic losses; the attack's masked cross-entropy
with a horizontal line at gamma; the perceptibility rho. Redraws at most
every half second however fast the steps arrive.
"""

from __future__ import annotations

import time

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

REDRAW_SECONDS = 0.5

_SERIES = (
    (0, "loss_generator", "generator", "#4fc3f7"),
    (0, "loss_critic", "critic", "#ffb74d"),
    (1, "attack_ce", "attack CE", "#ef5350"),
    (2, "rho", "rho", "#81c784"),
)
_TITLES = ("losses", "attack cross-entropy", "perceptibility rho")


def embed_figure(widget: QWidget, figsize: tuple[float, float], background: str, fixed_height: int | None):
    """A matplotlib figure on a Qt canvas filling ``widget``: ``(figure, canvas)``.

    ``fixed_height``: the canvas's height in pixels, or None to let it grow with the dock.
    """
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, facecolor=background, layout="constrained")
    canvas = FigureCanvasQTAgg(figure)
    if fixed_height is None:
        canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
    else:
        canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        canvas.setFixedHeight(fixed_height)
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(canvas)
    return figure, canvas


class TrainingPlot(QWidget):
    """A matplotlib figure of the training history, fed one step at a time."""

    def __init__(self, parent=None, background: str = "#262930", foreground: str = "#f0f1f2",
                 series=_SERIES, titles=_TITLES, gamma_axis: int | None = 1):
        super().__init__(parent)
        self.series = tuple(series)
        self.figure, self.canvas = embed_figure(self, (3.6, 1.2 * len(titles)), background, fixed_height=None)
        self.canvas.setMinimumHeight(80 * len(titles))
        self.axes = self.figure.subplots(len(titles), 1, sharex=True, squeeze=False)[:, 0]
        for ax, title in zip(self.axes, titles):
            ax.set_facecolor(background)
            ax.set_title(title, color=foreground, fontsize=8, loc="left", pad=2)
            ax.tick_params(colors=foreground, labelsize=7)
            for spine in ax.spines.values():
                spine.set_color("#5a626c")
            ax.grid(True, color="#3a4048", linewidth=0.5)
        self.axes[-1].set_xlabel("step", color=foreground, fontsize=7)
        self.lines = {}
        for index, key, label, colour in self.series:
            (self.lines[key],) = self.axes[index].plot([], [], color=colour, linewidth=1.0, label=label)
        self.gamma_axis = gamma_axis
        self.gamma_line = None  # the attack's target CE, a dashed line on the gamma_axis panel
        if gamma_axis is not None:
            self.gamma_line = self.axes[gamma_axis].axhline(0.0, color=foreground, linestyle="--", linewidth=0.8,
                                                            label="gamma")
            self.gamma_line.set_visible(False)
        for ax in self.axes[:2]:
            if not ax.get_lines():
                continue
            ax.legend(fontsize=6, loc="upper right", facecolor=background, edgecolor="#5a626c",
                      labelcolor=foreground)
        self.history: list[dict] = []
        self._last_draw = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.redraw)

    def set_history(self, history: list[dict], gamma: float | None = None) -> None:
        """Replace the plotted history (e.g. after resuming from a checkpoint)."""
        self.history = [dict(m) for m in history]
        if gamma is not None:
            self.set_gamma(gamma)
        self.redraw()

    def set_gamma(self, gamma: float) -> None:
        if self.gamma_line is None:
            return
        self.gamma_line.set_ydata([gamma, gamma])
        self.gamma_line.set_visible(True)

    def add(self, metrics: dict) -> None:
        """Append one step; redraw now or within half a second."""
        self.history.append(dict(metrics))
        if "gamma" in metrics:
            self.set_gamma(float(metrics["gamma"]))
        wait = REDRAW_SECONDS - (time.monotonic() - self._last_draw)
        if wait <= 0:
            self.redraw()
        elif not self._timer.isActive():
            self._timer.start(int(1000 * wait))

    def stop(self) -> None:
        """Cancel a pending redraw (the widget is closing)."""
        self._timer.stop()

    def redraw(self) -> None:
        """Draw the whole history now."""
        self._timer.stop()
        steps = [m.get("step", i + 1) for i, m in enumerate(self.history)]
        for _, key, _, _ in self.series:
            self.lines[key].set_data(steps, [m.get(key, float("nan")) for m in self.history])
        for ax in self.axes:
            ax.relim()
            ax.autoscale_view()
        if self.history and self.gamma_line is not None and self.gamma_line.get_visible():
            low, high = self.axes[self.gamma_axis].get_ylim()
            gamma = self.gamma_line.get_ydata()[0]
            self.axes[self.gamma_axis].set_ylim(min(low, gamma - 0.1), max(high, gamma + 0.1))
        self.canvas.draw_idle()
        self._last_draw = time.monotonic()
