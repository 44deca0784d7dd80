"""The Explore tab's latent sliders: one per latent number, in standard deviations (SD) around the encoder's mean.

Beside each slider: its value in SD and the organ whose Dice it moves most
on the slice shown, with by how much (Dice in %, from -3 to +3 SD).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGridLayout, QLabel, QSlider, QWidget

SLIDER_STEPS = 10  # slider units per standard deviation (steps of 0.1)
SLIDER_RANGE = 3.0  # standard deviations either side of the encoder's mean


class LatentSliders(QWidget):
    """One slider per latent number, in standard deviations around the encoder's mean."""

    def __init__(self, title: str, parent=None, tooltip: str = ""):
        super().__init__(parent)
        self.title = title
        self.tooltip = tooltip
        self.sliders: list[QSlider] = []
        self.values: list[QLabel] = []
        self.effects: list[QLabel] = []
        self._latent_tips: list[str] = []
        self._effect_tips: list[str] = []
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setVerticalSpacing(0)
        self.on_change = None

    def set_count(self, n: int) -> None:
        if n == len(self.sliders):
            return
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.sliders, self.values, self.effects = [], [], []
        self._latent_tips, self._effect_tips = [""] * n, [""] * n
        heading = QLabel(self.title)
        heading.setAlignment(Qt.AlignCenter)
        heading.setToolTip(self.tooltip)
        self.grid.addWidget(heading, 0, 0, 1, 4)
        for col, (text, tip) in enumerate((("#", "The number's position in the code"), ("", ""),
                                           ("SD", "Standard deviations (SD) from the encoder's mean for this slice"),
                                           ("moves most", "The organ whose Dice this number moves most on the "
                                                          "slice shown, and by how much (Dice in %, from -3 to "
                                                          "+3 SD)"))):
            if text:
                label = QLabel(text)
                label.setToolTip(tip)
                self.grid.addWidget(label, 1, col)
        bound = int(SLIDER_RANGE * SLIDER_STEPS)
        for i in range(n):
            slider = QSlider(Qt.Horizontal)
            slider.setRange(-bound, bound)
            slider.setSingleStep(1)
            slider.setPageStep(SLIDER_STEPS)
            slider.setMinimumWidth(40)
            slider.valueChanged.connect(self._changed)
            value = QLabel("+0.0")
            value.setMinimumWidth(value.fontMetrics().horizontalAdvance("+0.00"))
            value.setToolTip("Standard deviations (SD) from the encoder's mean for this slice")
            self.grid.addWidget(QLabel(str(i)), i + 2, 0)
            self.grid.addWidget(slider, i + 2, 1)
            self.grid.addWidget(value, i + 2, 2)
            effect = QLabel("")
            effect.setMinimumWidth(effect.fontMetrics().horizontalAdvance("kidney L 88 %"))
            effect.setToolTip("The organ whose Dice this number moves most on the slice shown, and by how much "
                              "(Dice in %, from -3 to +3 SD; measured when the slice changes)")
            self.grid.addWidget(effect, i + 2, 3)
            self.sliders.append(slider)
            self.values.append(value)
            self.effects.append(effect)
        self.grid.setRowStretch(n + 2, 1)  # spare height below the sliders, not between them
        self.grid.setColumnStretch(1, 1)  # the slider gives way to the value and effect labels

    def _changed(self, *_args) -> None:
        for slider, label in zip(self.sliders, self.values):
            label.setText(f"{slider.value() / SLIDER_STEPS:+.1f}")
        if self.on_change is not None:
            self.on_change()

    def eps(self) -> np.ndarray:
        """The deviates (standard deviations) the sliders show."""
        return np.array([s.value() / SLIDER_STEPS for s in self.sliders], np.float32)

    def set_eps(self, values) -> None:
        """Move the sliders without a render per slider (one change notice at the end)."""
        for slider, value in zip(self.sliders, values):
            slider.blockSignals(True)
            slider.setValue(int(round(float(np.clip(value, -SLIDER_RANGE, SLIDER_RANGE)) * SLIDER_STEPS)))
            slider.blockSignals(False)
        self._changed()

    def set_latent(self, mu, sigma, temperature: float) -> None:
        """Tooltips with the latent value each slider gives on this slice."""
        for i, slider in enumerate(self.sliders):
            if i < len(mu):
                z = mu[i] + temperature * slider.value() / SLIDER_STEPS * sigma[i]
                self._latent_tips[i] = (f"{self.title}, number {i}: the encoder's mean {mu[i]:+.2f}, SD {sigma[i]:.2f}; "
                                        f"this slider gives {z:+.2f}")
        self._update_tips()

    def set_effects(self, effects) -> None:
        """Show what each number mostly does on this slice (``LatentEffect`` list, or None to clear).

        Beside each slider: the organ whose Dice it moves most and by how much
        over the slider's range (Dice in %); in the tooltip, the whole measurement.
        """
        by_index = {e.index: e for e in (effects or [])}
        for i, label in enumerate(self.effects):
            effect = by_index.get(i)
            label.setText(effect_text(effect))
            self._effect_tips[i] = effect_tip(effect)
        self._update_tips()

    def _update_tips(self) -> None:
        for i, slider in enumerate(self.sliders):
            slider.setToolTip("\n".join(t for t in (self._latent_tips[i], self._effect_tips[i]) if t))


def effect_text(effect) -> str:
    """Beside a slider: e.g. ``liver 32 %`` (its Dice swings by 32 % from -3 to +3 SD); "" without an organ."""
    short = "" if effect is None else effect.short()
    return f"{short} %" if short else ""


def effect_tip(effect) -> str:
    """A slider's tooltip line: what its number does on this slice, in plain words and units."""
    if effect is None:
        return ""
    change = (f"moves the tissue by {effect.displacement_px:.1f} px on average" if effect.field == "phi"
              else f"changes the intensity by {effect.bias_change:.0f} {effect.bias_unit} on average")
    if effect.organ is None:
        return f"From -3 to +3 SD this number {change}; no organ on this slice."
    return (f"From -3 to +3 SD this number {change} and changes the {effect.organ}'s Dice by up to "
            f"{effect.organ_swing[effect.organ]:.0f} % (the mean over organs by {effect.dice_swing:.0f} %).")
