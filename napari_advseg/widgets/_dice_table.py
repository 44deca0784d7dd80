"""The Explore tab's per-organ table: Dice of the clean and the adversarial slice in %, drop and success.

Each organ's name carries a swatch of the colour its segmentation and
outlines have on the canvas.
"""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem

_ROW_HEIGHT = 22
"""Pixels per table row."""

def _headers(success_drop: float) -> tuple[tuple[str, str], ...]:
    return (
        ("organ", "The organ; the square is its colour on the canvas (fill: the network's segmentation, "
                  "outline: the reference)"),
        ("Dice clean", "Overlap of the network's segmentation of the clean slice with the reference, in % "
                       "(100 % = identical, 0 % = no overlap)"),
        ("Dice adv.", "Overlap of the network's segmentation of the adversarial slice with the reference "
                      "warped like the image, in %"),
        ("rel. drop", "How much of the clean Dice the attack took away: (clean - adversarial) / clean, in %"),
        ("success", f"Whether the relative drop is at least {100 * success_drop:.0f} % (the paper's criterion)"),
    )


def percent(value: float, digits: int = 1) -> str:
    """A fraction (0..1) as a percentage for the table ("n/a" for NaN)."""
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.{digits}f} %"


def _icon(rgba) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor.fromRgbF(*(float(c) for c in rgba[:3]), 1.0))
    return QIcon(pixmap)


class DiceTable(QTableWidget):
    """One read-only row per organ of the slice shown, as tall as its rows (at most 260 pixels)."""

    def __init__(self, parent=None):
        from napari_advseg.data.overlap import SUCCESS_DROP  # imports torch: not at module level

        headers = _headers(SUCCESS_DROP)
        super().__init__(0, len(headers), parent)
        for col, (text, tip) in enumerate(headers):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            self.setHorizontalHeaderItem(col, item)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.verticalHeader().setDefaultSectionSize(_ROW_HEIGHT)
        self._fit()

    def _fit(self) -> None:
        rows = max(self.rowCount(), 1)
        height = self.horizontalHeader().sizeHint().height() + rows * _ROW_HEIGHT + 4
        self.setFixedHeight(min(height, 260))

    def show_organs(self, organs: dict, colours: dict | None = None) -> None:
        """Fill the rows from a slice view's ``organs`` (name -> dice_clean, dice_adv, drop, success).

        ``colours``: name -> RGBA of the organ on the canvas (a swatch beside the name).
        """
        colours = colours or {}
        self.setEnabled(True)
        self.setRowCount(len(organs))
        self._fit()
        for row, (name, entry) in enumerate(organs.items()):
            cells = [name, percent(entry["dice_clean"]), percent(entry["dice_adv"]), percent(entry["drop"], 0),
                     "yes" if entry["success"] else "no"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignCenter)
                elif name in colours:
                    item.setIcon(_icon(colours[name]))
                self.setItem(row, col, item)
