"""Open napari with the sample phantom, the attack widget and one explored slice.

    python -m napari_advseg.widgets.demo

The sample data (CT, reference labels, the target U-Net and a trained
generator) come from the repository's ``sample_data/``, installed as ``napari_advseg/sample_data/``
(``advseg make-sample`` builds them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

PLUGIN = "napari-advseg"
SAMPLE = "abdomen_phantom"
WIDGET = "Adversarial attack"

QT5_NOTICE = "napari support for the PyQt5 backend is deprecated"
"""The start of napari's notice about the Qt binding, which would cover the demo's canvas."""


@contextmanager
def without_qt5_notice() -> Iterator[None]:
    """Open napari's window inside this block to keep its PyQt5 deprecation notice off the canvas.

    napari sends that notice as a notification (not a Python warning) when
    its window first appears, and its own listeners come before any other,
    so the block holds back every notification (the notification manager
    still records them all) and afterwards sends on each one but that
    notice. With PyQt6 or PySide installed napari does not send it.
    """
    from napari.utils.notifications import notification_manager

    seen = len(notification_manager.records)
    with notification_manager.notification_ready.blocker():
        yield
    for notification in list(notification_manager.records[seen:]):
        if not str(notification.message).startswith(QT5_NOTICE):
            notification_manager.notification_ready(notification)


def organ_slice(labels: np.ndarray) -> int:
    """The middle one of the slices that show any organ (the middle slice without any)."""
    from napari_advseg.data.slices import organ_slices

    slices = organ_slices(labels)
    if slices.size == 0:
        return int(labels.shape[0] // 2)
    return int(slices[slices.size // 2])


def build_scene(viewer):
    """Open the sample and the dock widget in ``viewer``; show the Explore tab on an organ slice.

    Returns
    -------
    AttackWidget
    """
    viewer.open_sample(PLUGIN, SAMPLE)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    labels = widget.session.labels
    if labels is None and widget.data.labels_layer() is not None:
        labels = np.asarray(widget.data.labels_layer().data)
    if labels is not None:
        viewer.dims.set_current_step(0, organ_slice(labels))
    reference = widget.data.labels_layer()
    if reference is not None:  # outlines only: the overlays of the attack stay readable
        reference.contour = 1
        reference.visible = False
    widget.tabs.setCurrentWidget(widget.explore)
    widget.explore.render_now()
    from napari_advseg.widgets._layers import ADVERSARIAL_SEG

    if ADVERSARIAL_SEG in viewer.layers:  # its controls (opacity, contour) are the useful ones here
        viewer.layers.selection.active = viewer.layers[ADVERSARIAL_SEG]
    return widget


def main() -> None:
    """Start napari with the demo scene."""
    import napari

    with without_qt5_notice():
        viewer = napari.Viewer(title="napari-advseg demo")
    build_scene(viewer)
    napari.run()


if __name__ == "__main__":
    main()
