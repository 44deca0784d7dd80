"""Strict JSON for every file the product writes: ``null`` where a number is undefined, never a bare ``NaN``.

Python's :mod:`json` writes NaN and infinity as ``NaN`` / ``Infinity``, which
are not JSON (RFC 8259) and which many readers refuse. :func:`strict_json`
maps them to ``null`` first and then encodes with ``allow_nan=False``;
numpy scalars and arrays become plain numbers and lists.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_advseg.io.atomic import atomic_write

__all__ = ["strict_data", "strict_json", "write_json"]


def strict_data(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, numpy values by Python ones, tuples by lists."""
    if isinstance(value, dict):
        return {key: strict_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_data(item) for item in value]
    if isinstance(value, np.ndarray):
        return strict_data(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def strict_json(value: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (see the module docstring); other objects become floats where they can."""
    return json.dumps(strict_data(value), indent=indent, allow_nan=False, default=_fallback)


def _fallback(value: Any) -> Any:
    number = float(value)  # TypeError for what is not a number, as json itself raises
    return number if math.isfinite(number) else None


def write_json(path: str | os.PathLike, value: Any, *, overwrite: bool = True) -> Path:
    """Write ``value`` as strict JSON (and a final newline), atomically."""
    text = strict_json(value) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)
