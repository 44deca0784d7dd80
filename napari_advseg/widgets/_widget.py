"""AttackWidget: the plugin's dock widget (tabs Data and model, Train, Explore, Export).

The widget is thin: :class:`~._model.AttackSession` holds the state, the core
modules do the work, and the tabs only collect settings and show results.
Closing the widget, removing its dock or closing napari stops every
background job and waits for it (a training job saves its checkpoint first).
"""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QMessageBox, QTabWidget, QVBoxLayout, QWidget

from napari_advseg._napari import layers as meta
from napari_advseg.errors import AdvsegError, first_line
from napari_advseg.widgets._data import DataPanel
from napari_advseg.widgets._explore import ExplorePanel
from napari_advseg.widgets._export import ExportPanel
from napari_advseg.widgets._model import AttackSession
from napari_advseg.widgets._train import TrainPanel
from napari_advseg.widgets._workers import JobRegistry, WorkerError

CLOSE_TIMEOUT_S = 300.0
"""How long closing waits for a running training step to finish and its checkpoint to be written."""


def _stop_jobs(jobs: JobRegistry, *_args) -> None:
    """Last resort when the widget's C++ object is destroyed without a close."""
    if not jobs.stop_all(CLOSE_TIMEOUT_S):
        warnings.warn("napari-advseg: a background job did not stop in time", RuntimeWarning, stacklevel=1)


