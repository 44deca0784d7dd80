"""Spin boxes of the training forms (Train and Harden tabs), each set up in one call."""

from __future__ import annotations

from qtpy.QtGui import QValidator
from qtpy.QtWidgets import QDoubleSpinBox, QSpinBox


class ShortFloatBox(QDoubleSpinBox):
    """A float spin box that shows its value in the fewest digits (``0.0005``, ``1e-06``) and takes typed
    scientific notation, for a small value a narrow box would cut to ``0.000``."""

    def textFromValue(self, value: float) -> str:
        return f"{value:.4g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        try:
            value = float(text)
        except ValueError:  # a number being typed ("5e-") may still become one
            partial = text.strip().lower()
            ok = partial == "" or all(ch in "0123456789.e+-" for ch in partial)
            return (QValidator.Intermediate if ok else QValidator.Invalid), text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.Acceptable if ok else QValidator.Intermediate), text, pos


def double_box(value: float, low: float, high: float, step: float, decimals: int, tip: str,
               short: bool = False) -> QDoubleSpinBox:
    """A spin box for a float in ``[low, high]`` with its step, shown decimals and tooltip; ``short``: shown
    in the fewest digits (:class:`ShortFloatBox`), ``decimals`` then only rounds the value."""
    box = ShortFloatBox() if short else QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def int_box(value: int, low: int, high: int, tip: str) -> QSpinBox:
    """A spin box for an integer in ``[low, high]`` with its tooltip."""
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    return box
