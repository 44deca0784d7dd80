"""One entry point for CT input: a NIfTI file or a DICOM series, told apart by what the path is.

:func:`load_volume` is what the command line (``--ct``), the cases of
:mod:`napari_advseg.data.cases` and the napari reader call; both kinds come
back as the same canonical :class:`~napari_advseg.io.geometry.CTVolume`.
:func:`volume_source` describes where a volume came from for the JSON
sidecars written beside outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from napari_advseg.errors import InputFileError
from napari_advseg.io.geometry import CTVolume

__all__ = ["DICOM", "NIFTI", "input_kind", "load_volume", "volume_source"]

NIFTI, DICOM = "nifti", "dicom"
"""Values of :func:`input_kind`."""

_NIFTI_SUFFIXES = (".nii", ".nii.gz")

CtInput = str | os.PathLike | Sequence[str | os.PathLike]


def input_kind(path: CtInput) -> str:
    """``"dicom"`` for a folder, a list of files, a ``.dcm`` file or a file starting like DICOM; else ``"nifti"``.

    A path that does not exist counts as NIfTI (its reader reports it missing).
    """
    from napari_advseg.io.dicom import is_dicom_path

    if isinstance(path, (list, tuple)):
        return DICOM
    name = os.fspath(path)
    lower = name.lower()
    if os.path.isdir(name):
        return DICOM
    if lower.endswith(_NIFTI_SUFFIXES):
        return NIFTI
    if is_dicom_path(name):
        return DICOM
    return NIFTI


def load_volume(path: CtInput, series: str | None = None) -> CTVolume:
    """Load a CT volume from a NIfTI file or a DICOM series, in canonical order.

    Parameters
    ----------
    path : str, path-like or sequence of them
        A ``.nii`` / ``.nii.gz`` file; or a DICOM series: a folder, one of
        its files, or a list of its files (see :func:`napari_advseg.io.dicom.load_dicom`).
    series : str, optional
        DICOM SeriesInstanceUID, needed when a folder holds several series.

    Raises
    ------
    InputFileError
        Whatever the reader finds wrong; ``series`` given for a NIfTI file.
    """
    if input_kind(path) == DICOM:
        from napari_advseg.io.dicom import load_dicom

        return load_dicom(path, series)
    if series is not None:
        raise InputFileError(path, f"a DICOM series ({series}) was chosen, but this is a NIfTI file, not DICOM")
    from napari_advseg.io.nifti import load_ct

    return load_ct(path)


def volume_source(volume: CTVolume | None) -> dict[str, Any] | None:
    """Where a volume came from, for JSON sidecars.

    ``{"kind": "dicom", "path": ..., "series_uid": ...}`` for a DICOM series,
    ``{"kind": "nifti", "path": ...}`` for a file, ``{"kind": "array", ...}``
    for a volume made in memory; None for no volume.
    """
    if volume is None:
        return None
    if volume.series_uid is not None:
        return {"kind": DICOM, "path": volume.path, "series_uid": volume.series_uid}
    if volume.path is not None and str(volume.path).lower().endswith(_NIFTI_SUFFIXES):
        return {"kind": NIFTI, "path": volume.path}
    return {"kind": "array", "path": volume.path}
