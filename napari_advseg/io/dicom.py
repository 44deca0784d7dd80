"""Reading DICOM CT series: checked, stacked and reoriented to canonical order like a NIfTI file.

A CT series is a folder of single-frame DICOM files, one axial (or sagittal,
coronal, oblique) slice each, or a multi-frame (Enhanced CT) object holding
them as frames. :func:`load_dicom` reads one with pydicom:

1. :func:`find_series` (in :mod:`napari_advseg.io.dicom_series`) groups the
   DICOM images of a folder (searched recursively; a DICOMDIR stands for its
   folder), of a list of files, or of a file's own folder by
   SeriesInstanceUID, or, where the UIDs are blank, by what else the files
   hold (a :class:`DicomNotice` says so). Files that are not DICOM are
   ignored; files need no ``.dcm`` name and no preamble. What is not a CT
   volume (localisers, other modalities, secondary captures, reports, a
   single image beside a volume) is skipped and named in a
   :class:`DicomNotice`. A folder with several CT series needs a choice
   (:func:`choose_series`, ``advseg --series UID``, the napari Data tab's
   series list); otherwise :class:`SeveralSeriesError` lists them.
2. Every image must be CT, of one sample per pixel, with the first image's
   size (Rows x Columns), pixel spacing and orientation
   (ImageOrientationPatient); a multi-frame object gives each frame its own
   from its functional groups. The images are sorted by the position of
   ImagePositionPatient along the slice normal (the cross product of the row
   and column directions), never by file name or InstanceNumber; they must be
   stacked straight along that normal (no gantry tilt), at distinct positions
   and evenly spaced: a gap of a whole number of spacings is reported as
   missing slices, anything else as uneven spacing
   (:mod:`napari_advseg.io.dicom_geometry`). A series of one image is a
   one-slice volume as deep as its SpacingBetweenSlices, else its
   SliceThickness. Each problem raises
   :class:`~napari_advseg.errors.InputFileError` naming the file (and frame),
   or the folder, and what is wrong; a file cut short says it is truncated
   or corrupt, a complete one that lacks a tag names the tag.
3. Pixel values are decoded by pydicom (each file once, all its frames),
   compressed transfer syntaxes through its plugins (pylibjpeg with
   pylibjpeg-openjpeg for JPEG 2000, and pylibjpeg-libjpeg for JPEG lossless
   and JPEG-LS; RLE by pydicom itself), signed or unsigned as
   PixelRepresentation says, and the RescaleSlope / RescaleIntercept of each
   image turn them into Hounsfield units. Pixels equal to PixelPaddingValue
   (or within PixelPaddingRangeLimit) lie outside the scanned field of view
   and become air, :data:`PADDING_HU`; where the padding lies below air, so
   does every value below it (lossy compression spreads the padding).
4. The slices are stacked as a stored ``(I, J, K)`` array, ``I`` the column
   index, ``J`` the row index and ``K`` the slice (in the order of increasing
   position along the normal), with the affine DICOM defines, converted from
   its LPS patient coordinates to the RAS+ coordinates of NIfTI and nibabel
   (x and y negated). That array and affine -- what a NIfTI of the same scan
   holds, and what dcm2niix writes (``tests/test_dicom_dcm2niix.py``) -- go
   through :func:`napari_advseg.io.geometry.canonical_volume`, the same code
   as :func:`napari_advseg.io.nifti.load_ct`, so a DICOM series and the
   equivalent NIfTI file give the same canonical array and affine, and
   :func:`napari_advseg.io.nifti_save.save_volume` writes outputs as NIfTI in
   the series' own patient geometry (a fresh NIfTI header holds the affine as
   sform and qform, code 1 "scanner").

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import nibabel
import numpy as np

from napari_advseg.errors import InputFileError, first_line
from napari_advseg.io.dicom_geometry import check_slices, stack_geometry
from napari_advseg.io.dicom_header import SliceHeader
from napari_advseg.io.geometry import CTVolume, canonical_volume
from napari_advseg.io.dicom_series import (  # noqa: F401 - the series API is part of this module's
    DICOM_SUFFIXES,
    DicomNotice,
    DicomSeries,
    SeriesList,
    SeveralSeriesError,
    choose_series,
    find_series,
    is_dicom_file,
    is_dicom_path,
    looks_like_dicom,
    notices_to,
    skipped_line,
)

__all__ = [
    "DICOM_SUFFIXES",
    "PADDING_HU",
    "DicomNotice",
    "DicomSeries",
    "SeriesList",
    "SeveralSeriesError",
    "choose_series",
    "find_series",
    "is_dicom_file",
    "is_dicom_path",
    "load_dicom",
    "looks_like_dicom",
    "notices_to",
    "read_series",
]


# ---------------------------------------------------------------------------
# Reading pixels
# ---------------------------------------------------------------------------


PADDING_HU = -1024.0
"""HU given to padding pixels (PixelPaddingValue, outside the scanned field of view): air."""

def _encoding_as_syntax(ds) -> None:
    """A data set read without file meta (no preamble): its transfer syntax is the encoding it was read in."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


