"""The header of one DICOM file: the fields the series checks need, read without the pixels.

:func:`read_file_headers` reads one file and says what it holds:

- a list of :class:`SliceHeader`, one per image frame: one for a classic
  single-frame CT slice, one per frame for a multi-frame (Enhanced CT,
  Legacy Converted Enhanced CT) object, whose per-frame and shared
  functional groups give each frame its position, orientation, pixel size
  and rescale values;
- a :class:`NonImage` for a DICOM object without an image (a dose report,
  a presentation state, ...), so that a folder listing can say it was
  skipped; a DICOMDIR index is a ``NonImage`` with ``directory`` set;
- None for a file that is not DICOM.

Files without the 128-byte preamble and ``DICM`` marker are read too when
they start like a DICOM data set (:func:`starts_like_dicom`). A file whose
header pydicom cannot parse, or an image object cut off before its pixel
data, raises :class:`~napari_advseg.errors.InputFileError` saying it is
truncated or corrupt; a complete image object that lacks a tag every image
needs (Rows, Columns, PixelData) names that tag. Blank UIDs are not an
error here: :mod:`napari_advseg.io.dicom_series` groups such files by what
else they hold.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import numpy as np

from napari_advseg.errors import InputFileError, first_line

__all__ = ["NonImage", "SliceHeader", "read_file_headers", "read_slice_header", "starts_like_dicom"]

_HEADER_TAGS = [
    "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "Modality",
    "ImageType", "FrameOfReferenceUID", "AcquisitionTime", "AcquisitionNumber", "Rows", "Columns",
    "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "NumberOfFrames", "SamplesPerPixel", "InstanceNumber", "RescaleSlope", "RescaleIntercept",
    "PixelRepresentation", "PixelPaddingValue", "PixelPaddingRangeLimit", "GantryDetectorTilt",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
]
"""The tags read from each file (pydicom ``specific_tags``)."""

DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: a DICOMDIR index."""

_CT_CLASSES = {uid: "CT" for uid in ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",
                                       "1.2.840.10008.5.1.4.1.1.2.2")}
"""CT Image, Enhanced CT Image and Legacy Converted Enhanced CT Image Storage: CT without a Modality tag."""

_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
        b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
        b"UR", b"US", b"UT", b"UV"}


@dataclass
class SliceHeader:
    """The header fields of one DICOM image (one file, or one frame of a multi-frame file).

    ``frame`` is the frame's index in a multi-frame file (None for a
    single-frame file); ``slope``/``intercept`` are the rescale values of
    that image (None when the file has none: identity); ``padding`` is
    ``(PixelPaddingValue, PixelPaddingRangeLimit or None)`` in stored values,
    or None; ``uid_missing`` says the SeriesInstanceUID was blank or absent
    (``series_uid`` is then "").
    """

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
    frame: int | None = None
    sop_class: str = ""
    image_type: tuple[str, ...] = ()
    frame_of_reference: str = ""
    acquisition: str = ""  # AcquisitionNumber and AcquisitionTime, for telling acquisitions apart
    slope: float | None = None
    intercept: float | None = None
    padding: tuple[int, int | None] | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    uid_missing: bool = False
    study_uid: str = ""

    @property
    def sop_class_name(self) -> str:
        """The SOP class's name (e.g. "CT Image Storage"), or its UID when pydicom does not know it."""
        return _uid_name(self.sop_class)


@dataclass
class NonImage:
    """A DICOM object without an image: a report, a presentation state, a DICOMDIR index, ..."""

    path: pathlib.Path
    series_uid: str
    modality: str
    sop_class: str
    description: str
    number: int | None
    directory: bool = False
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def sop_class_name(self) -> str:
        """The SOP class's name, or its UID."""
        return _uid_name(self.sop_class)


def _uid_name(uid: str) -> str:
    if not uid:
        return "unknown SOP class"
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid


