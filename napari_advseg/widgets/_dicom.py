"""The Data tab's "DICOM folder…" row: a folder's CT series listed, the chosen one read in the background.

A folder with one CT series is read at once; a folder with several lists them
in the series box (a row of its own, the full width of the dock, its list as
wide as its longest entry), and "Load series" reads the chosen one as an Image
layer (as the napari reader would). What the folder holds that is not a CT
volume (localisers, other modalities, reports, ...) is named in an info
notification, with how images without SeriesInstanceUID were grouped. A
series already open as a layer is not read again: its layer is chosen. The
tab is told through callbacks: a line of text to show, the layer read, and
the end of the reading.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from napari_advseg._napari import layers as meta

MIN_SERIES_CHARACTERS = 28
"""The series box shows at least this many characters of an entry; its list opens as wide as the longest."""


class DicomSeriesRow(QWidget):
    """Button, series list and "Load series" of the Data tab.

    ``show_text(str)`` shows a message in the tab, ``read(layer)`` gets the
    Image layer added to the viewer for a series, ``finished()`` is called when
    a reading ends (read, failed or abandoned).
    """

    def __init__(self, owner, show_text: Callable[[str], None], read: Callable[[object], None],
                 finished: Callable[[], None], parent=None):
        super().__init__(parent)
        self.owner = owner
        self._show_text = show_text
        self._read = read
        self._finished = finished
        self._series: list = []
        self.series_job = None
        self.dicom_button = QPushButton("DICOM folder…")
        self.dicom_button.setToolTip("Open a DICOM CT series from a folder (searched with its sub-folders); "
                                     "a folder with several series lists them for a choice")
        self.series_combo = QComboBox()
        self.series_combo.setToolTip("The CT series of the folder: description, slices, modality, "
                                     "SeriesInstanceUID")
        self.series_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.series_combo.setMinimumContentsLength(MIN_SERIES_CHARACTERS)
        self.series_combo.setEnabled(False)
        self.series_button = QPushButton("Load series")
        self.series_button.setToolTip("Read the chosen series as a CT layer (Hounsfield units)")
        self.series_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.dicom_button)
        buttons.addWidget(self.series_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.series_combo)
        self.dicom_button.clicked.connect(self._browse_dicom)
        self.series_button.clicked.connect(lambda: self.load_series())

    def _browse_dicom(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder holding a DICOM CT series")
        if folder:
            self.open_dicom_folder(folder)

    def open_dicom_folder(self, folder) -> int:
        """Find the DICOM series of ``folder``; read it when there is one, list them when several.

        Returns the number of series found (0 after an error, which becomes a notification).
        """
        from napari_advseg.io.dicom import find_series

        try:
            found = find_series(folder)
        except Exception as exc:
            self.owner.notify_error(exc)
            found = []
        self._series = found
        self.series_combo.clear()
        for series in found:
            name = series.description or (f"series {series.number}" if series.number is not None else "series")
            self.series_combo.addItem(f"{name} ({series.n_images} slices, {series.modality or '?'}) {series.uid}")
            self.series_combo.setItemData(self.series_combo.count() - 1, series.label(), Qt.ItemDataRole.ToolTipRole)
        view = self.series_combo.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 2 * view.frameWidth() + 24 if found else 0)
        several = len(found) > 1
        self.series_combo.setEnabled(several)
        self.series_button.setEnabled(several)
        notes = found.all_notes() if hasattr(found, "all_notes") else []
        if notes:
            self.owner.notify_info(" | ".join(notes))
        if len(found) == 1:
            self.load_series(0)
        elif several:
            self._show_text(f"{folder} holds {len(found)} CT series: choose one above and press Load series.")
        return len(found)

    def open_layer(self, series):
        """The viewer's Image layer of ``series`` (same series UID and folder), or None."""
        from napari.layers import Image

        for layer in self.owner.viewer.layers:
            metadata = getattr(layer, "metadata", None) or {}
            if (isinstance(layer, Image) and metadata.get(meta.SERIES) == series.uid
                    and str(metadata.get(meta.PATH)) == str(series.where)):
                return layer
        return None

    def load_series(self, index: int | None = None) -> bool:
        """Read series ``index`` of the list (default: the chosen one) in the background; the new
        Image layer goes to ``read`` when it arrives. Returns False when nothing was started."""
        from napari_advseg._napari.reader import series_layer

        index = self.series_combo.currentIndex() if index is None else int(index)
        if not 0 <= index < len(self._series) or self.series_job is not None:
            return False
        series = self._series[index]
        layer = self.open_layer(series)
        if layer is not None:  # read already: choose its layer rather than add a copy
            self._read(layer)
            self._show_text(f"{series.description or series.uid} is open already as layer {layer.name!r}.")
            return False
        try:
            self.series_job = self.owner.jobs.function_job("read series", series_layer, series, connect={
                "returned": self._series_read, "errored": self.owner.notify_error,
                "finished": self._series_done})
        except Exception as exc:
            self.owner.notify_error(exc)
            return False
        self.dicom_button.setEnabled(False)
        self.series_button.setEnabled(False)
        self._show_text(f"reading {series.n_images} DICOM slices…")
        return True

    def _series_read(self, layer_data) -> None:
        if self.owner.closing:
            return
        data, kwargs, _ = layer_data
        metadata = kwargs.get("metadata", {})
        for layer in self.owner.viewer.layers:  # read twice at once: keep the first copy
            if (layer.metadata.get(meta.SERIES) == metadata.get(meta.SERIES)
                    and str(layer.metadata.get(meta.PATH)) == str(metadata.get(meta.PATH))):
                self._read(layer)
                return
        self._read(self.owner.viewer.add_image(data, **kwargs))

    def _series_done(self) -> None:
        self.series_job = None
        if self.owner.closing:
            return
        self.dicom_button.setEnabled(True)
        self.series_button.setEnabled(self.series_combo.isEnabled())
        self._finished()
