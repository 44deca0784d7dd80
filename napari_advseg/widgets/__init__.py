"""The napari dock widget of napari-advseg (``napari_advseg.widgets:AttackWidget``).

Tabs: *Data and model* (CT and reference layers, target model, device),
*Train* (the attack's settings, Start / Pause / Resume / Stop, live plot),
*Explore* (latent sliders on the shown slice, overlays, per-organ Dice) and
*Export* (NIfTI files in the input's geometry). Torch is imported only when
something is loaded or run.
"""

from __future__ import annotations

from napari_advseg.widgets._widget import AttackWidget

__all__ = ["AttackWidget"]
