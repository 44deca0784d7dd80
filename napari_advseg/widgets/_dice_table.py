"""The Explore tab's per-organ table: Dice of the clean and the adversarial slice, drop and success."""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QSizePolicy, QTableWidget, QTableWidgetItem

_ROW_HEIGHT = 22
"""Pixels per table row."""


class DiceTable(QTableWidget):
    """One read-only row per organ of the slice shown, as tall as its rows (at most 260 pixels)."""

    def __init__(self, parent=None):
        super().__init__(0, 5, parent)
        self.setHorizontalHeaderLabels(["organ", "Dice clean", "Dice adv.", "drop", "success"])
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

    def show_organs(self, organs: dict) -> None:
        """Fill the rows from a slice view's ``organs`` (name -> dice_clean, dice_adv, drop, success)."""
        self.setEnabled(True)
        self.setRowCount(len(organs))
        self._fit()
        for row, (name, entry) in enumerate(organs.items()):
            drop = entry["drop"]
            cells = [name, f"{entry['dice_clean']:.3f}", f"{entry['dice_adv']:.3f}",
                     "n/a" if math.isnan(drop) else f"{100 * drop:.0f} %", "yes" if entry["success"] else "no"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignCenter)
                self.setItem(row, col, item)
