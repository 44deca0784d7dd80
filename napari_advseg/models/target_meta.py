"""What is stored with a target besides its weights: class names, input normalisation, plain metadata.

Checked here before a target is built or written, so a file holds only plain
types and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_advseg.data.intensity import NORMALISATION_MODES

__all__ = [
    "DEFAULT_NORMALISATION",
    "check_class_names",
    "check_normalisation",
    "plain_data",
]

DEFAULT_NORMALISATION: dict = {"mode": "zscore"}
"""A target's input normalisation when its file names none. The others: ``{"mode": "window",
"window": [lo, hi]}`` (HU clipped to ``[lo, hi]`` and mapped linearly to ``[-1, 1]``)."""


def check_normalisation(normalisation: Any) -> dict:
    """Check a normalisation description and return a clean copy.

    Parameters
    ----------
    normalisation : dict or None
        ``{"mode": "zscore"}`` or ``{"mode": "window", "window": [lo, hi]}``
        with ``lo < hi`` in HU; ``None`` means z-score. Other keys are kept if
        they hold plain values.

    Returns
    -------
    dict
        A new dict; ``"window"`` becomes a list of two floats.

    Raises
    ------
    ValueError
        For an unknown mode or a bad window.
    """
    if normalisation is None:
        return dict(DEFAULT_NORMALISATION)
    if not isinstance(normalisation, dict):
        raise ValueError(f"normalisation must be a dict like {{'mode': 'zscore'}}, got {normalisation!r}")
    mode = normalisation.get("mode")
    if mode not in NORMALISATION_MODES:
        raise ValueError(
            f"unknown normalisation mode {mode!r}: expected one of {', '.join(map(repr, NORMALISATION_MODES))}"
        )
    clean = plain_data(normalisation, "normalisation")
    if mode == "window":
        window = normalisation.get("window")
        try:
            lo, hi = (float(v) for v in window)
        except (TypeError, ValueError):
            raise ValueError(f"normalisation mode 'window' needs 'window': [lo, hi] in HU, got {window!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"normalisation window must be two finite numbers lo < hi, got {window!r}")
        clean["window"] = [lo, hi]
    return clean


def check_class_names(class_names: Any) -> tuple[str, ...]:
    """The class names as a tuple of strings; ValueError unless a non-empty sequence of strings."""
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or len(class_names) == 0:
        raise ValueError(f"class names must be a non-empty list of strings, got {class_names!r}")
    names = tuple(class_names)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"class names must be strings, got {list(names)!r}")
    return names


def plain_data(value: Any, where: str) -> Any:
    """A copy of ``value`` made of dict/list/str/int/float/bool/None only.

    numpy scalars and arrays and torch tensors become Python numbers and
    lists; tuples become lists. Such data loads with ``weights_only=True``.
    """
    if isinstance(value, np.generic):  # first: numpy.float64 is also a float, but pickles as numpy
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, torch.Tensor)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return array.tolist()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int)):
                key = str(key)
            out[key] = plain_data(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ValueError(
        f"{where} holds a {type(value).__name__}; only numbers, strings, lists and dicts can be stored"
    )
