"""Reference labels mapped by class name into a target's class indices.

A network trained elsewhere may name other or fewer classes, in another
order, than the reference labels' class map. Label value ``v`` named ``n`` is
scored as the target's class named ``n``; a reference class the target lacks
becomes background (0) and a target class with no reference label is never
present in the mapped labels, so its Dice is absent. Value 0 is background on
both sides whatever it is called. Names compare case-insensitively, with
spaces and hyphens read as underscores. When the two maps share no
foreground name at all, the values are read as the target's indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_advseg.organs import class_key as _key

__all__ = ["ClassMapping", "map_classes"]


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names)


@dataclass(frozen=True)
class ClassMapping:
    """How reference label values become target class indices.

    Attributes
    ----------
    reference_names : the reference labels' class map (value -> name)
    target_names : the target's class names (output channel -> name)
    target_index : per reference value, the target index it is scored as (None: the target lacks it)
    by_name : False when no foreground name is shared and values are read as target indices
    """

    reference_names: tuple[str, ...]
    target_names: tuple[str, ...]
    target_index: tuple[int | None, ...]
    by_name: bool = True

    @property
    def identical(self) -> bool:
        """The same classes in the same order: the labels are used unchanged and nothing is said."""
        return [_key(n) for n in self.reference_names] == [_key(n) for n in self.target_names]

    @property
    def unmatched_reference(self) -> tuple[str, ...]:
        """Reference classes the target has no class for (scored as background)."""
        return tuple(n for n, i in zip(self.reference_names, self.target_index) if i is None)

    @property
    def unmatched_target(self) -> tuple[str, ...]:
        """Target classes no reference label value is scored as (their Dice is absent)."""
        used = {i for i in self.target_index if i is not None}
        return tuple(n for i, n in enumerate(self.target_names) if i not in used)

    def record(self) -> dict[str, int | None]:
        """``{reference name: target index or None}``, for reports."""
        return dict(zip(self.reference_names, self.target_index))

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """The ``uint8`` labels in target indices (the input itself where no value changes)."""
        table = np.array([0 if i is None else i for i in self.target_index], dtype=np.uint8)
        if np.array_equal(table, np.arange(len(table))):
            return labels
        return table[labels]

    def message(self) -> str | None:
        """One line saying what the mapping changed or left out; None when the class maps are identical."""
        if self.identical:
            return None
        if not self.by_name:
            return (f"class mapping: no class of the target ({_listed(self.target_names[1:])}) is named in the "
                    f"reference labels' class map ({_listed(self.reference_names[1:])}); label values are read as "
                    f"the target's class indices")
        parts = []
        moved = [f"{n} {v}->{i}" for v, (n, i) in enumerate(zip(self.reference_names, self.target_index))
                 if i is not None and i != v]
        if moved:
            parts.append(f"reference label values scored as network classes {', '.join(moved)}")
        missing = self.unmatched_reference
        if missing:
            verb = "has" if len(missing) == 1 else "have"
            parts.append(f"reference {_listed(missing)} {verb} no network class (scored as background)")
        extra = self.unmatched_target
        if extra:
            word = "class" if len(extra) == 1 else "classes"
            verb = "has" if len(extra) == 1 else "have"
            parts.append(f"network {word} {_listed(extra)} {verb} no reference label (left out of Dice)")
        return "class mapping by name: " + "; ".join(parts)


def map_classes(reference_names: Sequence[str], target_names: Sequence[str]) -> ClassMapping:
    """The mapping of reference label values (named by ``reference_names``) into ``target_names``' indices.

    Value 0 maps to 0 (background on both sides). Each other reference name
    maps to the first target class of the same name (see the module's note on
    comparison), None where there is none. When no foreground name is shared,
    value ``v`` maps to index ``v`` (None beyond the target's classes) and
    ``by_name`` is False.
    """
    reference = tuple(reference_names)
    target = tuple(target_names)
    index: dict[str, int] = {}
    for i, name in enumerate(target):
        if i > 0:
            index.setdefault(_key(name), i)
    matched = [0] + [index.get(_key(name)) for name in reference[1:]]
    if len(reference) > 1 and all(i is None for i in matched[1:]) and len(target) > 1:
        by_index = tuple(v if v < len(target) else None for v in range(len(reference)))
        return ClassMapping(reference, target, by_index, by_name=False)
    return ClassMapping(reference, target, tuple(matched))