def starts_like_dicom(head: bytes) -> bool:
    """Whether the first bytes of a file look like a DICOM data set: ``DICM`` after the 128-byte
    preamble, or (a file written without preamble) a little-endian element of group 0002 or 0008
    with an explicit VR, or an implicit-VR length that fits."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008) or element > 0x0200:
        return False
    if head[4:6] in _VRS:
        return True
    return int.from_bytes(head[4:8], "little") <= 1024  # implicit VR: a short first element


def _floats(value, n: int) -> np.ndarray | None:
    """``n`` finite floats from a multi-valued DICOM attribute, or None."""
    if value is None:
        return None
    try:
        array = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (n,) and np.all(np.isfinite(array)) else None


def _float(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _int(value) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(ds, name: str) -> str:
    value = ds.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _read_header(path: pathlib.Path, force: bool):
    """pydicom's dataset of a file's header (pixels not read); None for a file that is not DICOM.

    Without ``force``, a file that only starts like a data set without preamble (no ``DICM`` marker)
    and does not parse is taken for a file that is not DICOM rather than a corrupt one.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    guessed = False
    if not force:
        try:
            with open(path, "rb") as handle:
                head = handle.read(132)
        except OSError as error:
            raise InputFileError(path, f"could not be read ({first_line(error, path)})") from None
        if not starts_like_dicom(head):
            return None
        guessed = head[128:132] != b"DICM"
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        if guessed:
            return None
        raise InputFileError(path, "not a DICOM file that pydicom can read") from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds on corrupt files
        if guessed:
            return None
        raise InputFileError(path, f"could not be read as DICOM: the file is truncated or corrupt "
                                   f"({first_line(error, path)})") from None
    if guessed and not (ds.get("SOPClassUID") or ds.get("Modality") or ds.get("Rows")):
        return None  # parsed, but into nothing a DICOM object holds
    return ds


def _has_pixel_data(path: pathlib.Path) -> bool | None:
    """Whether the whole file parses and holds PixelData (None: it does not parse to the end)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, defer_size=64)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001
        return None
    return any(name in ds for name in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _missing_image_tag(path: pathlib.Path, ds, sop_class: str) -> InputFileError:
    """The error for an image object without Rows, Columns or pixel data: cut off, or a tag missing."""
    name = _uid_name(sop_class)
    pixels = _has_pixel_data(path)
    missing = [f"{tag} ({code})" for tag, code in (("Rows", "0028,0010"), ("Columns", "0028,0011"))
               if tag not in ds or ds.get(tag) in (None, "")]
    if pixels is None:
        return InputFileError(path, f"could not be read as DICOM: the file is truncated or corrupt (a {name} "
                                    "object that pydicom cannot parse to its end)")
    if not pixels:
        return InputFileError(path, f"could not be read as DICOM: the file is truncated or corrupt (a {name} "
                                    f"object of {path.stat().st_size} bytes that ends before its pixel data, "
                                    "7FE0,0010)")
    return InputFileError(path, f"a valid {name} object, but {' and '.join(missing)} "
                                f"{'is' if len(missing) == 1 else 'are'} missing: every image needs "
                                f"{'it' if len(missing) == 1 else 'them'}")


def _first(sequence, name: str):
    """The first item of a functional-group sequence ``name`` in ``sequence`` (a dataset), or None."""
    if sequence is None:
        return None
    value = sequence.get(name)
    try:
        return value[0] if value is not None and len(value) else None
    except (TypeError, IndexError):
        return None


def _group(per_frame, shared, name: str):
    """A functional group: the frame's own item, else the shared one."""
    return _first(per_frame, name) or _first(shared, name)


def _plane(shared, group: str, name: str, ds):
    """``name`` from a shared functional group, else from the top level of ``ds``."""
    item = _first(shared, group)
    return item.get(name) if item is not None and name in item else ds.get(name)


def _rescale(ds, path: pathlib.Path) -> tuple[float | None, float | None]:
    slope_value, intercept_value = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    slope, intercept = _float(slope_value), _float(intercept_value)
    if (slope_value not in (None, "") and slope is None) or (intercept_value not in (None, "") and intercept is None):
        raise InputFileError(path, "RescaleSlope / RescaleIntercept are not numbers")
    if slope == 0:
        raise InputFileError(path, f"unusable RescaleSlope {slope:g} / RescaleIntercept {intercept or 0:g}")
    return slope, intercept


