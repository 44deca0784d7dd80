"""The "Data and model" tab: CT and reference layers, target model, generator, device.

A DICOM CT series can be opened here too (the "DICOM folder…" row of
:mod:`napari_advseg.widgets._dicom`); the Image layer it reads becomes the CT.

The tab turns the user's choices into the session's state: the chosen layers
become the session's volume and labels (a CT layer's metadata may name a
target and a generator, which are loaded), model files are loaded, the device
is switched. It shows the session whenever the session announces a change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                            QVBoxLayout, QWidget)

from napari_advseg._napari import layers as meta
from napari_advseg.device import DEVICE_CHOICES
from napari_advseg.errors import AdvsegError
from napari_advseg.widgets._dicom import DicomSeriesRow
from napari_advseg.widgets._layers import is_output
from napari_advseg.widgets._subscriptions import Subscriptions

NO_LABELS = "none (label-free)"
MODEL_FILTER = "PyTorch models (*.pt *.pth *.ts *.zip);;All files (*)"


def _uid(layer):
    """A layer's identity that survives napari's proxy objects (each access makes a new proxy)."""
    return None if layer is None else layer.unique_id


def _path_row(placeholder: str) -> tuple[QWidget, QLineEdit, QPushButton]:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    edit = QLineEdit()
    edit.setReadOnly(True)
    edit.setPlaceholderText(placeholder)
    button = QPushButton("Browse…")
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return row, edit, button


class DataPanel(QWidget):
    """Choice of the input layers and the model files; sets the session's volume, target and generator."""

    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.session = owner.session
        self.viewer = owner.viewer
        self._ct_layers: list = []
        self._label_layers: list = []
        self._refreshing = False
        self._labels_chosen = False
        self._auto_loaded: set[tuple] = set()
        self._volume_key: tuple | None = None
        self._mapping_warned: str | None = None  # the class mapping line last shown as a notification

        self.ct_combo = QComboBox()
        self.ct_combo.setToolTip("The CT volume (an Image layer in Hounsfield units) to attack")
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Reference organ labels; without them the target's own prediction "
                                     "on the clean image is the reference (label-free mode)")
        target_row, self.target_edit, self.target_button = _path_row(
            "target network (.pt, TorchScript, nnU-Net folder or MONAI bundle)")
        self.target_folder_button = QPushButton("Folder…")
        self.target_folder_button.setToolTip("An nnU-Net v2 trained-model folder (2d or 3d_fullres) or a MONAI "
                                             "bundle folder (2D or 3D) as the target network")
        target_row.layout().addWidget(self.target_folder_button)
        generator_row, self.generator_edit, self.generator_button = _path_row("optional: a trained generator")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICE_CHOICES))
        self.normalisation_label = QLabel("(no target loaded)")
        self.info_label = QLabel("")
        self.info_label.setWordWrap(True)
        self.dicom = DicomSeriesRow(owner, show_text=self.info_label.setText, read=self.select_ct,
                                    finished=self.show_session)

        form = QFormLayout()
        form.addRow("DICOM", self.dicom)
        form.addRow("CT image", self.ct_combo)
        form.addRow("Reference", self.labels_combo)
        form.addRow("Target model", target_row)
        form.addRow("Generator", generator_row)
        form.addRow("Device", self.device_combo)
        form.addRow("Normalisation", self.normalisation_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.info_label)
        layout.addStretch(1)

        self.ct_combo.currentIndexChanged.connect(self._combo_changed)
        self.labels_combo.currentIndexChanged.connect(self._combo_changed)
        self.target_button.clicked.connect(self._browse_target)
        self.target_folder_button.clicked.connect(self._browse_target_folder)
        self.generator_button.clicked.connect(self._browse_generator)
        self.device_combo.activated.connect(lambda i: self.set_device(self.device_combo.itemText(i)))
        self._fill_combos()  # the owner applies the first choice once every tab listens
        self.subscriptions = Subscriptions()
        self.subscriptions.connect(self.session.changed, self.show_session)

    def shutdown(self) -> None:
        """Stop listening to the session (the widget is closing)."""
        self.subscriptions.disconnect_all()

    # ------------------------------------------------------------------ layers
    def refresh_layers(self, *_args) -> None:
        """Rebuild both combo boxes from the viewer's layers, keeping the current choices."""
        if self._fill_combos():
            self.apply_inputs()

    def _fill_combos(self) -> bool:
        """Rebuild both combo boxes; True when the chosen CT or labels layer changed."""
        from napari.layers import Image, Labels

        old_ct, old_labels = self.ct_layer(), self.labels_layer()
        old_ids = (_uid(old_ct), _uid(old_labels))
        cts = [layer for layer in self.viewer.layers
               if isinstance(layer, Image) and not is_output(layer) and not layer.rgb and layer.ndim == 3]
        labels = [layer for layer in self.viewer.layers if isinstance(layer, Labels) and not is_output(layer)]
        self._refreshing = True
        try:
            self._ct_layers = cts
            self.ct_combo.clear()
            self.ct_combo.addItems([layer.name for layer in cts])
            preferred = [layer for layer in cts if meta.layer_kind(layer) == meta.CT]
            ct_ids = [_uid(layer) for layer in cts]
            if old_ids[0] in ct_ids:
                self.ct_combo.setCurrentIndex(ct_ids.index(old_ids[0]))
            elif cts:
                self.ct_combo.setCurrentIndex(ct_ids.index(_uid(preferred[0] if preferred else cts[0])))
            ct = self.ct_layer()
            self._label_layers = labels
            self.labels_combo.clear()
            self.labels_combo.addItems([NO_LABELS] + [layer.name for layer in labels])
            label_ids = [_uid(layer) for layer in labels]
            if old_ids[1] in label_ids:
                self.labels_combo.setCurrentIndex(1 + label_ids.index(old_ids[1]))
            elif old_labels is None and ct is not None and not self._labels_chosen:
                # a reference that matches the CT (e.g. opened with it) is taken by default
                fitting = [layer for layer in labels if tuple(layer.data.shape) == tuple(ct.data.shape)]
                if fitting:
                    self.labels_combo.setCurrentIndex(1 + label_ids.index(_uid(fitting[0])))
        finally:
            self._refreshing = False
        return (_uid(self.ct_layer()), _uid(self.labels_layer())) != old_ids

    def _combo_changed(self, *_args) -> None:
        if self._refreshing:
            return
        if self.sender() is self.labels_combo:
            self._labels_chosen = True
        self.apply_inputs()

    def ct_layer(self):
        """The chosen CT Image layer, or None."""
        index = self.ct_combo.currentIndex()
        return self._ct_layers[index] if 0 <= index < len(self._ct_layers) else None

    def labels_layer(self):
        """The chosen reference Labels layer, or None (label-free)."""
        index = self.labels_combo.currentIndex() - 1
        return self._label_layers[index] if 0 <= index < len(self._label_layers) else None

    def select_ct(self, layer) -> None:
        """Choose a CT layer of the list (a layer not listed is ignored); a change applies it."""
        ids = [_uid(item) for item in self._ct_layers]
        if _uid(layer) in ids and self.ct_combo.currentIndex() != ids.index(_uid(layer)):
            self.ct_combo.setCurrentIndex(ids.index(_uid(layer)))

    def select_labels(self, layer) -> None:
        """Choose a reference layer (None: label-free)."""
        self._labels_chosen = True
        ids = [_uid(item) for item in self._label_layers]
        self.labels_combo.setCurrentIndex(0 if layer is None else 1 + ids.index(_uid(layer)))

    def show_label_free(self) -> None:
        """Show "none" as the reference (after a refused labels layer) without a change notice."""
        self.labels_combo.blockSignals(True)
        self.labels_combo.setCurrentIndex(0)
        self.labels_combo.blockSignals(False)

    # ------------------------------------------------------------------ the session's inputs
    def apply_inputs(self) -> None:
        """Make the chosen layers the session's volume and labels (one announcement)."""
        if self.owner.closing:
            return
        session = self.session
        with session.batch():
            ct = self.ct_layer()
            if ct is None:
                self._volume_key = self._mapping_warned = None
                session.clear_volume()
                return
            self._auto_load(ct)
            key = (ct.unique_id, id(ct.data))
            volume = session.volume
            try:
                if key != self._volume_key or volume is None:
                    volume = meta.volume_from_layer(ct.data, ct.scale, ct.metadata, ct.name)
                    self._volume_key = key
                labels_layer = self.labels_layer()
                labels = None if labels_layer is None else np.asarray(labels_layer.data)
                try:
                    session.set_volume(volume, labels, labels_layer.name if labels_layer is not None else "",
                                       layer=ct, label_names=meta.label_names(labels_layer))
                except AdvsegError as exc:
                    self.owner.notify_error(exc)
                    self.show_label_free()
                    session.set_volume(volume, None, layer=ct)
            except Exception as exc:
                self.owner.notify_error(exc)
                self._volume_key = None
                session.clear_volume()
        self._warn_class_mapping()

    def _warn_class_mapping(self) -> None:
        """Say once, as a warning notification, how the labels are mapped into the target's classes (the
        command line's warning line); the Data tab's status line keeps saying it while it holds."""
        message = self.session.class_mapping_message()
        if message and message != self._mapping_warned:
            self.owner.notify_warning(message)
        self._mapping_warned = message

    def _auto_load(self, ct) -> None:
        """Load the target and generator named in a CT layer's metadata (the sample data has both)."""
        metadata = ct.metadata or {}
        session = self.session
        for key, current, load in ((meta.TARGET, session.target_path, session.load_target),
                                   (meta.GENERATOR, session.generator_path, session.load_generator)):
            path = metadata.get(key)
            if not path or (ct.unique_id, key) in self._auto_loaded:
                continue
            self._auto_loaded.add((ct.unique_id, key))
            if current and Path(current) == Path(path):
                continue
            try:
                load(path)
            except Exception as exc:
                self.owner.notify_error(exc)

    def load_target_file(self, path) -> bool:
        """Load a target network file as current; an error becomes a notification. True on success."""
        session = self.session
        had_generator = session.generator is not None
        with session.batch():
            try:
                session.load_target(path)
            except Exception as exc:
                self.owner.notify_error(exc)
                return False
            if had_generator and session.generator is None:
                self.owner.notify_info("The current generator was trained against other classes or intensities "
                                       "than this target: train a new one or load a matching one.")
            for note in session.target.notes:  # what was assumed for want of a declaration, as the CLI warns
                self.owner.notify_warning(note)
            self.apply_inputs()  # the labels are checked against the new class names
        return True

    def load_generator_file(self, path) -> bool:
        """Load a trained generator checkpoint as current. True on success."""
        from napari_advseg.attack.checkpoint import window_mismatch

        try:
            self.session.load_generator(path)
        except Exception as exc:
            self.owner.notify_error(exc)
            return False
        note = window_mismatch(self.session.generator_meta, self.session.target)
        if note is not None:
            self.owner.notify_warning(f"{path}: {note}")
        return True

    def set_device(self, name: str) -> None:
        """Move the target and the generator to another device (an error keeps the old one)."""
        try:
            self.session.set_device(name)
        except Exception as exc:
            self.owner.notify_error(exc)
            self.show_session()

    # ------------------------------------------------------------------ files
    def _browse_target(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Target segmentation model", "", MODEL_FILTER)
        if path:
            self.load_target_file(path)

    def _browse_target_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "nnU-Net trained-model folder or MONAI bundle")
        if path:
            self.load_target_file(path)

    def _browse_generator(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Trained generator checkpoint", "", MODEL_FILTER)
        if path:
            self.load_generator_file(path)

    def show_session(self, *_args) -> None:
        """Show the session's files, device, normalisation and the case's size."""
        if self.owner.closing:
            return
        session = self.session
        for edit, path in ((self.target_edit, session.target_path), (self.generator_edit, session.generator_path)):
            edit.setText(path or "")
            edit.setToolTip(path or "")
        if session.generator is not None and not session.generator_path:
            self.generator_edit.setText("(trained in this session)")
        index = self.device_combo.findText(session.device)
        if index >= 0:
            self.device_combo.setCurrentIndex(index)
        self.normalisation_label.setText(session.normalisation_text())
        volume = session.volume
        if volume is None:
            self.info_label.setText("Open a CT volume (File > Open, or File > Open Sample > napari-advseg).")
            return
        z, y, x = volume.shape
        dz, dy, dx = volume.spacing
        reference = "reference labels" if session.labels is not None else "label-free (target's prediction)"
        generator = (f"generator: {session.generator_step} training steps"
                     if session.generator is not None else "no generator yet: train one (Train tab)")
        mapping = session.class_mapping_message()
        self.info_label.setText(f"{z} slices of {y} x {x} voxels, {dz:g} x {dy:g} x {dx:g} mm; {reference}; "
                                f"{generator}" + (f"\nWarning: {mapping}" if mapping else ""))
