"""AttackWidget: the plugin's dock widget (tabs Data and model, Train, Explore, Harden, Export).

Above the tabs, the generator list (:mod:`._generators`): the shipped
generator, those loaded and the runs trained since the viewer opened; the one
chosen is what Explore and Export use.

The widget is thin: it builds the tabs, owns the :class:`~._model.AttackSession`
(the evented state the tabs subscribe to; no tab calls into another) and the
job registry, wires the viewer's events and shuts down. The core modules do
the work; the tabs collect settings and show results.

What a tab may use of the widget (its ``owner``): ``session``, ``jobs``,
``viewer``, ``closing``, ``notify_error``, ``notify_warning``, ``notify_info``,
``_confirm_overwrite`` and ``current_slice``.

Closing the widget, removing its dock or closing napari stops every
background job and waits for it (a training job saves its checkpoint first),
and every tab drops its session subscriptions.
"""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QMessageBox, QTabWidget, QVBoxLayout, QWidget

from napari_advseg.errors import AdvsegError, first_line, path_last
from napari_advseg.widgets._data import DataPanel
from napari_advseg.widgets._explore import ExplorePanel
from napari_advseg.widgets._export import ExportPanel
from napari_advseg.widgets._generators import GeneratorList
from napari_advseg.widgets._harden import HardenPanel
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
        self._watched: list = []  # weak references to the ancestors whose events we filter
        self._docked = False
        self._shown_slice: int | None = None

        self.generators = GeneratorList(self)
        self.data = DataPanel(self)
        self.train = TrainPanel(self)
        self.explore = ExplorePanel(self)
        self.export = ExportPanel(self)
        self.harden = HardenPanel(self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.data, "Data and model")
        self.tabs.addTab(self.train, "Train")
        self.tabs.addTab(self.explore, "Explore")
        self.tabs.addTab(self.harden, "Harden")
        self.tabs.addTab(self.export, "Export")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.generators)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(360)

        napari_viewer.layers.events.inserted.connect(self._layers_changed)
        napari_viewer.layers.events.removed.connect(self._layers_changed)
        napari_viewer.dims.events.current_step.connect(self._slice_changed)
        self.destroyed.connect(lambda *_a, jobs=self.jobs: _stop_jobs(jobs))
        self.data.apply_inputs()  # every tab listens now: the first choice reaches them all

    @property
    def panels(self) -> tuple:
        return (self.generators, self.data, self.train, self.explore, self.harden, self.export)

    # ------------------------------------------------------------------ messages
    def notify_error(self, error) -> None:
        """Show an error as a napari notification (never raise it into Qt): the problem first, a file it
        names after it (:func:`~napari_advseg.errors.path_last`), so a narrow toast keeps the cause."""
        from napari.utils.notifications import show_error

        if isinstance(error, (AdvsegError, WorkerError)):  # already one readable line
            text = path_last(error)
        else:
            text = path_last(first_line(error))
        show_error(text)

    def notify_warning(self, text: str) -> None:
        """Show a warning (what the command line prints as ``advseg: warning: ...``) as a napari notification."""
        from napari.utils.notifications import show_warning

        show_warning(path_last(text))

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

    # ------------------------------------------------------------------ viewer events
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
        volume, ct = self.session.volume, self.session.layer
        z = int(self.viewer.dims.current_step[0])
        if ct is not None:
            try:
                point = np.asarray(self.viewer.dims.point, dtype=float)[-ct.ndim:]
                z = int(np.round(np.asarray(ct.world_to_data(point))[0]))
            except Exception:  # unusual layer transforms: fall back to the dims step
                pass
        top = (volume.n_slices - 1) if volume is not None else max(z, 0)
        return int(np.clip(z, 0, top))

    # ------------------------------------------------------------------ actions (scripts, tests, bench)
    def load_target_file(self, path) -> bool:
        """Load a target network file as current; an error becomes a notification. True on success."""
        return self.data.load_target_file(path)

    def load_generator_file(self, path) -> bool:
        """Load a trained generator checkpoint as current. True on success."""
        return self.data.load_generator_file(path)

    def set_device(self, name: str) -> None:
        self.data.set_device(name)

    def resume_from(self, path) -> None:
        """Continue training from a generator checkpoint (see the Train tab)."""
        self.train.resume_from(path)

    # ------------------------------------------------------------------ closing
    def shutdown(self) -> None:
        """Stop and join every background job (training saves its checkpoint); idempotent."""
        if self.closing:
            return
        self.closing = True
        for panel in self.panels:  # drop the session subscriptions and pending timers
            try:
                panel.shutdown()
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