def read_file_headers(path: pathlib.Path, force: bool) -> list[SliceHeader] | NonImage | None:
    """What one file holds: its image frames, a non-image object, or None when it is not DICOM.

    ``force``: read the file even when it does not start like DICOM, and
    raise InputFileError where pydicom cannot read it (for files the user
    named one by one).
    """
    path = pathlib.Path(path)
    ds = _read_header(path, force)
    if ds is None:
        return None
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(ds, "SOPClassUID") or str(getattr(meta, "MediaStorageSOPClassUID", "") or "").strip()
    uid = _text(ds, "SeriesInstanceUID")
    modality = _text(ds, "Modality") or _CT_CLASSES.get(sop_class, "")
    description = _text(ds, "SeriesDescription")
    number = _int(ds.get("SeriesNumber"))
    if len(ds) == 0 and not sop_class:
        if force:
            raise InputFileError(path, "not a DICOM file that pydicom can read")
        return None
    if "Rows" not in ds or "Columns" not in ds or ds.get("Rows") in (None, "") or ds.get("Columns") in (None, ""):
        if "Image Storage" in _uid_name(sop_class):
            raise _missing_image_tag(path, ds, sop_class)
        return NonImage(path, uid, modality, sop_class, description, number,
                        directory=sop_class == DIRECTORY_SOP_CLASS)

    slope, intercept = _rescale(ds, path)
    padding_value = _int(ds.get("PixelPaddingValue"))
    padding = None if padding_value is None else (padding_value, _int(ds.get("PixelPaddingRangeLimit")))
    common = dict(
        path=path, series_uid=uid, modality=modality, rows=int(ds.Rows), columns=int(ds.Columns),
        samples=_int(ds.get("SamplesPerPixel")) or 1, description=description, number=number,
        sop_class=sop_class, image_type=tuple(v.strip().upper() for v in _text(ds, "ImageType").split("\\") if v),
        frame_of_reference=_text(ds, "FrameOfReferenceUID"),
        acquisition=f"{_text(ds, 'AcquisitionNumber')}/{_text(ds, 'AcquisitionTime')}", padding=padding,
        uid_missing=not uid, study_uid=_text(ds, "StudyInstanceUID"),
    )
    frames = _int(ds.get("NumberOfFrames")) or 1
    shared = _first(ds, "SharedFunctionalGroupsSequence")
    per_frame_items = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame_items is None or len(per_frame_items) != frames:
        # a single-frame file, or a multi-frame one without per-frame placement (checked later)
        return [SliceHeader(
            orientation=_floats(_plane(shared, "PlaneOrientationSequence", "ImageOrientationPatient", ds), 6),
            position=_floats(ds.get("ImagePositionPatient"), 3),
            pixel_spacing=_floats(_plane(shared, "PixelMeasuresSequence", "PixelSpacing", ds), 2), frames=frames,
            frame=None, slope=slope, intercept=intercept,
            slice_thickness=_float(_plane(shared, "PixelMeasuresSequence", "SliceThickness", ds)),
            spacing_between_slices=_float(_plane(shared, "PixelMeasuresSequence", "SpacingBetweenSlices", ds)),
            **common)]

    # A multi-frame object: each frame placed by its functional groups (per-frame, else shared).
    headers = []
    for index, item in enumerate(per_frame_items):
        position = _group(item, shared, "PlanePositionSequence")
        orientation = _group(item, shared, "PlaneOrientationSequence")
        measures = _group(item, shared, "PixelMeasuresSequence")
        transform = _group(item, shared, "PixelValueTransformationSequence")
        frame_type = _group(item, shared, "CTImageFrameTypeSequence")
        frame_slope, frame_intercept = (slope, intercept) if transform is None else _rescale(transform, path)
        header = SliceHeader(
            orientation=_floats(orientation.get("ImageOrientationPatient") if orientation else
                                ds.get("ImageOrientationPatient"), 6),
            position=_floats(position.get("ImagePositionPatient") if position else ds.get("ImagePositionPatient"), 3),
            pixel_spacing=_floats(measures.get("PixelSpacing") if measures else ds.get("PixelSpacing"), 2),
            frames=frames, frame=index, slope=frame_slope, intercept=frame_intercept,
            slice_thickness=_float(measures.get("SliceThickness") if measures else ds.get("SliceThickness")),
            spacing_between_slices=_float(measures.get("SpacingBetweenSlices") if measures else
                                          ds.get("SpacingBetweenSlices")),
            **common)
        if frame_type is not None and frame_type.get("FrameType"):
            header.image_type = tuple(v.strip().upper() for v in _text(frame_type, "FrameType").split("\\") if v)
        headers.append(header)
    return headers


def read_slice_header(path: pathlib.Path, force: bool) -> SliceHeader | None:
    """The first image of one file, or None when it holds no DICOM image (not DICOM, DICOMDIR, report, ...).

    ``force``: read a file that does not start like DICOM too, and raise
    InputFileError where pydicom cannot read it (for files the user named
    one by one).
    """
    found = read_file_headers(path, force)
    return found[0] if isinstance(found, list) and found else None
