"""Axial, coronal and sagittal views of the CT in the radiological convention.

The plugin's volumes are canonical ``(Z, Y, X)`` arrays: Z from inferior to
superior, Y from anterior to posterior, X from the patient's right to left
(:mod:`napari_advseg._napari.reader`). napari draws the first displayed axis
downwards, which is right for an axial slice (anterior up, the patient's
right on the left of the screen) but puts the feet at the top of a coronal
or sagittal view. :class:`RadiologicalView` turns the camera's vertical axis
upwards whenever Z is the vertical axis on screen, so the head is up; the
horizontal axes are already as radiologists read them (coronal: the
patient's right on the left; sagittal: anterior on the left).
"""

from __future__ import annotations

VIEWS = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
"""The last three axes' order in ``viewer.dims.order`` for each view (the first one is sliced)."""


def view_order(ndim: int, view: str) -> tuple[int, ...]:
    """``viewer.dims.order`` that shows ``view`` of a volume whose last three axes are Z, Y, X."""
    lead = ndim - 3
    return tuple(range(lead)) + tuple(lead + axis for axis in VIEWS[view])


def vertical_axis(order, ndisplay: int) -> int | None:
    """The axis drawn vertically (2D display), None in 3D."""
    return None if ndisplay != 2 else int(order[-2])


def _camera(viewer):
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


class RadiologicalView:
    """Keeps the head up in coronal and sagittal views of ``viewer`` (until :meth:`disconnect`)."""

    def __init__(self, viewer):
        self.viewer = viewer
        self._connected = []
        dims = viewer.dims
        for emitter in (dims.events.order, dims.events.ndisplay, dims.events.ndim):
            emitter.connect(self.update)
            self._connected.append(emitter)
        self.update()

    def current(self) -> str | None:
        """The view shown ("axial", "coronal", "sagittal"), None for another order or in 3D."""
        dims = self.viewer.dims
        if dims.ndim < 3 or dims.ndisplay != 2:
            return None
        lead = dims.ndim - 3
        axes = tuple(int(a) - lead for a in dims.order[-3:])
        for name, order in VIEWS.items():
            if axes == order:
                return name
        return None

    def show(self, view: str) -> None:
        """Show ``view`` ("axial", "coronal" or "sagittal") in 2D, the whole slice in the canvas."""
        dims = self.viewer.dims
        if dims.ndim < 3:
            return
        if dims.ndisplay != 2:
            dims.ndisplay = 2
        dims.order = view_order(dims.ndim, view)
        self.update()
        self.viewer.reset_view()

    def update(self, *_args) -> None:
        dims, camera = self.viewer.dims, _camera(self.viewer)
        if dims.ndim < 3:
            return
        vertical = vertical_axis(dims.order, dims.ndisplay)
        up = vertical is not None and vertical == dims.ndim - 3  # Z on the vertical axis: superior up
        wanted = ("up" if up else "down", "right")
        if tuple(str(v) for v in camera.orientation2d) != wanted:
            camera.orientation2d = wanted

    def disconnect(self) -> None:
        for emitter in self._connected:
            try:
                emitter.disconnect(self.update)
            except Exception:  # the viewer is gone already
                pass
        self._connected = []
