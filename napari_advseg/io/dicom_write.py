"""Writing results as DICOM: a derived CT series in the input's geometry, and segmentations as DICOM SEG.

:func:`write_ct_series` writes a canonical ``(Z, Y, X)`` HU volume (the
adversarial CT) as a series of single-frame CT files; :func:`write_seg` writes
a label map on the same grid as one DICOM Segmentation object (encoded by
highdicom) that references that series, so a DICOM viewer shows it over it.

Geometry and patient
--------------------
- **DICOM input** (a :class:`~napari_advseg.io.geometry.CTVolume` with a
  ``series_uid``): one output file per input file, with the input file's
  ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness
  and SliceLocation copied as they are, and its FrameOfReferenceUID, so the
  series overlays the input exactly. The patient and study tags of the input
  (name, ID, birth date, sex, study UID, date, accession number, ...) are
  kept, so the series files into the same study; ``drop_patient_tags`` gives
  the series a fresh anonymous patient, study and frame of reference instead
  and drops the references to the input images (only a list of tags is ever
  copied, but the pixels are copied as they are: text burned into the image
  stays).
- **NIfTI input** (or a volume made in memory): a fresh anonymous patient and
  study, and axial slices (canonical order: inferior to superior, rows
  anterior to posterior, columns patient right to left) placed by the
  volume's affine, which must not be sheared.

Every output gets new UIDs (series, instances; the SEGs' own), ImageType
``DERIVED\\SECONDARY``, a SeriesDescription that says it is adversarial, and
the equipment ``napari-advseg``.

Pixel values
------------
The CT keeps the input's pixel encoding (bits, sign, RescaleSlope and
RescaleIntercept of its first file) when the values fit it exactly; otherwise
signed 16-bit with slope 1 and intercept 0. DICOM CT pixels are whole
numbers: HU that are not whole numbers (a float NIfTI input) are rounded to
the nearest one, and :attr:`WrittenSeries.max_rounding_hu` says by how much.

Nothing here imports napari or Qt. Errors raise
:class:`~napari_advseg.errors.AdvsegError` naming the file or folder.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio

from napari_advseg.errors import AdvsegError, first_line
from napari_advseg.io.atomic import atomic_write
from napari_advseg.io.geometry import CTVolume, invert_ornt

__all__ = ["SOFTWARE", "WrittenSeries", "source_is_dicom", "write_ct_series", "write_seg"]

SOFTWARE = "napari-advseg"
"""Manufacturer and model name of every object written here."""

_LPS = np.array([-1.0, -1.0, 1.0])
"""RAS+ <-> DICOM LPS: x and y change sign."""

_PATIENT_TAGS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
                 "PatientSize", "PatientWeight")
_STUDY_TAGS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
               "StudyDescription")
_SERIES_TAGS = ("PatientPosition", "BodyPartExamined")
_FRAME_TAGS = ("FrameOfReferenceUID", "PositionReferenceIndicator")
_SLICE_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SliceLocation")
_CT_TAGS = ("KVP", "AcquisitionNumber", "WindowCenter", "WindowWidth", "LossyImageCompression",
            "LossyImageCompressionRatio", "LossyImageCompressionMethod")
_ENCODING_TAGS = ("BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept",
                  "SpecificCharacterSet", "Modality", "SeriesDescription", "SeriesNumber", "SOPClassUID",
                  "SOPInstanceUID", "ImageType")
_READ_TAGS = list(_PATIENT_TAGS + _STUDY_TAGS + _SERIES_TAGS + _FRAME_TAGS + _SLICE_TAGS + _CT_TAGS + _ENCODING_TAGS)

_NOT_FOR_DIAGNOSIS = "ADVERSARIAL IMAGE made by napari-advseg to fool a segmentation network: not for diagnosis"

_ORGAN_CODES = {"liver": "Liver", "spleen": "Spleen", "kidney_left": "Kidney", "kidney_right": "Kidney",
                "kidney": "Kidney", "pancreas": "Pancreas", "stomach": "Stomach", "gallbladder": "Gallbladder"}
"""SNOMED CT keywords (pydicom's ``codes.SCT``) of the class names a SEG segment is coded by; others: Organ."""


@dataclass
class WrittenSeries:
    """A CT series written by :func:`write_ct_series`.

    Attributes
    ----------
    folder : pathlib.Path
        Its folder (one ``CT_NNNN.dcm`` per slice).
    datasets : list of pydicom.Dataset
        The written objects, in file order (what :func:`write_seg` references).
    series_uid, study_uid, frame_of_reference_uid : str
        Its UIDs.
    study : str
        ``"source"``: in the input's study; ``"fresh"``: a new anonymous one.
    max_rounding_hu : float
        Largest change made by rounding HU to whole numbers (0: exact).
    """

    folder: pathlib.Path
    datasets: list
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    study: str
    max_rounding_hu: float

    def record(self) -> dict:
        """What a JSON sidecar says of it."""
        return {"folder": self.folder.name, "series_uid": self.series_uid, "study_uid": self.study_uid,
                "frame_of_reference_uid": self.frame_of_reference_uid, "study": self.study,
                "files": len(self.datasets), "max_rounding_hu": self.max_rounding_hu}


def source_is_dicom(volume: CTVolume) -> bool:
    """Whether ``volume`` was read from a DICOM series (its files give the output's geometry and patient)."""
    return volume.series_uid is not None and volume.path is not None


# ---------------------------------------------------------------------------
# Input slices: geometry and tags of each output file
# ---------------------------------------------------------------------------


def _source_headers(volume: CTVolume) -> list:
    """The input series' headers in the reader's slice order (increasing position along the normal)."""
    import pydicom

    from napari_advseg.io.dicom import choose_series, find_series

    found = find_series(volume.path)
    series = choose_series(found, volume.series_uid, volume.path)
    headers = []
    for path in series.files:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_READ_TAGS))
        except Exception as error:  # noqa: BLE001 - pydicom raises many kinds on files changed since reading
            raise AdvsegError(f"{path}: cannot read the input's DICOM header again ({first_line(error, path)})") \
                from None
    first = headers[0]
    orientation = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    along = [float(np.array([float(v) for v in h.ImagePositionPatient]) @ normal) for h in headers]
    ordered = [headers[i] for i in np.argsort(along, kind="stable")]
    if len(ordered) != volume.source.shape[2]:
        raise AdvsegError(f"{volume.path}: the DICOM series now holds {len(ordered)} files, but "
                          f"{volume.source.shape[2]} slices were read: it changed since it was opened")
    return ordered


