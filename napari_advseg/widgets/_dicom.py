"""The Data tab's "DICOM folder…" row: a folder's CT series listed, the chosen one read in the background.

A folder with one series is read at once; a folder with several lists them in
the series box, and "Load series" reads the chosen one as an Image layer (as
the napari reader would). The tab is told through callbacks: a line of text
to show, the layer read, and the end of the reading.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QWidget


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
        self.series_combo.setToolTip("The DICOM series of the folder: description, slices, modality, "
                                     "SeriesInstanceUID")
        self.series_combo.setEnabled(False)
        self.series_button = QPushButton("Load series")
        self.series_button.setToolTip("Read the chosen series as a CT layer (Hounsfield units)")
        self.series_button.setEnabled(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.dicom_button)
        layout.addWidget(self.series_combo, 1)
        layout.addWidget(self.series_button)
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
            self.series_combo.addItem(f"{name} ({series.n_files} slices, {series.modality or '?'}) {series.uid}")
        several = len(found) > 1
        self.series_combo.setEnabled(several)
        self.series_button.setEnabled(several)
        if len(found) == 1:
            self.load_series(0)
        elif several:
            self._show_text(f"{folder} holds {len(found)} DICOM series: choose one above and press Load series.")
        return len(found)

    def load_series(self, index: int | None = None) -> bool:
        """Read series ``index`` of the list (default: the chosen one) in the background; the new
        Image layer goes to ``read`` when it arrives. Returns False when nothing was started."""
        from napari_advseg._napari.reader import series_layer

        index = self.series_combo.currentIndex() if index is None else int(index)
        if not 0 <= index < len(self._series) or self.series_job is not None:
            return False
        series = self._series[index]
        try:
            self.series_job = self.owner.jobs.function_job("read series", series_layer, series, connect={
                "returned": self._series_read, "errored": self.owner.notify_error,
                "finished": self._series_done})
        except Exception as exc:
            self.owner.notify_error(exc)
            return False
        self.dicom_button.setEnabled(False)
        self.series_button.setEnabled(False)
        self._show_text(f"reading {series.n_files} DICOM slices…")
        return True

    def _series_read(self, layer_data) -> None:
        if self.owner.closing:
            return
        data, kwargs, _ = layer_data
        self._read(self.owner.viewer.add_image(data, **kwargs))

    def _series_done(self) -> None:
        self.series_job = None
        if self.owner.closing:
            return
        self.dicom_button.setEnabled(True)
        self.series_button.setEnabled(self.series_combo.isEnabled())
        self._finished()
