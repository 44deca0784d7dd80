"""The Explore tab's compare view: before | after side by side in napari's grid mode.

Left: the CT with the reference outline and the clean segmentation; right:
the adversarial image with the adversarial segmentation, the warped
reference and whatever else of the attack is switched on. Both cells share
napari's one camera and slice, so they pan, zoom and scroll together.

napari's grid puts ``stride`` consecutive layers of the layer list in each
cell and leaves hidden layers out, so the view orders the layers (see
:func:`~._layers.compare_order`) and orders them again whenever a layer is
shown, hidden, added or removed. Other layers are hidden on entering (they
would cover the CT on the left) and shown again on leaving, which also
restores the grid settings and the order of the other layers.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, QTimer

from napari_advseg.widgets import _layers as L

SPACER = "compare view spacer"
"""An empty hidden layer the view adds when too few hidden layers fill the left cell (removed on leaving)."""


def _grid(viewer):
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


class CompareView(QObject):
    """Switches ``viewer`` between the single overlay and the side-by-side compare view.

    ``ct_layer()`` returns the CT layer the Explore tab attacks (None: no compare view). Layers are
    followed by name: a plugin's viewer is napari's proxy, which wraps each layer anew on every access.
    """

    def __init__(self, viewer, ct_layer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.ct_layer = ct_layer
        self.enabled = False
        self._grid_before: tuple | None = None
        self._order_before: list[str] | None = None
        self._shown_again: list = []  # layers hidden on entering, shown again on leaving
        self._hidden_again: list = []  # layers shown on entering, hidden again on leaving
        self._watched: list = []
        self._arranging = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.arrange)

    # ------------------------------------------------------------------ switching
    def set_enabled(self, on: bool) -> bool:
        """Compare (True) or single overlay (False); returns whether the compare view is on."""
        if on == self.enabled:
            return self.enabled
        if on:
            ct = self._ct_name()
            if ct is None:
                return False
            grid = _grid(self.viewer)
            self._grid_before = (grid.enabled, grid.stride, tuple(grid.shape), grid.spacing)
            self._order_before = [layer.name for layer in self.viewer.layers]
            ours = {*L.AFTER, *L.BEFORE, ct}
            layers = self.viewer.layers
            self._shown_again = [layer.name for layer in layers if layer.name not in ours and layer.visible]
            self._hidden_again = [name for name in [ct] + self._named(L.BEFORE) if not layers[name].visible]
            for name in self._shown_again:
                layers[name].visible = False
            for name in self._hidden_again:
                layers[name].visible = True
            self.enabled = True
            self._watch()
            self.arrange()
        else:
            self.enabled = False
            self._timer.stop()
            self._unwatch()
            layers = self.viewer.layers
            for name in self._hidden_again:
                if name in layers:
                    layers[name].visible = False
            for name in self._shown_again:
                if name in layers:
                    layers[name].visible = True
            self._shown_again, self._hidden_again = [], []
            if SPACER in self.viewer.layers and L.is_output(self.viewer.layers[SPACER]):
                self.viewer.layers.remove(SPACER)
            grid = _grid(self.viewer)
            if self._grid_before is not None:
                grid.enabled, grid.stride, grid.shape, grid.spacing = self._grid_before
            else:
                grid.enabled = False
            L.put_in_order(self.viewer, L.single_order(self.viewer, self._order_before))
        return self.enabled

    def shutdown(self) -> None:
        """The dock is closing: back to the single overlay (if the viewer is still there), stop listening."""
        self._timer.stop()
        if self.enabled:
            try:
                self.set_enabled(False)
            except (RuntimeError, KeyError, ValueError):  # the viewer or its layers are gone
                pass
        self._unwatch()

    def _named(self, names) -> list[str]:
        return [name for name in names if name in self.viewer.layers and L.is_output(self.viewer.layers[name])]

    def _ct_name(self) -> str | None:
        ct = self.ct_layer()
        return ct.name if ct is not None and ct.name in self.viewer.layers else None

    # ------------------------------------------------------------------ layout
    def arrange(self) -> None:
        """Order the layers for the two cells and set the grid (the compare view must be on)."""
        if not self.enabled or self._arranging:
            return
        ct = self._ct_name()
        if ct is None:
            self.set_enabled(False)
            return
        self._arranging = True
        try:
            order, stride = L.compare_order(self.viewer, ct)
            while stride == 0:  # too few hidden layers to fill the left cell: add empty hidden ones
                self.viewer.add_image(np.zeros((1, 1, 1), np.float32), name=SPACER, visible=False,
                                      metadata=L.output_metadata(), scale=tuple(self.viewer.layers[ct].scale))
                order, stride = L.compare_order(self.viewer, ct)
            L.put_in_order(self.viewer, order)
            grid = _grid(self.viewer)
            if grid.stride != stride:
                grid.stride = stride
            if tuple(grid.shape) != (1, 2):
                grid.shape = (1, 2)
            if grid.spacing == 0:
                grid.spacing = 0.02
            grid.enabled = True
        finally:
            self._arranging = False

    def _schedule(self, *_args) -> None:
        if self.enabled and not self._arranging:
            self._timer.start()

    def _inserted(self, event) -> None:
        layer = getattr(event, "value", None)
        ours = {*L.AFTER, *L.BEFORE, SPACER}
        if layer is not None and layer.name not in ours and layer.visible and not self._arranging:
            layer.visible = False  # a new volume over the CT would hide the "before"; shown again on leaving
            self._shown_again.append(layer.name)
        if layer is not None:
            layer.events.visible.connect(self._schedule)
            self._watched.append((layer.events.visible, self._schedule))
        self._schedule()

    def _watch(self) -> None:
        self._unwatch()
        events = self.viewer.layers.events
        for emitter, slot in ((events.inserted, self._inserted), (events.removed, self._removed)):
            emitter.connect(slot)
            self._watched.append((emitter, slot))
        for layer in self.viewer.layers:
            layer.events.visible.connect(self._schedule)
            self._watched.append((layer.events.visible, self._schedule))

    def _removed(self, *_args) -> None:
        self._schedule()

    def _unwatch(self) -> None:
        for emitter, slot in self._watched:
            try:
                emitter.disconnect(slot)
            except Exception:  # the layer or viewer is gone
                pass
        self._watched = []
