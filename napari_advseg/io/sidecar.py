"""Sidecar JSON files: declarations that sit beside a data or model file (``x.nii.gz`` + ``x.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from napari_advseg.errors import InputFileError, first_line


def read_sidecar_object(sidecar: Path, owner: Path) -> dict:
    """The JSON object in ``sidecar``, the sidecar of ``owner``; InputFileError naming the sidecar if it is not one."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(sidecar, f"is not readable JSON ({first_line(error)}); it is read as the sidecar of "
                                      f"{owner.name}") from None
    if not isinstance(meta, dict):
        raise InputFileError(sidecar, f"must hold a JSON object (the sidecar of {owner.name})")
    return meta