def _stored_slices(array: np.ndarray, volume: CTVolume) -> np.ndarray:
    """``(K, rows, columns)``: a canonical array in the input series' own slice and pixel order."""
    stored = nio.apply_orientation(array, invert_ornt(volume.source.ornt_to_canonical))  # (column, row, slice)
    return np.ascontiguousarray(np.transpose(stored, (2, 1, 0)))


def _ds(value: float) -> str:
    """A decimal string (DICOM DS, at most 16 characters) of a number."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _fresh_planes(volume: CTVolume) -> list[dict]:
    """Axial planes of a volume without DICOM input: ImagePositionPatient etc. from its canonical affine."""
    affine = np.asarray(volume.affine, dtype=np.float64)
    dz, dy, dx = volume.spacing
    row_dir = _LPS * affine[:3, 2] / dx  # along a row: the column index x grows
    col_dir = _LPS * affine[:3, 1] / dy  # down a column: the row index y grows
    normal = affine[:3, 0] * _LPS / dz
    if max(abs(row_dir @ col_dir), abs(row_dir @ normal), abs(col_dir @ normal)) > 1e-4:
        raise AdvsegError(f"{volume.path or 'the volume'}: its affine is sheared (the voxel axes are not "
                          "perpendicular), which DICOM slices cannot describe; DICOM output needs a volume "
                          "without shear")
    orientation = [_ds(v) for v in np.concatenate([row_dir, col_dir])]
    planes = []
    for z in range(volume.n_slices):
        position = _LPS * (affine @ np.array([z, 0.0, 0.0, 1.0]))[:3]
        planes.append({"ImagePositionPatient": [_ds(v) for v in position], "ImageOrientationPatient": orientation,
                       "PixelSpacing": [_ds(dy), _ds(dx)], "SliceThickness": _ds(dz),
                       "SliceLocation": _ds(position @ np.cross(row_dir, col_dir))})
    return planes


# ---------------------------------------------------------------------------
# Pixel encoding
# ---------------------------------------------------------------------------


def _encoding(hu: np.ndarray, first) -> tuple[np.ndarray, float, float, int]:
    """``(pixels, slope, intercept, bits_stored)``: the input's encoding where it holds ``hu`` exactly.

    The pixels are int16 (signed) or uint16; otherwise int16, slope 1, intercept 0, HU rounded.
    """
    candidates = []
    if first is not None:
        try:
            slope = float(first.get("RescaleSlope") or 1.0)
            intercept = float(first.get("RescaleIntercept") or 0.0)
            bits = int(first.get("BitsStored") or 16)
            signed = int(first.get("PixelRepresentation") or 0) == 1
            if int(first.get("BitsAllocated") or 16) == 16 and slope != 0 and 1 <= bits <= 16:
                candidates.append((slope, intercept, bits, signed))
        except (TypeError, ValueError):
            pass
    candidates.append((1.0, 0.0, 16, True))
    values = hu.astype(np.float64)
    for slope, intercept, bits, signed in candidates:
        stored = np.rint((values - intercept) / slope)
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if np.array_equal(stored * slope + intercept, values) and stored.min() >= low and stored.max() <= high:
            return stored.astype(np.int16 if signed else np.uint16), slope, intercept, bits
    whole = np.rint(values)
    if whole.min() < -32768 or whole.max() > 32767:
        raise AdvsegError(f"HU {hu.min():g}..{hu.max():g} do not fit a 16-bit DICOM CT image")
    return whole.astype(np.int16), 1.0, 0.0, 16


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _copy(target, source, tags: Sequence[str]) -> None:
    for tag in tags:
        if source is not None and tag in source:
            target[tag] = source[tag]


def _fresh_folder(folder: pathlib.Path, overwrite: bool) -> None:
    """Refuse an existing output folder unless ``overwrite``; never replace a folder of other files."""
    if not folder.exists():
        return
    if not overwrite:
        raise AdvsegError(f"{folder}: exists already (use --overwrite to replace it)")
    if not folder.is_dir() or any(not p.is_file() or p.suffix.lower() != ".dcm" for p in folder.iterdir()):
        raise AdvsegError(f"{folder}: exists and holds more than DICOM files; it is not replaced: choose "
                          "another output folder or name")


def _series_dataset(first, keep: bool, description: str, series_number: int):
    """The tags every file of the series shares: patient, study, frame of reference, series, equipment."""
    from pydicom.dataset import Dataset
    from pydicom.uid import CTImageStorage, generate_uid

    from napari_advseg import __version__

    ds = Dataset()
    if keep:
        _copy(ds, first, ("SpecificCharacterSet",) + _PATIENT_TAGS + _STUDY_TAGS + _FRAME_TAGS)
    else:
        ds.StudyInstanceUID = generate_uid()
        ds.PatientName = "Anonymous^advseg"
        ds.PatientID = f"ADVSEG-{ds.StudyInstanceUID[-12:]}"
        ds.FrameOfReferenceUID = generate_uid()
        ds.PositionReferenceIndicator = ""
    date, time = _now()
    for tag, value in (("StudyInstanceUID", generate_uid()), ("FrameOfReferenceUID", generate_uid()),
                       ("StudyDate", date), ("StudyTime", time)):
        if tag not in ds:
            setattr(ds, tag, value)
    for tag in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                "ReferringPhysicianName", "PositionReferenceIndicator"):  # type 2: present, possibly empty
        if tag not in ds:
            setattr(ds, tag, "")
    _copy(ds, first, _SERIES_TAGS)
    if "PatientPosition" not in ds:  # type 2C for CT: present, empty where unknown
        ds.PatientPosition = ""
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    source_description = str(first.get("SeriesDescription", "") or "") if first is not None else ""
    ds.SeriesDescription = f"ADVERSARIAL ({description}) {source_description}".strip()[:64]
    ds.SeriesDate = ds.ContentDate = date
    ds.SeriesTime = ds.ContentTime = time
    third = str(first.ImageType[2]) if first is not None and len(first.get("ImageType", [])) > 2 else "AXIAL"
    ds.ImageType = ["DERIVED", "SECONDARY", third, "ADVERSARIAL"]
    ds.DerivationDescription = ("adversarial attack: a smooth deformation and intensity field made by a "
                                "generator trained against a segmentation network (napari-advseg)")
    ds.ImageComments = _NOT_FOR_DIAGNOSIS
    ds.BurnedInAnnotation = "NO"
    ds.Manufacturer = ds.ManufacturerModelName = SOFTWARE
    ds.SoftwareVersions = __version__
    ds.RescaleType = "HU"
    return ds


def _slice_dataset(common, number: int, plane: dict, header, pixels: np.ndarray, encoding: tuple):
    """One file of the series: the shared tags, then its plane, CT tags, reference and pixels."""
    import copy

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = copy.deepcopy(common)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.InstanceNumber = number
    for tag, value in plane.items():
        setattr(ds, tag, value)
    _copy(ds, header, _CT_TAGS)
    for tag in ("KVP", "AcquisitionNumber"):  # type 2 of the CT Image module
        if tag not in ds:
            setattr(ds, tag, "")
    if "WindowCenter" not in ds:
        ds.WindowCenter, ds.WindowWidth = "40", "400"
    if header is not None:
        reference = Dataset()
        reference.ReferencedSOPClassUID = header.SOPClassUID
        reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
        ds.SourceImageSequence = [reference]
    slope, intercept, bits = encoding
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=bits)
    return ds


def _save_series(datasets: list, folder: pathlib.Path, overwrite: bool) -> None:
    """Write the files into a temporary folder beside ``folder``, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        for k, ds in enumerate(datasets):
            ds.save_as(tmp / f"CT_{k + 1:04d}.dcm", enforce_file_format=True)
        _fresh_folder(folder, overwrite)  # again: another process may have made it meanwhile
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except AdvsegError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as error:  # noqa: BLE001 - pydicom and the file system raise many kinds
        shutil.rmtree(tmp, ignore_errors=True)
        raise AdvsegError(f"{folder}: could not write the DICOM series ({first_line(error)})") from error


