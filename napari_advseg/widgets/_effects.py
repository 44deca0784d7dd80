"""What each latent slider mostly does on the slice shown, measured in the background.

When the Explore tab shows a new slice (or a new model), each latent number
is moved alone to -3, 0 and +3 standard deviations (the others at the
encoder's mean) and the slice attacked at each
(:func:`napari_advseg.attack.latent_effect.latent_effects`); the sliders then
show, beside each number, the organ whose Dice it moves most and by how many
points, with the whole measurement in the tooltip. One measurement runs at a
time; a slice shown meanwhile replaces the pending one, and a result for a
slice or model no longer shown is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

POSITIONS = 3
"""Slider positions tried per number (-3, 0, +3): 2 x latent_dim x 3 attacked slices per measurement."""


@dataclass
class EffectsRequest:
    z: int
    revision: int


def measure_effects(session, request: EffectsRequest):
    """(request, effects of z_phi's numbers, effects of z_b's) on one slice; runs in a worker thread."""
    from napari_advseg.attack.explore import SliceExplorer
    from napari_advseg.attack.latent_effect import latent_effects

    case = session.case
    explorer = SliceExplorer(session.generator, session.config, session.target, scale=case.scale)
    explorer.set_case_slice(case, request.z)
    effects = latent_effects(explorer, points=POSITIONS, bias_scale=float(case.scale.scale))
    return (request, [e for e in effects if e.field == "phi"], [e for e in effects if e.field == "b"])


class EffectsProbe:
    """Keeps the sliders' "what it mostly does" labels in step with the slice shown."""

    def __init__(self, panel):
        self.panel = panel
        self.pending: EffectsRequest | None = None
        self.busy = False
        self.measured: tuple[int, int] | None = None  # (revision, z) the labels show

    def slice_shown(self, z: int) -> None:
        """The tab shows slice ``z`` of the session's current revision: measure it unless done."""
        session = self.panel.owner.session
        key = (session.revision, int(z))
        if self.measured == key or (self.pending is not None and (self.pending.revision, self.pending.z) == key):
            return
        if self.measured is not None and self.measured[0] != session.revision:
            self.clear()
        self.pending = EffectsRequest(int(z), session.revision)
        self._launch()

    def clear(self) -> None:
        self.measured = None
        self.panel.phi_sliders.set_effects(None)
        self.panel.bias_sliders.set_effects(None)

    def _launch(self) -> None:
        owner = self.panel.owner
        if self.busy or self.pending is None or owner.closing or not owner.session.can_explore():
            return
        request, self.pending = self.pending, None
        self.busy = True
        try:
            owner.jobs.function_job("effects", measure_effects, owner.session, request, quick=True, connect={
                "returned": self._show, "errored": self._failed, "finished": self._done})
        except Exception as exc:
            self.busy = False
            owner.notify_error(exc)

    def _failed(self, exc) -> None:
        self.clear()  # the labels say nothing rather than something stale; the render path reports errors

    def _done(self) -> None:
        self.busy = False
        if self.pending is not None and not self.panel.owner.closing:
            self._launch()

    def _show(self, result) -> None:
        request, phi, bias = result
        owner = self.panel.owner
        if owner.closing or request.revision != owner.session.revision:
            return
        if owner.current_slice() != request.z:
            return  # the user has moved on; the pending request measures the new slice
        self.panel.phi_sliders.set_effects(phi)
        self.panel.bias_sliders.set_effects(bias)
        self.measured = (request.revision, request.z)
