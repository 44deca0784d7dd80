"""The class map of the abdominal organs: label values, names and display colours (one home).

Every colour the plugin gives a class (Labels layers, the Dice table's
squares, the dose-response plot's lines) comes from :func:`class_colours`,
which colours a class by its NAME: the five reference organs keep their own
colours whatever value a network gives them, every other class gets the next
colour of :data:`OTHER_COLOURS` in class order, and value 0 (background) is
transparent. This module imports nothing, so every layer may use it.
"""

from __future__ import annotations

RGBA = tuple[float, float, float, float]

ORGAN_CLASSES: tuple[str, ...] = (
    "background",
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "pancreas",
)
"""Default class map: label value -> name (value 0 is background)."""

BACKGROUND_COLOUR: RGBA = (0.0, 0.0, 0.0, 0.0)
"""Value 0, whatever it is called: transparent."""

ORGAN_COLOURS: dict[str, RGBA] = {
    "liver": (0.80, 0.35, 0.85, 1.0),         # purple
    "spleen": (0.20, 0.55, 0.95, 1.0),        # blue
    "kidney_left": (0.95, 0.35, 0.25, 1.0),   # red
    "kidney_right": (1.00, 0.80, 0.15, 1.0),  # yellow
    "pancreas": (0.25, 0.85, 0.35, 1.0),      # green
}
"""RGBA colour of each reference organ, by name (see :func:`class_key`)."""

OTHER_COLOURS: tuple[RGBA, ...] = (
    (0.42, 0.50, 0.05, 1.0),  # olive
    (0.55, 0.10, 1.00, 1.0),  # violet
    (1.00, 0.10, 0.55, 1.0),  # rose
    (1.00, 0.60, 0.73, 1.0),  # pink
    (0.93, 1.00, 0.60, 1.0),  # pale lime
    (0.85, 1.00, 0.10, 1.0),  # chartreuse
    (0.05, 0.50, 0.35, 1.0),  # sea green
    (0.75, 0.51, 0.26, 1.0),  # tan
    (0.35, 1.00, 0.78, 1.0),  # aquamarine
    (0.10, 1.00, 0.10, 1.0),  # bright green
    (1.00, 0.10, 1.00, 1.0),  # magenta
    (0.50, 0.30, 0.50, 1.0),  # plum
    (0.10, 0.40, 1.00, 1.0),  # royal blue
    (1.00, 0.55, 0.10, 1.0),  # orange
    (0.60, 0.80, 1.00, 1.0),  # sky
    (0.75, 0.26, 0.34, 1.0),  # brick
    (0.50, 0.75, 0.45, 1.0),  # sage
    (0.53, 0.75, 0.07, 1.0),  # grass
    (0.73, 0.60, 1.00, 1.0),  # lavender
    (0.05, 0.50, 0.12, 1.0),  # forest
    (1.00, 0.80, 0.60, 1.0),  # peach
    (0.50, 0.47, 0.30, 1.0),  # khaki
    (0.45, 0.75, 0.70, 1.0),  # teal grey
    (0.05, 0.42, 0.50, 1.0),  # petrol
)
"""Colours of the classes that are not reference organs, given in class order (the first such class
the first colour). Chosen far apart (CIELAB) from each other and from the organs' colours, the
deformation's cyan, the label changes' white, :data:`OUTSIDE_COLOUR` and the CT's greys."""

SHADES: tuple[float, ...] = (0.0, 0.4, -0.4, 0.65, -0.6)
"""After every :data:`OTHER_COLOURS` is given, the next classes get them again mixed this much toward white
(positive) or black (negative), one shade per round; past the last round the rounds repeat."""

OUTSIDE_COLOUR: RGBA = (0.6, 0.6, 0.6, 1.0)
"""Grey: a value painted outside the class map (no name)."""


def class_key(name: str) -> str:
    """The form in which class names compare: ``"Kidney Left"`` -> ``"kidney_left"``."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def other_colour(index: int) -> RGBA:
    """The colour of the ``index``-th class (from 0) that is not a reference organ."""
    if index < 0:
        raise ValueError(f"index must be 0 or more, got {index}")
    shade = SHADES[(index // len(OTHER_COLOURS)) % len(SHADES)]
    towards = 1.0 if shade > 0 else 0.0
    r, g, b, a = OTHER_COLOURS[index % len(OTHER_COLOURS)]
    return tuple(round(c + abs(shade) * (towards - c), 3) for c in (r, g, b)) + (a,)


def class_colours(class_names: tuple[str, ...] | list[str] = ORGAN_CLASSES) -> dict[int, RGBA]:
    """The display colour of each label value of a class map (value -> name), by the class's name.

    Value 0 is transparent. A reference organ's name (:data:`ORGAN_COLOURS`;
    names compare as :func:`class_key` writes them) gives that organ's colour,
    to the first class of that name only; every other class gets
    :func:`other_colour` of its place among the other classes, so the same
    class map always gets the same colours and no other class looks like an
    organ.
    """
    colours: dict[int, RGBA] = {}
    given: set[str] = set()
    others = 0
    for value, name in enumerate(class_names):
        key = class_key(name)
        if value == 0:
            colours[value] = BACKGROUND_COLOUR
        elif key in ORGAN_COLOURS and key not in given:
            colours[value] = ORGAN_COLOURS[key]
            given.add(key)
        else:
            colours[value] = other_colour(others)
            others += 1
    return colours
