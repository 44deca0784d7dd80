"""The "Explore" tab: latent sliders on the shown slice, overlays, per-organ Dice, whole volume.

Renders run in two stages in workers (:mod:`._staged`): the fields and the
adversarial image first, their layers repainted at once, then the target's
segmentation and the Dice table. Each stage keeps only the latest request,
so the view follows the slider rather than working through a queue; a
segmentation is shown only over the image of its own code (a stale one is
dropped, and the previous one is hidden while its successor is computed).
The tab follows the session (a new case, target or generator rebuilds the
sliders and re-renders) and records its sliders, switches and strength
("Set rho", :mod:`._strength`) in the session's ``latent`` choice, which the
Export tab uses. The per-organ table is :mod:`._dice_table`, the "Apply to
whole volume" row :mod:`._volume_row`.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSlider,
                            QVBoxLayout, QWidget)

from napari_advseg.widgets import _layers as L
from napari_advseg.widgets._dice_table import DiceTable
from napari_advseg.widgets._effects import EffectsProbe
from napari_advseg.widgets._model import LatentChoice
from napari_advseg.widgets._sliders import LatentSliders
from napari_advseg.widgets._staged import StagedRenders
from napari_advseg.widgets._strength import StrengthPanel
from napari_advseg.widgets._subscriptions import Subscriptions
from napari_advseg.widgets._tasks import ARROW_SPACING, SliceRequest, bias_limits
from napari_advseg.widgets._volume_row import VolumeRow


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

        self.slice_label = QLabel("no generator yet")
        self.slice_label.setWordWrap(True)
        self.use_phi = QCheckBox("deformation")
        self.use_bias = QCheckBox("bias")
        for box in (self.use_phi, self.use_bias):
            box.setChecked(True)
            box.toggled.connect(self._controls_changed)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip("Scales the deviates: z = mean + temperature * slider * sigma")
        self.temperature.valueChanged.connect(self._controls_changed)
        self.random_button = QPushButton("Random sample")
        self.reset_button = QPushButton("Reset")
        self.random_button.clicked.connect(self.random_sample)
        self.reset_button.clicked.connect(self.reset)
        switches = QHBoxLayout()
        switches.addWidget(self.use_phi)
        switches.addWidget(self.use_bias)
        switches.addWidget(QLabel("temperature"))
        switches.addWidget(self.temperature)
        buttons = QHBoxLayout()
        buttons.addWidget(self.random_button)
        buttons.addWidget(self.reset_button)

        self.phi_sliders = LatentSliders("z_phi (deformation)")
        self.bias_sliders = LatentSliders("z_b (bias)")
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
        self.strength = StrengthPanel(owner, self.request_from, self._controls_changed)

        self.volume = VolumeRow(owner, self.request_from)

        layout = QVBoxLayout(self)
        layout.addWidget(self.slice_label)
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
        self.slider_scroll.setFixedHeight(min((dim + 1) * row + 8, 340) if dim else 24)  # scrolls beyond ~14
        if session.config is not None:
            self.use_phi.setEnabled(session.config.use_phi)
            self.use_bias.setEnabled(session.config.use_bias)
        if not session.can_explore():
            self.slice_label.setText("Load a CT, a target and a generator (or train one) to explore.")
        self._controls_changed()

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

    # ------------------------------------------------------------------ showing a result
    def _show(self, result) -> None:
        """Stage one on screen: image, bias, warped reference, arrows; then the segmentation (or its job)."""
        owner = self.owner
        session = owner.session
        ct = session.layer
        if owner.closing or ct is None or result.request.revision != session.revision:
            return
        if self.last_result is not None and result.request.seq < self.last_result.request.seq:
            return  # a render that started before the one already shown
        viewer, view, z = owner.viewer, result.view, result.request.z
        here, whole = L.geometry(ct, z), L.geometry(ct)
        L.show_image(viewer, L.ADVERSARIAL, result.adversarial_hu[None], here, in_place=True, colormap="gray",
                     contrast_limits=tuple(ct.contrast_limits))
        L.show_image(viewer, L.BIAS, result.bias_display[None], here, in_place=True, colormap="PiYG",
                     contrast_limits=bias_limits(session.config, session.case, result.bias_display),
                     visible=False, opacity=0.6)
        L.show_labels(viewer, L.CLEAN_SEG, view.clean_segmentation[None], here, in_place=True, visible=False,
                      opacity=0.5)
        if L.ADVERSARIAL_SEG not in viewer.layers:  # created empty now, so that it lies below the outlines
            L.show_labels(viewer, L.ADVERSARIAL_SEG, np.zeros_like(view.warped_reference)[None], here,
                          in_place=True, opacity=0.45)
        # the reference, deformed like the image: outlines over the adversarial prediction's fill
        L.show_labels(viewer, L.WARPED_REFERENCE, view.warped_reference[None], here, in_place=True, contour=1,
                      opacity=0.9)
        L.show_vectors(viewer, L.DEFORMATION, result.vectors, result.magnitude, whole,
                       max_length=session.config.phi_max, arrow_spacing=ARROW_SPACING, edge_width=0.6,
                       vector_style="arrow", opacity=0.9)
        self.last_result = result
        self.effects.slice_shown(z)
        self._show_rho(view)
        latent = result.latent
        if latent:
            t = result.request.temperature
            self.phi_sliders.set_latent(latent["mu_phi"], latent["sigma_phi"], t)
            self.bias_sliders.set_latent(latent["mu_b"], latent["sigma_b"], t)
        reference = "reference labels" if session.case.labels is not None else "clean prediction (label-free)"
        arrows = viewer.layers[L.DEFORMATION].length if L.DEFORMATION in viewer.layers else 1
        self.slice_label.setText(f"slice {z} of {session.case.volume.n_slices}; Dice against the warped "
                                 f"{reference}; displacement arrows drawn x{arrows:g} "
                                 f"(largest here {float(np.max(result.magnitude, initial=0)):.2f} px)")
        if view.adversarial_segmentation is not None:
            self._show_segmentation(result)
            return
        # until its own segmentation comes, the previous one (of another code) is hidden and the table greyed
        layer = viewer.layers[L.ADVERSARIAL_SEG]
        if layer.visible:
            layer.visible = False
            self._segmentation_hidden = True
        self.table.setEnabled(False)
        self.renders.queue_segment(result)

    def _show_segmentation(self, result) -> None:
        """Stage two on screen: the adversarial segmentation and the Dice table, if the image shown is theirs."""
        owner = self.owner
        ct = owner.session.layer
        if owner.closing or ct is None or not self._on_screen(result):
            return  # stale: the image on screen is of a newer code (or of another slice, case or model)
        layer = L.show_labels(owner.viewer, L.ADVERSARIAL_SEG, result.view.adversarial_segmentation[None],
                              L.geometry(ct, result.request.z), in_place=True, opacity=0.45)
        if self._segmentation_hidden:
            layer.visible = True
            self._segmentation_hidden = False
        self.last_segmented = result
        self._show_table(result.view)
        L.refresh_thumbnail(owner.viewer, L.DEFORMATION)

    def _show_table(self, view) -> None:
        self.table.show_organs(view.organs or {})
        self._show_rho(view)
        self.strength.mark(view.rho)

    def _show_rho(self, view) -> None:
        text = f"rho (perceptibility) = {view.rho:.4f}"
        if view.adversarial_segmentation is None:
            text += "; segmenting ..."
        else:
            text += f"; folded pixels {100 * view.fold_fraction:.2f} %"
            text += "" if view.organs else "; no organ on this slice"
        self.rho_label.setText(text)