def write_ct_series(hu: np.ndarray, like: CTVolume, folder: str | os.PathLike, *, description: str,
                    drop_patient_tags: bool = False, series_number: int = 1001,
                    overwrite: bool = False) -> WrittenSeries:
    """Write a canonical HU volume as a derived DICOM CT series in the geometry of ``like``.

    Parameters
    ----------
    hu : numpy.ndarray
        ``(Z, Y, X)`` Hounsfield units on the canonical grid of ``like``.
    like : CTVolume
        The input volume: its DICOM files (or, for NIfTI, its affine) give
        the geometry, and its patient and study (see the module docstring).
    folder : str or path-like
        The series' folder; written whole into a temporary folder beside it,
        then renamed into place, so a failure leaves nothing behind.
    description : str
        Follows "ADVERSARIAL" in the SeriesDescription (64 characters in all).
    drop_patient_tags : bool
        A fresh anonymous patient, study and frame of reference, no reference
        to the input images.
    overwrite : bool
        Replace an existing folder of DICOM files.
    """
    folder = pathlib.Path(folder)
    data = np.asarray(hu)
    if data.shape != like.shape:
        raise AdvsegError(f"{folder}: expected a volume of shape {like.shape} (Z, Y, X), got {data.shape}")
    if not np.all(np.isfinite(data)):
        raise AdvsegError(f"{folder}: refusing to write NaN or infinite HU")
    _fresh_folder(folder, overwrite)

    if source_is_dicom(like):
        headers = _source_headers(like)
        planes = [{tag: h[tag].value for tag in _SLICE_TAGS if tag in h} for h in headers]
        slices = _stored_slices(data, like)
    else:
        headers = [None] * like.n_slices
        planes = _fresh_planes(like)
        slices = np.ascontiguousarray(data)
    first = headers[0]
    pixels, slope, intercept, bits = _encoding(slices, first)
    rounding = float(np.max(np.abs(pixels.astype(np.float64) * slope + intercept - slices))) if slices.size else 0.0
    keep = first is not None and not drop_patient_tags
    common = _series_dataset(first, keep, description, series_number)
    datasets = [_slice_dataset(common, k + 1, plane, header if keep else None, pixels[k], (slope, intercept, bits))
                for k, (plane, header) in enumerate(zip(planes, headers))]
    _save_series(datasets, folder, overwrite)
    return WrittenSeries(folder=folder, datasets=datasets, series_uid=str(common.SeriesInstanceUID),
                         study_uid=str(common.StudyInstanceUID),
                         frame_of_reference_uid=str(common.FrameOfReferenceUID),
                         study="source" if keep else "fresh", max_rounding_hu=rounding)


