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
                 slope: float = SLOPE, intercept: float = INTERCEPT, syntax: str = "explicit",
                 signed: bool = True, seed: int = 0, prefix: str = "") -> list[Path]:
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
        position = (_LPS @ affine @ np.array([0.0, 0.0, float(k), 1.0]))[:3]
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
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
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = number
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        ds.PixelSpacing = [f"{row_spacing:.6f}", f"{column_spacing:.6f}"]
        ds.SliceThickness = f"{np.linalg.norm(affine[:3, 2]):.6f}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleType = "HU"
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
        path = folder / f"{names[k]}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


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
