"""The class map of the abdominal organs: label values, names and display colours (one home)."""

from __future__ import annotations

ORGAN_CLASSES: tuple[str, ...] = (
    "background",
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "pancreas",
)
"""Default class map: label value -> name (value 0 is background)."""

ORGAN_COLOURS: dict[int, tuple[float, float, float, float]] = {
    0: (0.0, 0.0, 0.0, 0.0),
    1: (0.80, 0.35, 0.85, 1.0),   # liver: purple
    2: (0.20, 0.55, 0.95, 1.0),   # spleen: blue
    3: (0.95, 0.35, 0.25, 1.0),   # kidney_left: red
    4: (1.00, 0.80, 0.15, 1.0),   # kidney_right: yellow
    5: (0.25, 0.85, 0.35, 1.0),   # pancreas: green
}
"""RGBA colour of each label value, shared by every Labels layer the plugin makes."""
