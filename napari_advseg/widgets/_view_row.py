"""The Explore tab's view controls: compare view, axial / coronal / sagittal, what is drawn, and the legend."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_advseg.widgets import _layers as L

TOGGLES = (
    (L.GRID, "deformation grid", True,
     "The lines of a regular grid moved as the deformation moves the tissue (cyan). Without a "
     "deformation the lines are straight; where they bend, the anatomy was pushed."),
    (L.MAGNITUDE, "displacement (mm)", False,
     "How far the deformation moved the tissue at each point, in millimetres (transparent: not at all; "
     "cyan to white: the most), inside the body; the colour bar gives the scale."),
    (L.DEFORMATION, "arrows", False,
     "Arrows from where tissue was to where the adversarial image shows it (cyan), drawn longer than "
     "they are by the factor in the heading."),
    (L.BIAS, "bias field", False,
     "The intensity change added to the slice, inside the body, in HU (a multiplicative bias in %): "
     "blue darker, orange brighter, transparent unchanged; the colour bar gives the scale."),
    (L.CHANGES, "label changes", False,
     "White: pixels where the network's label differs between the clean and the adversarial slice."),
)
"""(layer, check box text, shown at first, tooltip) of each overlay the row switches."""


def _swatch(rgba) -> str:
    r, g, b = (int(round(255 * c)) for c in rgba[:3])
    return f'<span style="color: rgb({r},{g},{b});">&#9632;</span>'


LEGEND = (f"fill = the network's segmentation; outline = the reference (on the right: warped with the "
          f"image); {_swatch(L.DEFORMATION_RGB)} cyan = deformation; {_swatch(L.CHANGES_RGBA)} white = label "
          f"changed. Organ colours: the table.")


class ViewRow(QWidget):
    """Compare button, view buttons, overlay switches and a legend line.

    Parameters
    ----------
    on_compare : callable(bool) -> bool
        Switch the compare view; returns whether it is on.
    on_view : callable(str)
        Show "axial", "coronal" or "sagittal".
    on_toggle : callable(str, bool)
        Show or hide the overlay layer of that name.
    """

    def __init__(self, on_compare: Callable[[bool], bool], on_view: Callable[[str], None],
                 on_toggle: Callable[[str, bool], None], parent=None):
        super().__init__(parent)
        self._on_compare = on_compare
        self.compare = QPushButton("Compare before | after")
        self.compare.setCheckable(True)
        self.compare.setToolTip("Side by side: the clean CT with the clean segmentation (left) and the "
                                "adversarial image with its segmentation (right), same slice and zoom. "
                                "Click again for the single overlay.")
        self.compare.toggled.connect(self._compare_toggled)
        self.views = {}
        views = QHBoxLayout()
        views.addWidget(self.compare, 2)
        for name, tip in (("axial", "Axial slices (the view the attack works in)"),
                          ("coronal", "Coronal reformat, head up, the patient's right on the left"),
                          ("sagittal", "Sagittal reformat, head up, anterior on the left")):
            button = QPushButton(name)
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, view=name: on_view(view))
            views.addWidget(button, 1)
            self.views[name] = button
        self.toggles: dict[str, QCheckBox] = {}
        boxes = QGridLayout()
        boxes.setContentsMargins(0, 0, 0, 0)
        boxes.setVerticalSpacing(0)
        for i, (layer, text, shown, tip) in enumerate(TOGGLES):
            box = QCheckBox(text)
            box.setChecked(shown)
            box.setToolTip(tip)
            box.toggled.connect(lambda on, name=layer: on_toggle(name, on))
            boxes.addWidget(box, i // 3, i % 3)
            self.toggles[layer] = box
        self.legend = QLabel(LEGEND)
        self.legend.setWordWrap(True)
        self.legend.setToolTip("The layer names say the same: '(fill)' is a network output, '(outline)' a "
                               "reference. The warped reference is the reference moved with the deformation; "
                               "the adversarial Dice is measured against it.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(views)
        layout.addLayout(boxes)
        layout.addWidget(self.legend)

    def wanted(self, layer: str) -> bool:
        """Whether the overlay ``layer`` is switched on (True for layers without a switch)."""
        box = self.toggles.get(layer)
        return True if box is None else box.isChecked()

    def mirror(self, layer: str, visible: bool) -> None:
        """Set a switch to a layer's visibility (changed in napari's layer list) without acting on it."""
        box = self.toggles.get(layer)
        if box is not None and box.isChecked() != visible:
            box.blockSignals(True)
            box.setChecked(visible)
            box.blockSignals(False)

    def show_compare(self, on: bool) -> None:
        """Set the compare button to the view's state without acting on it."""
        if self.compare.isChecked() != on:
            self.compare.blockSignals(True)
            self.compare.setChecked(on)
            self.compare.blockSignals(False)

    def _compare_toggled(self, on: bool) -> None:
        self.show_compare(self._on_compare(on))
