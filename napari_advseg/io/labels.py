"""Label maps checked against their CT and the class map: one uint8 value per voxel, in canonical order.

Independent of the file format: :func:`napari_advseg.io.nifti.load_labels`
reads a file and checks it here, and label layers made in memory are checked
the same way.

A label file may name its values in a *sidecar*: a JSON file beside it with
the same name and the suffix ``.json`` (``labels.nii.gz`` and ``labels.json``,
``seg.nii`` and ``seg.json``), holding one of

- ``{"class_names": ["background", "liver", ...]}``: value ``i`` is named
  ``class_names[i]``;
- ``{"labels": {"1": "liver", "3": "spleen"}}``: the values named one by one;
  an unlisted value 0 is ``background``, other unlisted values below the
  largest listed one are named ``value N`` (so they match no class by name).

:func:`read_label_names` reads it; the names say which of a target's classes
each value is scored as (:mod:`napari_advseg.data.class_map`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.io.geometry import CTVolume
from napari_advseg.io.sidecar import read_sidecar_object
from napari_advseg.organs import ORGAN_CLASSES

__all__ = ["LABEL_SIDECAR_KEYS", "MAX_LABEL_CLASSES", "check_label_names", "check_labels", "label_sidecar_path",
           "read_label_names"]

_MAX_LISTED_VALUES = 8
MAX_LABEL_CLASSES = 256
"""Most classes a label map may name (its values are stored as uint8)."""
LABEL_SIDECAR_KEYS = ("class_names", "labels")
"""Keys a labels sidecar may hold, exactly one of them."""
_LABEL_SUFFIXES = (".nii.gz", ".nii")


def label_sidecar_path(path: str | os.PathLike) -> Path:
    """The sidecar JSON of a label file: same folder and name, ``.nii.gz`` or ``.nii`` (else the last suffix)
    replaced by ``.json``."""
    path = Path(path)
    lower = path.name.lower()
    for suffix in _LABEL_SUFFIXES:
        if lower.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def check_label_names(names: Any) -> tuple[str, ...]:
    """The names of the label values ``0, 1, ...`` as a tuple; ValueError unless 1 to 256 distinct,
    non-empty strings (surrounding spaces are dropped)."""
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) == 0:
        raise ValueError(f"class names must be a non-empty list of strings, got {names!r}")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"class names must be non-empty strings, got {list(names)!r}")
    clean = tuple(n.strip() for n in names)
    repeated = sorted({n for n in clean if clean.count(n) > 1})
    if repeated:
        raise ValueError(f"class names must be distinct, {', '.join(repeated)} is repeated")
    if len(clean) > MAX_LABEL_CLASSES:
        raise ValueError(f"at most {MAX_LABEL_CLASSES} classes (values 0..255), got {len(clean)}")
    return clean


def _names_of_values(labels: Any) -> list[str]:
    """The ``labels`` form, ``{"1": "liver", ...}``, as one name per value 0..largest; ValueError when bad."""
    if not isinstance(labels, dict) or not labels:
        raise ValueError('labels must be a non-empty object of value -> name, e.g. {"1": "liver"}, '
                         f"got {labels!r}")
    named: dict[int, str] = {}
    for key, name in labels.items():
        try:
            value = int(str(key).strip())
        except ValueError:
            raise ValueError(f"labels keys must be label values 0..{MAX_LABEL_CLASSES - 1}, got {key!r}") from None
        if not 0 <= value < MAX_LABEL_CLASSES:
            raise ValueError(f"labels keys must be label values 0..{MAX_LABEL_CLASSES - 1}, got {key!r}")
        if value in named:
            raise ValueError(f"labels names value {value} twice")
        if not isinstance(name, str):
            raise ValueError(f"labels must map each value to a name (a string), got {key!r}: {name!r}")
        named[value] = name
    named.setdefault(0, ORGAN_CLASSES[0])
    return [named.get(value, f"value {value}") for value in range(max(named) + 1)]


def read_label_names(path: str | os.PathLike) -> tuple[str, ...] | None:
    """The names a label file's sidecar gives its values (see the module's note), None without a sidecar.

    Only a sidecar beside an existing file is read. A sidecar that is not a
    JSON object of exactly one of :data:`LABEL_SIDECAR_KEYS` (a misspelt key
    included) or holds bad names raises InputFileError naming the sidecar.
    """
    path = Path(path)
    sidecar = label_sidecar_path(path)
    if sidecar == path or not path.is_file() or not sidecar.is_file():
        return None
    meta = read_sidecar_object(sidecar, path)
    unknown = sorted(str(key) for key in set(meta) - set(LABEL_SIDECAR_KEYS))
    if unknown:
        raise InputFileError(sidecar, f"has unknown keys {', '.join(unknown)}; a labels sidecar holds class_names "
                                      f"or labels")
    if len(meta) != 1:
        raise InputFileError(sidecar, "holds both class_names and labels; give one of them" if meta else
                             "holds neither class_names nor labels")
    try:
        names = meta["class_names"] if "class_names" in meta else _names_of_values(meta["labels"])
        return check_label_names(names)
    except ValueError as error:
        raise InputFileError(sidecar, f"{error} (the sidecar of {path.name})") from None


def _list_values(values: np.ndarray) -> str:
    """The distinct values, at most :data:`_MAX_LISTED_VALUES` of them, for an error message."""
    values = np.unique(values)
    shown = ", ".join(f"{v:g}" for v in values[:_MAX_LISTED_VALUES].tolist())
    more = len(values) - _MAX_LISTED_VALUES
    return shown + (f" and {more} more" if more > 0 else "")


def check_labels(
    labels: np.ndarray,
    like: CTVolume,
    class_names: Sequence[str] = ORGAN_CLASSES,
    name: str = "labels",
) -> np.ndarray:
    """Check an in-memory label map that is already in canonical order.

    Parameters
    ----------
    labels : array_like
        ``(Z, Y, X)`` label values on the grid of ``like``, any integer or
        float dtype (floats must hold whole numbers).
    like : CTVolume
        The CT the labels belong to.
    class_names : sequence of str, optional
        The class map; allowed values are ``0 .. len(class_names) - 1``.
        Classes that do not occur are fine.
    name : str, optional
        What to call the labels in error messages (e.g. the file name).

    Returns
    -------
    numpy.ndarray
        C-contiguous ``uint8`` ``(Z, Y, X)`` copy (or the input when it is
        already such an array).

    Raises
    ------
    InputFileError
        Wrong shape, non-numeric data, NaN/inf, non-integral values or values
        outside the class map; the message names ``name`` and the bad values.
    """
    n_classes = len(class_names)
    if n_classes < 1 or n_classes > 256:
        raise AdvsegError(f"the class map must have 1 to 256 classes, got {n_classes}")
    array = np.asarray(labels)
    if array.shape != like.shape:
        raise InputFileError(name, f"label map has shape {array.shape}, but the CT has shape {like.shape} (Z, Y, X)")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputFileError(name, f"label data type {array.dtype} is not numeric")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise InputFileError(name, f"holds {int(array.size - finite.sum())} NaN or infinite label value(s)")
        fractional = array != np.round(array)
        if fractional.any():
            raise InputFileError(
                name, f"label values must be whole numbers, found {_list_values(array[fractional])}"
            )
    outside = (array < 0) | (array > n_classes - 1)
    if outside.any():
        raise InputFileError(
            name,
            f"label values must be 0..{n_classes - 1} ({', '.join(class_names)}), "
            f"found {_list_values(array[outside])}",
        )
    return np.ascontiguousarray(array, dtype=np.uint8)
