"""Small synthetic DICOM CT series written by the tests themselves, and their NIfTI equivalents.

A series is described the way a NIfTI file is: a stored ``(I, J, K)`` array
of raw pixel values and the RAS+ affine of that array. :func:`write_series`
turns it into single-frame CT files, one per ``k``, the way a scanner writes
them: pixel row ``j`` and column ``i`` of slice ``k`` is voxel ``(i, j, k)``,
ImagePositionPatient is where voxel ``(0, 0, k)`` lies, ImageOrientationPatient
holds the directions of the ``i`` and ``j`` axes, all in DICOM's LPS
coordinates (RAS with x and y negated). :func:`write_equivalent_nifti` writes
the same voxels and affine as a NIfTI file in Hounsfield units.
"""

from __future__ import annotations

import random
from pathlib import Path

import nibabel
import numpy as np

SHAPE = (40, 32, 12)  # stored (I columns, J rows, K slices); OpenJPEG needs sides >= 32
SLOPE, INTERCEPT = 1.0, -1024.0

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def axial_affine(spacing=(0.75, 0.8, 2.5), origin=(-9.0, 7.5, -31.25)) -> np.ndarray:
    """RAS affine of an axial series as scanners store it: i -> patient left, j -> posterior, k -> superior.

    ``origin`` is RAS. In LPS terms: rows along +x, columns along +y, slices along +z.
    """
    dc, dr, dz = spacing
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-dc, -dr, dz])
    affine[:3, 3] = origin
    return affine


def sagittal_affine(spacing=(0.9, 1.1, 3.0), origin=(20.0, 15.0, 40.0), reverse_slices=True) -> np.ndarray:
    """RAS affine of a sagittal series: i -> posterior, j -> inferior, k across the patient.

    DICOM ImageOrientationPatient (0, 1, 0, 0, 0, -1): the row direction is
    posterior (LPS +y), the column direction inferior (LPS -z); the normal
    (row x column) points to the patient's right (LPS -x). With
    ``reverse_slices`` the files' k order runs against the normal (towards
    the patient's left), so the reader must reverse them.
    """
    dc, dr, dz = spacing
    affine = np.eye(4)
    affine[:3, 0] = [0.0, -dc, 0.0]  # posterior: RAS -y
    affine[:3, 1] = [0.0, 0.0, -dr]  # inferior: RAS -z
    affine[:3, 2] = [dz if reverse_slices else -dz, 0.0, 0.0]  # left (RAS +x) or right (RAS -x)
    affine[:3, 3] = origin
    return affine


def oblique_affine(degrees=17.0, spacing=(0.7, 0.7, 2.0), origin=(5.0, -12.0, 60.0)) -> np.ndarray:
    """An axial series tilted about the patient's left-right axis (a rotated, not sheared, stack)."""
    angle = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    affine = rotation @ axial_affine(spacing, (0.0, 0.0, 0.0))
    affine[:3, 3] = origin
    return affine


def raw_volume(seed=0, shape=SHAPE, low=0, high=2400) -> np.ndarray:
    """Random raw pixel values (as a scanner stores them before RescaleIntercept), with a marker."""
    data = np.random.default_rng(seed).integers(low, high, size=shape)
    data[1, 2, 3] = high + 200  # one voxel brighter than all others
    return data


def _lps_vector(ras: np.ndarray) -> np.ndarray:
    return (_LPS[:3, :3] @ ras).astype(np.float64)


