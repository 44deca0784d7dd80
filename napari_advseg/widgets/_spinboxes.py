"""Spin boxes of the training forms (Train and Harden tabs), each set up in one call."""

from __future__ import annotations

from qtpy.QtWidgets import QDoubleSpinBox, QSpinBox


def double_box(value: float, low: float, high: float, step: float, decimals: int, tip: str) -> QDoubleSpinBox:
    """A spin box for a float in ``[low, high]`` with its step, shown decimals and tooltip."""
    box = QDoubleSpinBox()
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
