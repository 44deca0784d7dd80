"""The header of one DICOM image file: the fields the series checks need, read without the pixels."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np

from napari_advseg.errors import InputFileError, first_line

__all__ = ["SliceHeader", "read_slice_header"]

_HEADER_TAGS = [
    "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality", "SOPClassUID", "Rows", "Columns",
    "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "NumberOfFrames", "SamplesPerPixel",
    "InstanceNumber",
]
"""The tags read from each file (pydicom ``specific_tags``)."""


@dataclass
class SliceHeader:
    """The header fields of one DICOM image file that the series checks need."""

    path: pathlib.Path
    series_uid: str
    modality: str
    rows: int | None
    columns: int | None
    orientation: np.ndarray | None  # (6,) row then column direction cosines, LPS
    position: np.ndarray | None  # (3,) ImagePositionPatient, LPS mm
    pixel_spacing: np.ndarray | None  # (2,) row spacing, column spacing (mm)
    frames: int
    samples: int
    description: str
    number: int | None


def _floats(value, n: int) -> np.ndarray | None:
    """``n`` finite floats from a multi-valued DICOM attribute, or None."""
    if value is None:
        return None
    try:
        array = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (n,) and np.all(np.isfinite(array)) else None


def _read_header(path: pathlib.Path, force: bool):
    """pydicom's dataset of a file's header (pixels not read); None for a file that is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=force, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        if force:
            raise InputFileError(path, "not a DICOM file that pydicom can read") from None
        return None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds on corrupt files
        raise InputFileError(path, f"could not be read as DICOM: corrupt or truncated ({first_line(error, path)})") from None


def read_slice_header(path: pathlib.Path, force: bool) -> SliceHeader | None:
    """The fields of one file, or None when it is not a DICOM image (not DICOM, DICOMDIR, report, ...).

    ``force``: read a file without the DICM marker too, and raise InputFileError
    where pydicom cannot read it (for files the user named one by one).
    """
    ds = _read_header(path, force)
    if ds is None:
        return None
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if not uid or "Rows" not in ds or "Columns" not in ds:
        sop_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
        if sop_class is not None and "Image Storage" in str(getattr(sop_class, "name", "")):
            # pydicom reads what it can of a cut-off file: an image object without its image attributes
            raise InputFileError(path, f"could not be read as DICOM: the file is truncated or corrupt (a "
                                       f"{sop_class.name} object without Rows, Columns or SeriesInstanceUID)")
        return None  # not an image: DICOMDIR, structured report, presentation state, ...
    try:
        number = int(ds.get("SeriesNumber")) if ds.get("SeriesNumber") not in (None, "") else None
    except (TypeError, ValueError):
        number = None
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1
    return SliceHeader(
        path=path,
        series_uid=uid,
        modality=str(ds.get("Modality", "") or "").strip(),
        rows=int(ds.Rows) if ds.Rows is not None else None,
        columns=int(ds.Columns) if ds.Columns is not None else None,
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
        frames=frames,
        samples=int(ds.get("SamplesPerPixel") or 1),
        description=str(ds.get("SeriesDescription", "") or "").strip(),
        number=number,
    )