def _segment_descriptions(class_names: Sequence[str], algorithm: str, version: str) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    identification = hd.AlgorithmIdentificationSequence(name=algorithm[:64], version=version[:64],
                                                        family=codes.DCM.ArtificialIntelligence)
    descriptions = []
    for number, name in enumerate(class_names[1:], start=1):
        keyword = _ORGAN_CODES.get(name.lower(), "Organ")
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64], segmented_property_category=codes.SCT.Organ
            if keyword != "Organ" else codes.SCT.AnatomicalStructure,
            segmented_property_type=getattr(codes.SCT, keyword), algorithm_type="AUTOMATIC",
            algorithm_identification=identification))
    return descriptions


def write_seg(labels: np.ndarray, like: CTVolume, series: WrittenSeries, path: str | os.PathLike, *,
              class_names: Sequence[str], description: str, algorithm: str, algorithm_version: str,
              series_number: int = 1002, overwrite: bool = False) -> tuple[pathlib.Path, str]:
    """Write a canonical label map as a DICOM SEG that references the series :func:`write_ct_series` wrote.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(Z, Y, X)`` integer labels on the canonical grid of ``like``:
        value ``c`` is ``class_names[c]``, one segment each (0 is background).
    like : CTVolume
        The volume the series was written for (gives the slice order).
    series : WrittenSeries
        The CT series it lies on.
    path : str or path-like
        The ``.dcm`` file, written atomically.
    description : str
        The SeriesDescription and content description.
    algorithm, algorithm_version : str
        The network that made the segmentation (its file name and a hash).

    Returns
    -------
    (pathlib.Path, str)
        The file and its SOPInstanceUID.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    from napari_advseg import __version__

    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise AdvsegError(f"{path}: exists already (use --overwrite to replace it)")
    data = np.asarray(labels)
    if data.shape != like.shape:
        raise AdvsegError(f"{path}: expected labels of shape {like.shape} (Z, Y, X), got {data.shape}")
    if data.size and (data.min() < 0 or data.max() >= len(class_names)):
        raise AdvsegError(f"{path}: label values {data.min()}..{data.max()} lie outside the class map "
                          f"0..{len(class_names) - 1}")
    frames = _stored_slices(data, like) if source_is_dicom(like) else np.ascontiguousarray(data)
    frames = frames.astype(np.uint8 if len(class_names) <= 256 else np.uint16)
    sop_uid = generate_uid()
    try:
        seg = hd.seg.Segmentation(
            source_images=series.datasets, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_segment_descriptions(class_names, algorithm, algorithm_version),
            series_instance_uid=generate_uid(), series_number=series_number, sop_instance_uid=sop_uid,
            instance_number=1, manufacturer=SOFTWARE, manufacturer_model_name=SOFTWARE,
            software_versions=__version__, device_serial_number="0", content_label="ADVSEG",
            content_description=description[:64], series_description=description[:64],
            omit_empty_frames=bool(frames.any()))
    except Exception as error:  # noqa: BLE001 - highdicom checks raise ValueError, TypeError, ...
        raise AdvsegError(f"{path}: could not encode the DICOM SEG ({first_line(error)})") from error
    try:
        atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True), overwrite=overwrite)
    except AdvsegError:
        raise
    except Exception as error:  # noqa: BLE001
        raise AdvsegError(f"{path}: could not write the DICOM SEG ({first_line(error)})") from error
    return path, sop_uid
