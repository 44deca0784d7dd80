"""What each latent number does: the change of the fields and of the Dice across a slider's range.

For one slice (a :class:`~napari_advseg.attack.explore.SliceExplorer` with
the slice set), each latent number of z_phi and z_b is moved alone from
``-span`` to ``+span`` standard deviations around the encoder's mean (every
other number at the mean), the slice is attacked at each position, and we
record how far the fields moved and how far the Dice swung. The Explore tab
shows it beside each slider ("mostly the liver"); ``bench/latent_effect.py``
gives the median over test slices.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

FIELD_NAMES = {"phi": "deformation", "b": "bias"}
SHORT_NAMES = {"kidney_left": "kidney L", "kidney_right": "kidney R", "pancreas": "pancr."}
"""Organ names short enough to sit beside a slider."""


@dataclass
class LatentEffect:
    """The effect of one latent number on one slice.

    field : ``"phi"`` (a number of z_phi) or ``"b"`` (of z_b)
    index : the number's position in its code
    displacement_px : mean over pixels of ``|phi(+span) - phi(-span)|`` (vector length), pixels
    bias_change : mean over pixels of ``|b(+span) - b(-span)|``, in ``bias_unit``
    dice_swing : max - min over the slider positions of the slice's mean Dice over organs, points (0-100)
    organ_swing : the same per organ, points
    """

    field: str
    index: int
    displacement_px: float
    bias_change: float
    dice_swing: float
    organ_swing: dict[str, float] = field(default_factory=dict)
    bias_unit: str = "HU"

    @property
    def organ(self) -> str | None:
        """The organ whose Dice this number moves most (None when no organ is on the slice)."""
        finite = {k: v for k, v in self.organ_swing.items() if math.isfinite(v)}
        return max(finite, key=finite.get) if finite else None

    def describe(self) -> str:
        """One line for a tooltip: what the number mostly does on this slice."""
        fields = f"{self.displacement_px:.1f} px" if self.field == "phi" else f"{self.bias_change:.0f} {self.bias_unit}"
        if self.organ is None:
            return f"{FIELD_NAMES[self.field]} {self.index}: moves the field by {fields}; no organ on this slice"
        return (f"{FIELD_NAMES[self.field]} {self.index}: mostly the {self.organ} "
                f"(its Dice swings {self.organ_swing[self.organ]:.0f} points, the mean {self.dice_swing:.0f}); "
                f"field change {fields}")

    def short(self) -> str:
        """A few characters for beside the slider, e.g. ``liver 32`` (points of Dice swing)."""
        if self.organ is None:
            return ""
        return f"{SHORT_NAMES.get(self.organ, self.organ)} {self.organ_swing[self.organ]:.0f}"


def slider_positions(span: float = 3.0, points: int = 7) -> np.ndarray:
    """The deviates at which a number is tried: ``points`` evenly spaced in [-span, span] (0 included if odd)."""
    if points < 2:
        raise ValueError("at least two slider positions are needed")
    return np.linspace(-span, span, points).astype(np.float32)


def iter_latent_effects(explorer, *, span: float = 3.0, points: int = 7, temperature: float = 1.0,
                        bias_scale: float = 1.0, bias_unit: str = "HU",
                        base_phi: np.ndarray | None = None, base_b: np.ndarray | None = None
                        ) -> Iterator[LatentEffect]:
    """Yield the :class:`LatentEffect` of every latent number of the explorer's current slice.

    ``base_phi`` / ``base_b``: deviates of the other numbers (default: the
    encoder's mean, zeros). ``bias_scale``: display units per normalised
    unit of the bias (``IntensityScale.scale`` gives HU). Fields switched off
    in the generator's config are skipped.
    """
    d = explorer.latent_dim
    cfg = explorer.config
    base = {"phi": np.zeros(d, np.float32) if base_phi is None else np.asarray(base_phi, np.float32),
            "b": np.zeros(d, np.float32) if base_b is None else np.asarray(base_b, np.float32)}
    positions = slider_positions(span, points)
    fields = [name for name, used in (("phi", cfg.use_phi), ("b", cfg.use_bias)) if used]
    for name in fields:
        for j in range(d):
            views = []
            for value in positions:
                eps = {k: v.copy() for k, v in base.items()}
                eps[name][j] = value
                views.append(explorer.render(eps["phi"], eps["b"], temperature=temperature, segment=True))
            first, last = views[0], views[-1]
            moved = np.sqrt(((last.displacement - first.displacement) ** 2).sum(axis=0)).mean()
            bias = float(np.abs(last.bias - first.bias).mean()) * bias_scale
            organs = sorted({k for v in views for k in v.organs})
            per_organ = {}
            for organ in organs:
                values = [100.0 * v.organs[organ]["dice_adv"] for v in views if organ in v.organs]
                values = [x for x in values if math.isfinite(x)]
                per_organ[organ] = (max(values) - min(values)) if values else math.nan
            means = []
            for v in views:
                dice = [v.organs[o]["dice_adv"] for o in v.organs if math.isfinite(v.organs[o]["dice_adv"])]
                means.append(100.0 * float(np.mean(dice)) if dice else math.nan)
            finite = [m for m in means if math.isfinite(m)]
            swing = (max(finite) - min(finite)) if finite else math.nan
            yield LatentEffect(name, j, float(moved), bias, float(swing), per_organ, bias_unit)


def latent_effects(explorer, **options) -> list[LatentEffect]:
    """Every latent number's :class:`LatentEffect` on the explorer's current slice (see :func:`iter_latent_effects`)."""
    return list(iter_latent_effects(explorer, **options))