class AttackWidget(QWidget):
    """Attack a segmentation network with a learnt deformation and bias field (Chen et al. 2019).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose Image / Labels layers are the input and which shows
        the results.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = AttackSession()
        self.jobs = JobRegistry()
        self.closing = False
        self._auto_loaded: set[tuple] = set()
        self._volume_key: tuple | None = None
        self._watched: list = []  # weak references to the ancestors whose events we filter
        self._docked = False
        self._shown_slice: int | None = None

        self.data = DataPanel(napari_viewer)
        self.train = TrainPanel(self)
        self.explore = ExplorePanel(self)
        self.export = ExportPanel(self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.data, "Data and model")
        self.tabs.addTab(self.train, "Train")
        self.tabs.addTab(self.explore, "Explore")
        self.tabs.addTab(self.export, "Export")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(360)

        self.data.inputs_changed.connect(self._inputs_changed)
        self.data.target_chosen.connect(self.load_target_file)
        self.data.generator_chosen.connect(self.load_generator_file)
        self.data.device_chosen.connect(self.set_device)
        napari_viewer.layers.events.inserted.connect(self._layers_changed)
        napari_viewer.layers.events.removed.connect(self._layers_changed)
        napari_viewer.dims.events.current_step.connect(self._slice_changed)
        self.destroyed.connect(lambda *_a, jobs=self.jobs: _stop_jobs(jobs))
        self._inputs_changed()

    # ------------------------------------------------------------------ messages
    def notify_error(self, error) -> None:
        """Show an error as a napari notification (never raise it into Qt)."""
        from napari.utils.notifications import show_error

        if isinstance(error, (AdvsegError, WorkerError)):  # already one readable line
            text = str(error)
        else:
            text = first_line(error)
        show_error(text)

    def notify_info(self, text: str) -> None:
        from napari.utils.notifications import show_info

        show_info(text)

    def _confirm_overwrite(self, paths) -> bool:
        """Ask whether existing files may be replaced (tests replace this method)."""
        names = "\n".join(str(Path(p)) for p in list(paths)[:8])
        more = len(list(paths)) - 8
        text = f"These files exist already:\n{names}" + (f"\n… and {more} more" if more > 0 else "")
        answer = QMessageBox.question(self, "Replace files?", text + "\n\nReplace them?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    # ------------------------------------------------------------------ inputs and models
    def _layers_changed(self, *_args) -> None:
        if not self.closing:
            self.data.refresh_layers()

    def _slice_changed(self, *_args) -> None:
        if self.closing:
            return
        z = self.current_slice()
        if z != self._shown_slice:  # other dims (or a new layer's extent) leave the slice alone
            self._shown_slice = z
            self.explore.request()

    def current_slice(self) -> int:
        """Index of the axial slice the viewer shows (in the chosen CT's voxels)."""
        volume = self.session.volume
        ct = self.data.ct_layer()
        z = int(self.viewer.dims.current_step[0])
        if ct is not None:
            try:
                point = np.asarray(self.viewer.dims.point, dtype=float)[-ct.ndim:]
                z = int(np.round(np.asarray(ct.world_to_data(point))[0]))
            except Exception:  # unusual layer transforms: fall back to the dims step
                pass
        top = (volume.n_slices - 1) if volume is not None else max(z, 0)
        return int(np.clip(z, 0, top))

    def _inputs_changed(self) -> None:
        if self.closing:
            return
        ct = self.data.ct_layer()
        if ct is None:
            self._volume_key = None
            self.session.clear_volume()
            self.model_changed()
            return
        self._auto_load(ct)
        key = (ct.unique_id, id(ct.data))
        volume = self.session.volume
        try:
            if key != self._volume_key or volume is None:
                volume = meta.volume_from_layer(ct.data, ct.scale, ct.metadata, ct.name)
                self._volume_key = key
            labels_layer = self.data.labels_layer()
            labels = None if labels_layer is None else np.asarray(labels_layer.data)
            try:
                self.session.set_volume(volume, labels, labels_layer.name if labels_layer is not None else "")
            except AdvsegError as exc:
                self.notify_error(exc)
                self.data.show_label_free()
                self.session.set_volume(volume, None)
        except Exception as exc:
            self.notify_error(exc)
            self._volume_key = None
            self.session.clear_volume()
        self.model_changed()

    def _auto_load(self, ct) -> None:
        """Load the target and generator named in a CT layer's metadata (the sample data has both)."""
        metadata = ct.metadata or {}
        for key, current, load in ((meta.TARGET, self.session.target_path, self.session.load_target),
                                   (meta.GENERATOR, self.session.generator_path, self.session.load_generator)):
            path = metadata.get(key)
            if not path or (ct.unique_id, key) in self._auto_loaded:
                continue
            self._auto_loaded.add((ct.unique_id, key))
            if current and Path(current) == Path(path):
                continue
            try:
                load(path)
            except Exception as exc:
                self.notify_error(exc)

    def load_target_file(self, path) -> bool:
        """Load a target network file as current; an error becomes a notification. True on success."""
        had_generator = self.session.generator is not None
        try:
            self.session.load_target(path)
        except Exception as exc:
            self.notify_error(exc)
            return False
        if had_generator and self.session.generator is None:
            self.notify_info("The current generator was trained against other classes than this target: "
                             "train a new one or load a matching one.")
        self._volume_key = None if self.session.volume is None else self._volume_key
        self._inputs_changed()  # the labels are checked against the new class names
        self.train.set_organs(self.session.class_names[1:])
        return True

    def load_generator_file(self, path) -> bool:
        """Load a trained generator checkpoint as current. True on success."""
        try:
            self.session.load_generator(path)
        except Exception as exc:
            self.notify_error(exc)
            return False
        self.model_changed()
        return True

    def adopt_generator(self, path) -> None:
        """Make a just-trained generator (its checkpoint) the current one for Explore and Export."""
        if self.load_generator_file(path):
            self.explore.request()

    def resume_from(self, path) -> None:
        """Continue training from a generator checkpoint (see the Train tab)."""
        self.train.resume_from(path)

    def set_device(self, name: str) -> None:
        try:
            self.session.set_device(name)
        except Exception as exc:
            self.notify_error(exc)
        self.model_changed()

    def model_changed(self) -> None:
        """Tell every tab that the case, target or generator changed."""
        if self.closing:
            return
        self.data.show_session(self.session)
        session = self.session
        if self.train.job is None and session.config is not None:  # the current generator's training
            self.train.plot.set_history(session.generator_history, session.config.gamma)
        self.explore.model_changed()
        self.export.model_changed()

    # ------------------------------------------------------------------ closing
    def shutdown(self) -> None:
        """Stop and join every background job (training saves its checkpoint); idempotent."""
        if self.closing:
            return
        self.closing = True
        try:
            self.explore._timer.stop()
            self.train.plot._timer.stop()
        except RuntimeError:  # the Qt objects are deleted already
            pass
        events = self.viewer.layers.events
        for emitter, slot in ((events.inserted, self._layers_changed), (events.removed, self._layers_changed),
                              (self.viewer.dims.events.current_step, self._slice_changed)):
            try:
                emitter.disconnect(slot)
            except Exception:  # already gone with the viewer
                pass
        for ref in self._watched:
            widget = ref()
            if widget is not None:
                try:
                    widget.removeEventFilter(self)
                except RuntimeError:  # already deleted
                    pass
        self._watched = []
        if not self.jobs.stop_all(CLOSE_TIMEOUT_S):
            warnings.warn("napari-advseg: a background job did not stop in time", RuntimeWarning, stacklevel=2)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event) -> bool:
        if event.type() == QEvent.ParentChange:
            if self.parent() is None:
                if self._docked:  # the dock was removed: the widget is gone for the user
                    self.shutdown()
            else:
                self._docked = True
                self._watch_ancestors()
        return super().event(event)

    def _ancestors(self) -> list:
        chain, widget = [], self.parentWidget()
        while widget is not None:
            chain.append(widget)
            widget = widget.parentWidget()
        return chain

    def _watch_ancestors(self) -> None:
        """Filter the events of every ancestor: re-parenting of any (the dock into the window) and
        the top-level window's Close. Only weak references are kept."""
        if self.closing:
            return
        for ref in self._watched:
            widget = ref()
            if widget is not None:
                try:
                    widget.removeEventFilter(self)
                except RuntimeError:
                    pass
        chain = self._ancestors()
        for widget in chain:
            widget.installEventFilter(self)
        self._watched = [weakref.ref(widget) for widget in chain]

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if kind == QEvent.ParentChange:  # e.g. the dock widget went into napari's window
            self._watch_ancestors()
        elif kind == QEvent.Close and not self.closing and obj.isWindow() and obj is self.window():
            if event.spontaneous():
                # The user clicked the window's close button: napari may still ask for
                # confirmation, so look again once the close has been decided.
                QTimer.singleShot(0, self._close_if_hidden)
            else:
                self.shutdown()
        return False

    def _close_if_hidden(self) -> None:
        try:
            window = self.window()
            if window is self or not window.isVisible():
                self.shutdown()
        except RuntimeError:  # the window is gone already
            self.shutdown()
