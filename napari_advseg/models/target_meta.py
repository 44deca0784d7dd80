"""What is stored with a target besides its weights: class names, input normalisation, plain metadata, and how
many slices a call takes.

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
    "check_sliding_window",
    "plain_data",
    "window_words",
]

DEFAULT_NORMALISATION: dict = {"mode": "zscore"}
"""A target's input normalisation when nothing declares one. The others: ``{"mode": "window",
"window": [lo, hi], "range": [a, b]}`` (HU clipped to ``[lo, hi]`` and mapped linearly to
``[a, b]``, default ``[-1, 1]``), ``{"mode": "ct", "clip": [lo, hi], "mean": m, "std": s}`` (HU
clipped, then ``(hu - m) / s``) and ``{"mode": "none"}`` (HU as they are)."""


def _pair(normalisation: dict, key: str, what: str) -> list[float]:
    """``normalisation[key]`` as two finite floats ``low < high``; ValueError naming ``what`` otherwise."""
    values = normalisation.get(key)
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"normalisation mode {normalisation['mode']!r} needs {key!r}: {what}, got {values!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"normalisation {key} must be two finite numbers low < high, got {values!r}")
    return [low, high]


def _number(normalisation: dict, key: str, positive: bool = False) -> float:
    """``normalisation[key]`` as a finite float (positive where asked); ValueError otherwise."""
    value = normalisation.get(key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or (positive and number <= 0):
        need = "a positive number" if positive else "a number"
        raise ValueError(f"normalisation mode {normalisation['mode']!r} needs {key!r}: {need} in HU, got {value!r}")
    return number


def check_normalisation(normalisation: Any) -> dict:
    """Check a normalisation description and return a clean copy.

    Parameters
    ----------
    normalisation : dict or None
        One of the forms listed at :data:`DEFAULT_NORMALISATION` (pairs with
        ``low < high``, HU for ``window`` and ``clip``, ``std > 0``); ``None``
        means z-score. Other keys are kept if they hold plain values.

    Returns
    -------
    dict
        A new dict; pairs become lists of two floats, ``mean`` and ``std``
        floats. An absent ``range`` stays absent (it means [-1, 1]).

    Raises
    ------
    ValueError
        For an unknown mode or a bad or missing value.
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
        clean["window"] = _pair(normalisation, "window", "[lo, hi] in HU")
        if "range" in normalisation:
            clean["range"] = _pair(normalisation, "range", "[a, b], the window's output range")
    elif mode == "ct":
        clean["clip"] = _pair(normalisation, "clip", "[lo, hi] in HU")
        clean["mean"] = _number(normalisation, "mean")
        clean["std"] = _number(normalisation, "std", positive=True)
    return clean


SLIDING_WINDOW_MODES = ("constant", "gaussian")
"""How a declared sliding window weighs each window's logits (MONAI's ``BlendMode`` names)."""


def check_sliding_window(window: Any) -> dict | None:
    """Check a declared sliding window and return it complete: ``roi_size``, ``overlap``, ``mode``, ``sigma_scale``.

    ``"none"`` declares whole slices (None is returned).

    The declaration a patch-trained network needs (a TorchScript file's
    ``advseg.json``, its sidecar or ``--sliding-window``): ``{"roi_size":
    [H, W]}``, optionally ``"overlap"`` (0 <= overlap < 1, default 0.25),
    ``"mode"`` (``constant``, the default, or ``gaussian``) and
    ``"sigma_scale"`` (the Gaussian's sigma as a share of the window, default
    0.125): the defaults of MONAI's ``SlidingWindowInferer``. ValueError
    naming the bad key otherwise.
    """
    if window == "none":
        return None
    if not isinstance(window, dict):
        raise ValueError(f"a sliding window must be \"none\" or an object like {{\"roi_size\": [96, 96]}}, got {window!r}")
    unknown = sorted(set(window) - {"roi_size", "overlap", "mode", "sigma_scale"})
    if unknown:
        raise ValueError(f"a sliding window has unknown keys {unknown}; it may hold roi_size, overlap, mode, "
                         "sigma_scale")
    roi = window.get("roi_size")
    if (isinstance(roi, (str, bytes)) or not isinstance(roi, Sequence) or len(roi) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in roi)):
        raise ValueError(f"a sliding window's roi_size must be two positive integers (height, width), got {roi!r}")
    overlap = window.get("overlap", 0.25)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ValueError(f"a sliding window's overlap must be a number in [0, 1), got {overlap!r}")
    mode = window.get("mode", "constant")
    if mode not in SLIDING_WINDOW_MODES:
        raise ValueError(f"a sliding window's mode must be one of {', '.join(SLIDING_WINDOW_MODES)}, got {mode!r}")
    sigma = window.get("sigma_scale", 0.125)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
        raise ValueError(f"a sliding window's sigma_scale must be a positive number, got {sigma!r}")
    return {"roi_size": [int(v) for v in roi], "overlap": float(overlap), "mode": mode, "sigma_scale": float(sigma)}


def window_words(window: dict | None) -> str:
    """How a target's network is run over a slice, for messages: ``"by a 96 x 96 sliding window"`` or
    ``"on whole slices"`` (``window``: a checked declaration, or None)."""
    if window is None:
        return "on whole slices"
    return f"by a {window['roi_size'][0]} x {window['roi_size'][1]} sliding window"


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


def is_volumetric(target) -> bool:
    """True for a target whose network reads a call's slices as consecutive slices of a volume (a 3D network,
    :attr:`~napari_advseg.models.target.Target.slab_depth` set); False for 2D targets and plain networks."""
    return getattr(target, "slab_depth", None) is not None


def slices_per_call(target, n_slices: int, batch_size: int) -> int:
    """How many slices of a stack of ``n_slices`` to give ``target`` in one call.

    The one rule every caller follows: a volumetric target
    (:attr:`~napari_advseg.models.target.Target.volumetric`) gets the whole stack of consecutive slices at
    once, so that its network sees their z context; any other target (or a
    plain network) gets ``batch_size`` slices at a time. At least 1.
    """
    if is_volumetric(target):
        return max(1, int(n_slices))
    return max(1, int(batch_size))