def _decode(path, rows: int, columns: int, frames: int) -> np.ndarray:
    """The stored pixel values of one file, ``(frames, rows, columns)``."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001
        raise InputFileError(path, f"could not be read as DICOM: the file is truncated or corrupt "
                                   f"({first_line(error, path)})") from None
    if "PixelData" not in ds:
        raise InputFileError(path, "could not be read as DICOM: the file is truncated or corrupt (an image that "
                                   "ends before its pixel data, 7FE0,0010)")
    _encoding_as_syntax(ds)
    try:
        syntax = ds.file_meta.TransferSyntaxUID
        syntax_name = f"{syntax.name} ({syntax})"
        compressed = syntax.is_compressed
    except AttributeError:
        syntax_name, compressed = "unknown transfer syntax", False
    if not compressed:
        bits = int(ds.get("BitsAllocated") or 16)
        expected = rows * columns * frames * max(bits, 8) // 8
        if len(ds.PixelData) < expected:
            raise InputFileError(path, f"the pixel data hold {len(ds.PixelData)} bytes where {rows} x {columns} "
                                       f"x {frames} pixels of {bits} bits need {expected}: the file is truncated")
    try:
        pixels = ds.pixel_array
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - missing decoder, corrupt stream, ...
        # pydicom lists each plugin's failure (or missing dependency) on a line of its own: keep them all
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = f"{type(error).__name__}: {' '.join(lines)}" if lines else type(error).__name__
        detail = detail if len(detail) <= 400 else detail[:397] + "..."
        raise InputFileError(path, f"could not decode the pixel data, {syntax_name}: {detail}") from None
    if pixels.shape == (rows, columns) and frames == 1:
        return pixels[np.newaxis]
    if pixels.shape != (frames, rows, columns):
        raise InputFileError(path, f"decoded pixel data have shape {pixels.shape}, expected "
                                   f"{frames} x {rows} x {columns}" if frames > 1 else
                             f"decoded pixel data have shape {pixels.shape}, expected {rows} x {columns}")
    return pixels


def _hounsfield(stored: np.ndarray, s: SliceHeader) -> np.ndarray:
    """One image's stored values in HU (float64): RescaleSlope / RescaleIntercept, padding set to air."""
    slope = 1.0 if s.slope is None else s.slope
    intercept = 0.0 if s.intercept is None else s.intercept
    hu = stored.astype(np.float64)
    if slope != 1.0:
        hu *= slope
    if intercept:
        hu += intercept
    if s.padding is not None:
        value, limit = s.padding
        low, high = (value, value) if limit is None else (min(value, limit), max(value, limit))
        padded = (stored >= low) & (stored <= high)
        if value * slope + intercept < PADDING_HU:
            padded |= hu < PADDING_HU  # padding below air: so is whatever lossy compression spread around it
        if padded.any():
            hu[padded] = PADDING_HU
    return hu


def _read_pixels(s: SliceHeader, rows: int, columns: int) -> np.ndarray:
    """One slice's pixels in HU (float64, ``(rows, columns)``), RescaleSlope/Intercept applied."""
    stored = _decode(s.path, rows, columns, s.frames if s.frame is not None else 1)
    return _hounsfield(stored[s.frame or 0], s)


def _nifti_header(affine: np.ndarray, shape: tuple[int, int, int], uid: str) -> nibabel.Nifti1Header:
    """A NIfTI header with the series' affine (sform and qform, code 1 "scanner"), as its outputs get."""
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header.set_xyzt_units(xyz="mm")
    header["descrip"] = f"DICOM {uid}"[:79].encode("ascii", "replace")
    return header


def read_series(series: DicomSeries) -> CTVolume:
    """Read one series found by :func:`find_series` as a canonical CT volume.

    See the module docstring for what is checked.

    Returns
    -------
    CTVolume
        ``hu`` float32 ``(Z, Y, X)`` in canonical order, ``affine`` RAS+,
        ``path`` the folder (or file) the series was found in, ``series_uid``
        its SeriesInstanceUID, ``source`` the stored ``(column, row, slice)``
        geometry with a NIfTI header for writing outputs.

    Raises
    ------
    InputFileError
        A file that breaks a check (the message names it and the problem).
    """
    slices = series._slices
    if not slices:
        found = find_series(list(series.files))
        slices = [s for item in found for s in item._slices]
    check_slices(slices)
    order, affine = stack_geometry(slices)
    rows, columns = int(slices[0].rows), int(slices[0].columns)
    # Fortran order: each slice's transposed pixels are one contiguous block, and the canonical
    # array of an axial series is a mere view of it.
    stored = np.empty((columns, rows, len(slices)), dtype=np.float32, order="F")
    position = {int(index): k for k, index in enumerate(order)}
    by_file: dict = {}
    for index, s in enumerate(slices):
        by_file.setdefault(s.path, []).append(index)
    for path, indices in by_file.items():  # each file decoded once, all its frames at a time
        first = slices[indices[0]]
        frames = _decode(path, rows, columns, first.frames if first.frame is not None else 1)
        for index in indices:
            s = slices[index]
            stored[:, :, position[index]] = _hounsfield(frames[s.frame or 0], s).T
    header = _nifti_header(affine, stored.shape, series.uid)
    return canonical_volume(stored, affine, header, series.where, series_uid=series.uid)


def load_dicom(path: str | os.PathLike | Iterable[str | os.PathLike], series: str | None = None) -> CTVolume:
    """Load a DICOM CT series as a canonical CT volume.

    Parameters
    ----------
    path : str, path-like or sequence of them
        A folder holding the series (searched recursively), one file of the
        series (its folder is read), or the series' files.
    series : str, optional
        SeriesInstanceUID to read when there are several series.

    Returns
    -------
    CTVolume
        As :func:`read_series`.

    Raises
    ------
    SeveralSeriesError
        Several series and no ``series`` given (the message lists them).
    InputFileError
        Not DICOM, no such series, or a series that fails a check.
    """
    if not isinstance(path, (str, os.PathLike)):
        path = list(path)
    found = find_series(path)
    for note in found.notes:
        warnings.warn(note, DicomNotice, stacklevel=2)
    chosen = choose_series(found, series, found[0].where)
    volume = read_series(chosen)
    skipped = [s for s in found.skipped if s is not chosen]
    if skipped:
        warnings.warn(f"{chosen.where}: read {chosen.label()}; {skipped_line(skipped)}", DicomNotice, stacklevel=2)
    return volume
