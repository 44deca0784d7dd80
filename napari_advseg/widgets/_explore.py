"""The "Explore" tab: latent sliders on the shown slice, overlays, per-organ Dice, whole volume.

Renders run in two stages in workers (:mod:`._staged`): the fields and the
adversarial image first, their layers repainted at once, then the target's
segmentation and the Dice table. Each stage keeps only the latest request,
so the view follows the slider rather than working through a queue; a
segmentation is shown only over the image of its own code (a stale one is
dropped, and the previous one is hidden while its successor is computed).
With a volumetric (3D) target stage one runs no network at all: the clean
segmentation and the reference outlines that need it come with stage two,
which segments the slab around the slice (:mod:`napari_advseg.attack.explore`).
The tab follows the session (a new case, target or generator rebuilds the
sliders and re-renders) and records its sliders, switches and strength
("Set rho", :mod:`._strength`) in the session's ``latent`` choice, which the
Export tab uses. The per-organ table is :mod:`._dice_table`, the "Apply to
whole volume" row :mod:`._volume_row`; the compare view, the view buttons,
the overlay switches and the legend :mod:`._view_row` and :mod:`._compare`;
the arrays drawn over the slice :mod:`._overlays`.

Overlays that are hidden are not recomputed; switching one on draws it from
the result on screen.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSlider,
                            QVBoxLayout, QWidget)

from napari_advseg.organs import class_colours
from napari_advseg.widgets import _layers as L
from napari_advseg.widgets import _overlays as O
from napari_advseg.widgets._compare import CompareView
from napari_advseg.widgets._dice_table import DiceTable
from napari_advseg.widgets._effects import EffectsProbe
from napari_advseg.widgets._model import LatentChoice
from napari_advseg.widgets._sliders import LatentSliders
from napari_advseg.widgets._staged import StagedRenders
from napari_advseg.widgets._strength import StrengthPanel
from napari_advseg.widgets._subscriptions import Subscriptions
from napari_advseg.widgets._orientation import RadiologicalView
from napari_advseg.widgets._tasks import ARROW_SPACING, SliceRequest
from napari_advseg.widgets._view_row import ViewRow
from napari_advseg.widgets._volume_row import VolumeRow

TIPS = {
    "deformation": "Apply the deformation: tissue moved by a smooth displacement field (the code z_phi)",
    "bias": "Apply the bias field: a smooth change of the intensities, in HU (the code z_b)",
    "temperature": "Multiplies every slider: the code is the encoder's mean + temperature x slider x SD. "
                   "1: as the sliders say; 0: the mean whatever the sliders; 2: twice as far from it",
    "z_phi": "z_phi, the deformation code: a few numbers the generator turns into a smooth displacement field. "
             "The encoder proposes a mean and a spread (SD) for each number from the slice; a slider sets "
             "how many SD from the mean the number is",
    "z_b": "z_b, the bias code: a few numbers the generator turns into a smooth intensity change (the bias "
           "field). The encoder proposes a mean and a spread (SD) for each number from the slice; a slider "
           "sets how many SD from the mean the number is",
    "rho": "rho: how much the attack changes the slice, the size of the change divided by the size of the "
           "slice (relative L2 norm, Eq. 7 of Chen et al.); 0.05 is a 5 % change. Folded pixels: where the "
           "deformation folds tissue over itself, which real anatomy cannot do",
}
"""Tooltips of the tab's technical words."""