def write_series(folder: Path, raw: np.ndarray, affine: np.ndarray, *, series_uid: str | None = None,
                 description: str = "synthetic CT", number: int = 1, modality: str = "CT",
                 slope=SLOPE, intercept=INTERCEPT, syntax: str = "explicit",
                 signed: bool = True, seed: int = 0, prefix: str = "", suffix: str = ".dcm",
                 blank_uids: bool = False, preamble: bool = True, image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
                 padding: int | None = None, sop_class: str | None = None) -> list[Path]:
    """Write ``raw`` (stored ``(I, J, K)``) as one file per slice; returns the paths, in k order.

    Parameters
    ----------
    syntax : {"explicit", "implicit", "jpeg2000", "rle", "jpeg-lossless"}
        Transfer syntax: Explicit / Implicit VR Little Endian (uncompressed),
        JPEG 2000 Lossless (pydicom's encoder with pylibjpeg-openjpeg), RLE
        Lossless (pydicom's own encoder), or JPEG Lossless, first-order
        prediction (process 14 SV1, encoded with imagecodecs' libjpeg-turbo).
    signed : bool
        PixelRepresentation 1 (int16) or 0 (uint16, 12 bits stored).
    seed : int
        Shuffles the file names, so that name order says nothing of position.
    slope, intercept : float or sequence of float
        RescaleSlope / RescaleIntercept, one for all slices or one per slice.
    blank_uids : bool
        Write SeriesInstanceUID, StudyInstanceUID, SOPInstanceUID and
        SOPClassUID empty, as anonymisers do (the file meta keeps its UIDs).
    preamble : bool
        False: no 128-byte preamble, no DICM marker and no file meta (Implicit
        VR Little Endian, as old exports write).
    padding : int, optional
        PixelPaddingValue (stored value).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless,
                             JPEGLosslessSV1, MRImageStorage, RLELossless, generate_uid)

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid(entropy_srcs=["study", str(folder)])
    frame_uid = generate_uid(entropy_srcs=["frame", str(folder)])
    row_dir = _lps_vector(affine[:3, 0])
    col_dir = _lps_vector(affine[:3, 1])
    column_spacing, row_spacing = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    orientation = np.concatenate([row_dir / column_spacing, col_dir / row_spacing])
    n = raw.shape[2]
    names = [f"{prefix}{i:04d}" for i in range(n)]
    random.Random(seed).shuffle(names)
    paths = []
    for k in range(n):
        pixels = np.ascontiguousarray(raw[:, :, k].T, dtype=np.int16 if signed else np.uint16)
        slice_slope = slope[k] if np.ndim(slope) else slope
        slice_intercept = intercept[k] if np.ndim(intercept) else intercept
        position = (_LPS @ affine @ np.array([0.0, 0.0, float(k), 1.0]))[:3]
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class or (CTImageStorage if modality == "CT" else MRImageStorage)
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if syntax == "implicit" else ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = sop_uid
        ds.Modality = modality
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "advseg-test"
        ds.StudyInstanceUID = study_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20240101", "120000", "1"
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = number
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        ds.PixelSpacing = [f"{row_spacing:.6f}", f"{column_spacing:.6f}"]
        ds.SliceThickness = f"{np.linalg.norm(affine[:3, 2]):.6f}"
        ds.RescaleSlope = f"{slice_slope:g}"
        ds.RescaleIntercept = f"{slice_intercept:g}"
        ds.RescaleType = "HU"
        ds.ImageType = image_type
        if padding is not None:
            ds.PixelPaddingValue = padding
        ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=16 if signed else 12)
        if syntax == "jpeg2000":
            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        elif syntax == "rle":
            ds.compress(RLELossless, encoding_plugin="pydicom")
        elif syntax == "jpeg-lossless":
            import imagecodecs

            if signed:
                raise ValueError("the JPEG lossless fixture stores unsigned pixels (signed=False)")
            frame = imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1, bitspersample=12)
            ds.PixelData = encapsulate([bytes(frame)])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        elif syntax not in ("explicit", "implicit"):
            raise ValueError(f"unknown syntax {syntax!r}")
        if padding is not None:
            ds["PixelPaddingValue"].VR = "SS" if signed else "US"
        if blank_uids:
            for name in ("SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
                setattr(ds, name, "")
        path = folder / f"{names[k]}{suffix}"
        if preamble:
            ds.save_as(path, enforce_file_format=True)
        else:
            del ds.file_meta
            ds.save_as(path, implicit_vr=True, little_endian=True)
        paths.append(path)
    return paths


def write_enhanced(path: Path, raw: np.ndarray, affine: np.ndarray, *, slopes=None, intercepts=None,
                   description: str = "enhanced CT", number: int = 5, syntax: str = "explicit") -> Path:
    """``raw`` as one Enhanced CT Image Storage object: a frame per ``k``, placed by functional groups.

    The orientation and pixel size are shared functional groups; each frame
    has its own ImagePositionPatient and (``slopes``/``intercepts`` given
    per frame) its own rescale values, else a shared RescaleIntercept of
    -1024. The frames are stored in the order of decreasing ``k``.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

    def item(**values) -> Dataset:
        entry = Dataset()
        for key, value in values.items():
            setattr(entry, key, value)
        return entry

    path.parent.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = _lps_vector(affine[:3, 0]), _lps_vector(affine[:3, 1])
    column_spacing, row_spacing = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    n = raw.shape[2]
    order = list(reversed(range(n)))
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, sop_uid
    ds.Modality = "CT"
    ds.PatientName, ds.PatientID = "Synthetic^Phantom", "advseg-test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = description, number, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20240101", "120000", "20240101120000"
    ds.NumberOfFrames = n
    shared = item(
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[f"{row_spacing:.6f}", f"{column_spacing:.6f}"],
                                             SliceThickness=f"{np.linalg.norm(affine[:3, 2]):.6f}")]),
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[
            f"{v:.8f}" for v in np.concatenate([row_dir / column_spacing, col_dir / row_spacing])])]))
    if slopes is None:
        shared.PixelValueTransformationSequence = Sequence([item(RescaleSlope="1", RescaleIntercept="-1024",
                                                                 RescaleType="HU")])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for index, k in enumerate(order):
        position = (_LPS @ affine @ np.array([0.0, 0.0, float(k), 1.0]))[:3]
        frame = item(PlanePositionSequence=Sequence([item(ImagePositionPatient=[f"{v:.6f}" for v in position])]),
                     FrameContentSequence=Sequence([item(StackID="1", InStackPositionNumber=k + 1,
                                                         DimensionIndexValues=[1, k + 1])]))
        if slopes is not None:
            frame.PixelValueTransformationSequence = Sequence([item(
                RescaleSlope=f"{slopes[k]:g}", RescaleIntercept=f"{intercepts[k]:g}", RescaleType="HU")])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    dimension = generate_uid()
    ds.DimensionOrganizationSequence = Sequence([item(DimensionOrganizationUID=dimension)])
    ds.DimensionIndexSequence = Sequence([
        item(DimensionOrganizationUID=dimension, DimensionIndexPointer=0x00209056,
             FunctionalGroupPointer=0x00209111),
        item(DimensionOrganizationUID=dimension, DimensionIndexPointer=0x00209057,
             FunctionalGroupPointer=0x00209111)])
    pixels = np.ascontiguousarray(np.stack([raw[:, :, k].T for k in order]), dtype=np.int16)
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=16)
    if syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    ds.save_as(path, enforce_file_format=True)
    return path


def write_report(path: Path, series_number: int = 997) -> Path:
    """An X-Ray Radiation Dose SR object: a DICOM file with no image, as scanners leave beside a series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, XRayRadiationDoseSRStorage, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRayRadiationDoseSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = XRayRadiationDoseSRStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "SR", "Dose Report", series_number
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Synthetic^Phantom", "advseg-test"
    ds.save_as(path, enforce_file_format=True)
    return path


def hounsfield(raw: np.ndarray, slope: float = SLOPE, intercept: float = INTERCEPT) -> np.ndarray:
    """The raw values in HU, as the reader should give them (float32)."""
    return (raw.astype(np.float64) * slope + intercept).astype(np.float32)


def write_equivalent_nifti(path: Path, raw: np.ndarray, affine: np.ndarray, slope: float = SLOPE,
                           intercept: float = INTERCEPT) -> Path:
    """The series as a NIfTI file: the same voxels in HU with the same (RAS) affine."""
    image = nibabel.Nifti1Image(hounsfield(raw, slope, intercept), affine)
    image.header.set_sform(affine, code=1)
    image.header.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nibabel.save(image, path)
    return path