class ExplorePanel(QWidget):
    """Latent sliders, switches, the per-organ table, the strength and 'Apply to whole volume'."""

    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.renders = StagedRenders(owner, self, self._show, self._show_segmentation, self._on_screen)
        self.effects = EffectsProbe(self)  # what each slider mostly does on the slice shown
        self.last_result = None  # the stage-one result on screen
        self.last_segmented = None  # the result whose segmentation is on screen
        self._segmentation_hidden = False
        self._seq = 0
        self._row_height = max(QSlider(Qt.Horizontal).sizeHint().height(), self.fontMetrics().height() + 4)
        self._masks: dict = {}  # (revision, z) -> body mask of the slice
        self._bounds: dict = {}  # layer name -> display bound, for the session revision in _bounds_revision
        self._bounds_revision = None
        self._watched: list = []  # (emitter, slot) of our layers' visibility

        self.slice_label = QLabel("no generator yet")
        self.slice_label.setWordWrap(True)
        self.use_phi = QCheckBox("deformation")
        self.use_bias = QCheckBox("bias")
        self.use_phi.setToolTip(TIPS["deformation"])
        self.use_bias.setToolTip(TIPS["bias"])
        for box in (self.use_phi, self.use_bias):
            box.setChecked(True)
            box.toggled.connect(self._controls_changed)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip(TIPS["temperature"])
        self.temperature.valueChanged.connect(self._controls_changed)
        self.random_button = QPushButton("Random sample")
        self.reset_button = QPushButton("Reset")
        self.random_button.setToolTip("Every slider to a random value (standard normal, within +-3 SD)")
        self.reset_button.setToolTip("Every slider to 0 SD (the encoder's mean: a mild attack), temperature 1")
        self.random_button.clicked.connect(self.random_sample)
        self.reset_button.clicked.connect(self.reset)
        switches = QHBoxLayout()
        switches.addWidget(self.use_phi)
        switches.addWidget(self.use_bias)
        temperature_label = QLabel("temperature")
        temperature_label.setToolTip(TIPS["temperature"])
        switches.addWidget(temperature_label)
        switches.addWidget(self.temperature)
        buttons = QHBoxLayout()
        buttons.addWidget(self.random_button)
        buttons.addWidget(self.reset_button)

        self.phi_sliders = LatentSliders("z_phi: deformation (SD)", tooltip=TIPS["z_phi"])
        self.bias_sliders = LatentSliders("z_b: bias (SD)", tooltip=TIPS["z_b"])
        for group in (self.phi_sliders, self.bias_sliders):
            group.on_change = self._controls_changed
        slider_box = QWidget()
        row = QHBoxLayout(slider_box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.phi_sliders)
        row.addWidget(self.bias_sliders)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(slider_box)
        scroll.setFrameShape(QScrollArea.NoFrame)
        self.slider_scroll = scroll

        self.table = DiceTable()
        self.rho_label = QLabel("")
        self.rho_label.setToolTip(TIPS["rho"])
        self.strength = StrengthPanel(owner, self.request_from, self._controls_changed)

        self.volume = VolumeRow(owner, self.request_from, on_added=self.arrange_layers)
        self.compare = CompareView(owner.viewer, lambda: owner.session.layer, self)
        self.orientation = RadiologicalView(owner.viewer)
        self.view_row = ViewRow(self.set_compare, self.orientation.show, self.set_overlay)

        layout = QVBoxLayout(self)
        layout.addWidget(self.slice_label)
        layout.addWidget(self.view_row)
        layout.addLayout(switches)
        layout.addLayout(buttons)
        layout.addWidget(scroll)
        layout.addWidget(self.table)
        layout.addWidget(self.rho_label)
        layout.addWidget(self.strength)
        layout.addStretch(1)
        layout.addWidget(self.volume)
        self.subscriptions = Subscriptions()
        self.subscriptions.connect(owner.session.changed, self.model_changed)

    def shutdown(self) -> None:
        """Stop listening to the session and drop a pending render (the widget is closing)."""
        self.subscriptions.disconnect_all()
        self.renders.stop()
        self.compare.shutdown()
        self.orientation.disconnect()
        self._unwatch_layers()

    # ------------------------------------------------------------------ state
    def model_changed(self, *_args) -> None:
        """The case, target or generator changed: rebuild the sliders and re-render."""
        session = self.owner.session
        if self.owner.closing:
            return
        self.renders.renderer = None
        self.effects.clear()
        dim = session.config.latent_dim if session.config is not None else 0
        self.phi_sliders.set_count(dim)
        self.bias_sliders.set_count(dim)
        row = self._row_height
        self.slider_scroll.setFixedHeight(min((dim + 2) * row + 8, 360) if dim else 24)  # scrolls beyond ~14
        box = self.slider_scroll.widget()
        box.adjustSize()  # the sliders' labels stay readable: the dock widens rather than clip them
        self.slider_scroll.setMinimumWidth(box.sizeHint().width() + self.slider_scroll.verticalScrollBar()
                                           .sizeHint().width())
        if session.config is not None:
            self.use_phi.setEnabled(session.config.use_phi)
            self.use_bias.setEnabled(session.config.use_bias)
        if not session.can_explore():
            self.slice_label.setText("Load a CT, a target and a generator (or train one) to explore.")
            self._drop_attack_layers()
        self._controls_changed()

    def _drop_attack_layers(self) -> None:
        """Nothing to explore any more (the generator was dropped or unloaded): take the slice's attack off the
        canvas, so that it shows no result of a generator or target no longer loaded. The images and
        segmentations leave the layer list; the overlays (fields, grid, arrows) stay, blank, with their
        switches as they were. The next render draws them all again."""
        viewer = self.owner.viewer
        removed = [self._layer(name) for name in (L.ADVERSARIAL, L.ADVERSARIAL_SEG, L.CHANGES, L.WARPED_REFERENCE,
                                                  L.CLEAN_SEG)]
        removed = [layer for layer in removed if layer is not None]
        for name in (L.GRID, L.MAGNITUDE, L.BIAS, L.BIAS_PERCENT, L.DEFORMATION):
            layer = self._layer(name)
            if layer is not None:  # transparent at 0 (an empty set of arrows)
                layer.data = (np.zeros((0,) + layer.data.shape[1:], layer.data.dtype) if name == L.DEFORMATION
                              else np.zeros_like(layer.data))
        if removed:
            self._unwatch_layers()
            for layer in removed:
                viewer.layers.remove(layer)
            self._watch_layers()
        self.last_result = None
        self.table.show_organs({})  # no Dice of a generator no longer loaded
        self.rho_label.setText("")

    def latent_choice(self) -> LatentChoice:
        """The sliders, switches and strength as the session records them."""
        return LatentChoice(self.phi_sliders.eps(), self.bias_sliders.eps(), float(self.temperature.value()),
                            self.use_phi.isChecked(), self.use_bias.isChecked(), self.strength.rho())

    def _controls_changed(self, *_args) -> None:
        """A slider, switch, the temperature or the strength changed: record it in the session and re-render."""
        if self.owner.closing:
            return
        self.owner.session.set_latent(self.latent_choice())
        self.request()

    def request_from(self) -> SliceRequest:
        """The current slice, sliders, switches and strength as a request."""
        self._seq += 1
        return SliceRequest(self.owner.current_slice(), self.phi_sliders.eps(), self.bias_sliders.eps(),
                            float(self.temperature.value()), self.use_phi.isChecked(), self.use_bias.isChecked(),
                            self.owner.session.revision, self._seq, self.strength.rho())

    def request(self, *_args) -> None:
        """Ask for a render of the current state (replaces any pending request)."""
        if self.owner.closing or not self.owner.session.can_explore():
            return
        self.renders.submit(self.request_from())

    def _on_screen(self, result) -> bool:
        """Whether the adversarial image shown is this result's (same request, same session revision)."""
        shown = self.last_result
        return (shown is not None and result.request.seq == shown.request.seq
                and result.request.revision == self.owner.session.revision)

    def render_now(self) -> None:
        """Render the current state on this thread (used at start-up and by scripts)."""
        if self.owner.session.can_explore():
            self._show(self.renders.render_now(self.request_from()))

    def random_sample(self) -> None:
        """Draw every slider from a standard normal (clipped to +-3)."""
        rng = np.random.default_rng()
        self.phi_sliders.set_eps(rng.standard_normal(len(self.phi_sliders.sliders)))
        self.bias_sliders.set_eps(rng.standard_normal(len(self.bias_sliders.sliders)))

    def reset(self) -> None:
        """All sliders to the encoder's mean, temperature 1."""
        self.temperature.blockSignals(True)
        self.temperature.setValue(1.0)
        self.temperature.blockSignals(False)
        self.phi_sliders.set_eps(np.zeros(len(self.phi_sliders.sliders)))
        self.bias_sliders.set_eps(np.zeros(len(self.bias_sliders.sliders)))

    # ------------------------------------------------------------------ view controls
    def set_compare(self, on: bool) -> bool:
        """Before | after side by side (True) or the single overlay (False); returns whether compare is on."""
        state = self.compare.set_enabled(on)
        self.view_row.show_compare(state)
        return state

    def set_overlay(self, name: str, on: bool) -> None:
        """Show or hide one of the overlays the view row switches (drawn from the result on screen)."""
        name = self._bias_name() if name == L.BIAS else name
        layer = self._layer(name)
        if layer is not None and layer.visible != on:
            layer.visible = on  # _visibility_changed draws it

    def arrange_layers(self) -> None:
        """The Explore layers on top of the others (the volume layers just below them), or the compare view."""
        if self.compare.enabled:
            self.compare.arrange()
        else:
            L.put_in_order(self.owner.viewer, L.single_order(self.owner.viewer))

    def _layer(self, name: str):
        viewer = self.owner.viewer
        if name in viewer.layers and L.is_output(viewer.layers[name]):
            return viewer.layers[name]
        return None

    def _bias_name(self) -> str:
        config = self.owner.session.config
        return L.BIAS if config is None or config.bias_mode == "additive" else L.BIAS_PERCENT

    def _watch_layers(self) -> None:
        """Follow the visibility of our layers: the view row's switches mirror it; a layer shown is drawn."""
        watched = {id(emitter) for emitter, _ in self._watched}
        for name in L.EXPLORE_STACK:
            layer = self._layer(name)
            if layer is not None and id(layer.events.visible) not in watched:
                slot = (lambda event, name=name: self._visibility_changed(name, event))
                layer.events.visible.connect(slot)
                self._watched.append((layer.events.visible, slot))

    def _unwatch_layers(self) -> None:
        for emitter, slot in self._watched:
            try:
                emitter.disconnect(slot)
            except Exception:  # the layer is gone
                pass
        self._watched = []

    def _visibility_changed(self, name: str, _event=None) -> None:
        layer = self._layer(name)
        if layer is None or self.owner.closing:
            return
        self.view_row.mirror(L.BIAS if name == L.BIAS_PERCENT else name, layer.visible)
        if layer.visible and self.last_result is not None and name in L.REDRAWN:
            self._show_overlays(self.last_result, only=name)

    # ------------------------------------------------------------------ showing a result
    def _mask(self, z: int) -> np.ndarray:
        """The body on slice ``z`` (cached per session revision)."""
        session = self.owner.session
        key = (session.revision, int(z))
        if key not in self._masks:
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[key] = O.body_mask(session.case.volume.hu[int(z)])
        return self._masks[key]

    def _bound(self, name: str, values: np.ndarray, floor: float) -> float:
        """The display bound of a layer: grows with what is shown, starts again for a new model or case."""
        revision = self.owner.session.revision
        if self._bounds_revision != revision:
            self._bounds, self._bounds_revision = {}, revision
        bound = max(self._bounds.get(name, 0.0), O.symmetric_limit(values, floor))
        self._bounds[name] = bound
        return bound

    def _show_overlays(self, result, only: str | None = None) -> dict:
        """Bias, displacement, grid and arrows of ``result``: made on first use, then redrawn while shown.

        Returns figures for the heading (largest displacement, grid spacing, arrow factor).
        """
        session, viewer = self.owner.session, self.owner.viewer
        ct, view, z = session.layer, result.view, result.request.z
        here, whole = L.geometry(ct, z), L.geometry(ct)
        body = self._mask(z)  # on the clean slice
        mask = O.warped_mask(body, view.displacement)  # where the adversarial image shows the body
        spacing = tuple(float(s) for s in ct.scale[-2:])
        figures = {}

        def wanted(name):  # draw it now: asked for, or never drawn
            layer = self._layer(name)
            return (only is None or only == name) and (layer is None or layer.visible)

        bias_name = self._bias_name()
        other = L.BIAS_PERCENT if bias_name == L.BIAS else L.BIAS
        if self._layer(other) is not None:  # the bias mode changed with the generator
            viewer.layers.remove(other)
        if wanted(bias_name):
            additive = bias_name == L.BIAS
            values = O.bias_overlay(result.bias_display, additive, mask)
            bound = self._bound(bias_name, values, 5.0 if additive else 1.0)
            layer = L.show_image(viewer, bias_name, values[None], here, in_place=True, colormap=L.bias_colormap(),
                                 contrast_limits=(-bound, bound), visible=self.view_row.wanted(L.BIAS))
            self._set_limits(layer, (-bound, bound), "top_right")
        lengths = O.displacement_mm(view.displacement, spacing, mask)
        figures["largest_mm"] = float(lengths.max(initial=0.0))
        figures["largest_px"] = float((np.hypot(*view.displacement) * mask).max(initial=0.0))
        if wanted(L.MAGNITUDE):
            bound = self._bound(L.MAGNITUDE, lengths, 1.0)
            layer = L.show_image(viewer, L.MAGNITUDE, lengths[None], here, in_place=True,
                                 colormap=L.magnitude_colormap(), contrast_limits=(0.0, bound),
                                 visible=self.view_row.wanted(L.MAGNITUDE))
            self._set_limits(layer, (0.0, bound), "bottom_right")
        step_mm = O.grid_step_mm(view.displacement.shape[2] * spacing[1])
        figures["grid_mm"] = step_mm
        if wanted(L.GRID):
            factor = O.grid_factor(view.displacement.shape[1:])
            lines = O.deformation_grid(view.displacement, (step_mm / spacing[0], step_mm / spacing[1]), factor,
                                       body)
            L.show_image(viewer, L.GRID, lines[None], O.raster_geometry(here, factor), in_place=True,
                         colormap=L.deformation_colormap(), contrast_limits=(0.0, 1.0),
                         visible=self.view_row.wanted(L.GRID))
        largest = float(np.max(result.magnitude, initial=0.0))
        figures["arrows"] = O.arrow_scale(largest, ARROW_SPACING)
        if wanted(L.DEFORMATION):
            L.show_vectors(viewer, L.DEFORMATION, O.tissue_arrows(result.vectors), whole, figures["arrows"],
                           edge_width=0.8, vector_style="arrow", opacity=0.9,
                           visible=self.view_row.wanted(L.DEFORMATION))
        return figures

    @staticmethod
    def _set_limits(layer, limits, corner: str) -> None:
        if tuple(layer.contrast_limits) != tuple(limits):
            layer.contrast_limits_range = limits
            layer.contrast_limits = limits
        if not layer.colorbar.visible:
            L.show_colorbar(layer, corner)

    def _show(self, result) -> None:
        """Stage one on screen: image and overlays; then the segmentation (or its job)."""
        owner = self.owner
        session = owner.session
        ct = session.layer
        if owner.closing or ct is None or result.request.revision != session.revision:
            return
        if self.last_result is not None and result.request.seq < self.last_result.request.seq:
            return  # a render that started before the one already shown
        viewer, view, z, names = owner.viewer, result.view, result.request.z, session.class_names
        here = L.geometry(ct, z)
        other_bias = L.BIAS_PERCENT if self._bias_name() == L.BIAS else L.BIAS
        missing = [name for name in L.EXPLORE_STACK if name != other_bias and self._layer(name) is None]
        L.show_image(viewer, L.ADVERSARIAL, result.adversarial_hu[None], here, in_place=True, colormap="gray",
                     contrast_limits=tuple(ct.contrast_limits))
        figures = self._show_overlays(result)
        blank = np.zeros(view.adversarial.shape, np.uint8)[None]
        self._show_references(result, blank)
        if self._layer(L.ADVERSARIAL_SEG) is None:  # created empty now, so that it lies below the outlines
            L.show_labels(viewer, L.ADVERSARIAL_SEG, blank, here, in_place=True, class_names=names, opacity=0.45)
        if self._layer(L.CHANGES) is None:
            L.show_labels(viewer, L.CHANGES, blank, here, in_place=True, opacity=0.7, colormap=L.changes_colormap(),
                          visible=self.view_row.wanted(L.CHANGES))
        # the reference, deformed like the image: outlines over the adversarial prediction's fill
        warped = blank if view.warped_reference is None else view.warped_reference[None]
        L.show_labels(viewer, L.WARPED_REFERENCE, warped, here, in_place=True, class_names=names, contour=1,
                      opacity=0.9)
        if missing:
            self._watch_layers()
            self.arrange_layers()
        self.last_result = result
        self.effects.slice_shown(z)
        self._show_rho(view)
        latent = result.latent
        if latent:
            t = result.request.temperature
            self.phi_sliders.set_latent(latent["mu_phi"], latent["sigma_phi"], t)
            self.bias_sliders.set_latent(latent["mu_b"], latent["sigma_b"], t)
        self._show_heading(z, figures)
        if view.adversarial_segmentation is not None:
            self._show_segmentation(result)
            return
        # until its own segmentation comes, the previous one (of another code) is blanked and the table greyed
        if self.last_segmented is not None and not self._segmentation_hidden:
            L.show_labels(viewer, L.ADVERSARIAL_SEG, blank, here, in_place=True, class_names=names)
            L.show_labels(viewer, L.CHANGES, blank, here, in_place=True)
            self._segmentation_hidden = True
        self.table.setEnabled(False)
        self.renders.queue_segment(result)

    def _show_references(self, result, blank: np.ndarray) -> None:
        """The clean segmentation and the reference outline of ``result``'s slice (blank while a volumetric
        target's clean segmentation is still to come)."""
        session, viewer, view, z = self.owner.session, self.owner.viewer, result.view, result.request.z
        here = L.geometry(session.layer, z)
        comparing = self.compare.enabled
        clean = blank if view.clean_segmentation is None else view.clean_segmentation[None]
        names = session.class_names
        L.show_labels(viewer, L.CLEAN_SEG, clean, here, in_place=True, class_names=names, visible=comparing,
                      opacity=0.5)
        reference = clean if session.case.labels is None else np.asarray(session.case.labels[z], np.uint8)[None]
        L.show_labels(viewer, L.REFERENCE, reference, here, in_place=True, class_names=names, contour=1,
                      visible=comparing, opacity=0.9)

    def _show_heading(self, z: int, figures: dict) -> None:
        session = self.owner.session
        reference = "reference labels" if session.case.labels is not None else "clean prediction (label-free)"
        self.slice_label.setText(
            f"slice {z} of {session.case.volume.n_slices}: largest displacement {figures['largest_mm']:.1f} mm "
            f"({figures['largest_px']:.1f} px); grid lines every {figures['grid_mm']:g} mm; "
            f"arrows drawn x{figures['arrows']:g}")
        self.slice_label.setToolTip(f"Dice is measured against the {reference} warped like the image. The "
                                    "displacement is measured inside the body; arrows are drawn longer than "
                                    "they are by the factor given, so that the longest is visible.")

    def _show_segmentation(self, result) -> None:
        """Stage two on screen: the adversarial segmentation, the label changes and the Dice table, if the
        image shown is theirs."""
        owner = self.owner
        ct = owner.session.layer
        if owner.closing or ct is None or not self._on_screen(result):
            return  # stale: the image on screen is of a newer code (or of another slice, case or model)
        view, here, names = result.view, L.geometry(ct, result.request.z), owner.session.class_names
        if self.last_result.view.warped_reference is None or self.last_result.view.clean_segmentation is None:
            # a volumetric target's clean segmentation (and, label-free, the reference) come with stage two
            self._show_references(result, np.zeros(view.adversarial.shape, np.uint8)[None])
            L.show_labels(owner.viewer, L.WARPED_REFERENCE, view.warped_reference[None], here, in_place=True,
                          class_names=names)
        L.show_labels(owner.viewer, L.ADVERSARIAL_SEG, view.adversarial_segmentation[None], here, in_place=True,
                      class_names=names, opacity=0.45)
        L.show_labels(owner.viewer, L.CHANGES,
                      O.label_changes(view.clean_segmentation, view.adversarial_segmentation)[None], here,
                      in_place=True, opacity=0.7, colormap=L.changes_colormap())
        self._segmentation_hidden = False
        self.last_segmented = result
        self._show_table(view)
        L.refresh_thumbnail(owner.viewer, L.DEFORMATION)

    def _show_table(self, view) -> None:
        names = list(self.owner.session.class_names)
        by_value = class_colours(names)
        colours = {name: by_value[names.index(name)] for name in (view.organs or {}) if name in names}
        self.table.show_organs(view.organs or {}, colours)
        self._show_rho(view)
        self.strength.mark(view.rho)

    def _show_rho(self, view) -> None:
        text = f"rho (how much the slice changed) = {view.rho:.4f}"
        if view.adversarial_segmentation is None:
            slab = view.slab
            text += "; segmenting ..." if slab is None else f"; segmenting the slab of {slab.depth} slice(s) ..."
        else:
            text += f"; folded pixels {100 * view.fold_fraction:.2f} %"
            text += "" if view.organs else "; no organ on this slice"
        self.rho_label.setText(text)
