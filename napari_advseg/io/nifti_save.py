"""Writing canonical arrays back to NIfTI files in the geometry of the file they came from."""

from __future__ import annotations

import os
import pathlib

import nibabel
import numpy as np
from nibabel import orientations as nio

from napari_advseg.errors import AdvsegError, first_line
from napari_advseg.io.atomic import atomic_write
from napari_advseg.io.geometry import CTVolume, count_nonfinite, invert_ornt

__all__ = ["hu_dtype", "save_volume"]


def _nifti_suffix(path: pathlib.Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    if name.endswith(".nii"):
        return ".nii"
    raise AdvsegError(f"{path}: the output file name must end in .nii or .nii.gz")


def _cast_for_saving(array: np.ndarray, dtype, path: pathlib.Path) -> np.ndarray:
    """Cast to the on-disk type so that nibabel writes the values as they are (no scaling)."""
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise AdvsegError(f"{path}: cannot save data of type {array.dtype}; expected real numbers")
    if dtype is None:
        target = array.dtype
        if target in (np.dtype(np.int64), np.dtype(np.uint64)):
            target = np.dtype(np.int32)  # 64-bit integers are poorly supported by NIfTI readers
    else:
        try:
            target = np.dtype(dtype)
        except TypeError:
            raise AdvsegError(f"{path}: unknown data type {dtype!r}") from None
    if target == np.bool_:
        target = np.dtype(np.uint8)

    if np.issubdtype(array.dtype, np.floating):
        bad = count_nonfinite(array)
        if bad:
            raise AdvsegError(f"{path}: refusing to save {bad} NaN or infinite value(s)")
    if np.issubdtype(target, np.integer):
        values = np.rint(array) if np.issubdtype(array.dtype, np.floating) else array
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise AdvsegError(
                f"{path}: values {values.min():g}..{values.max():g} do not fit data type {target} "
                f"({info.min}..{info.max})"
            )
        return values.astype(target)
    if np.issubdtype(target, np.floating):
        out = array.astype(target)
        if count_nonfinite(out):
            raise AdvsegError(f"{path}: values overflow data type {target}")
        return out
    raise AdvsegError(f"{path}: cannot save as data type {target}; choose an integer or float type")


def _holds(dtype: np.dtype, values: np.ndarray) -> bool:
    """Whether integer ``dtype`` holds ``values`` (whole numbers) exactly."""
    info = np.iinfo(dtype)
    return values.size == 0 or (values.min() >= info.min and values.max() <= info.max)


def hu_dtype(like: CTVolume, hu: np.ndarray) -> np.dtype:
    """The on-disk type of a HU volume written in the geometry of ``like``: the input's own type where it can.

    - an input stored as unscaled integers (a NIfTI file without
      ``scl_slope`` / ``scl_inter``): that type, when ``hu`` are whole
      numbers it holds;
    - a DICOM series, a volume made in memory, or the case above with values
      the type cannot hold: int16 (else int32) when ``hu`` are whole numbers
      that fit;
    - otherwise the input's floating-point type (float32 for a volume made in
      memory or a DICOM series).
    """
    values = np.asarray(hu)
    header = like.source.header
    stored = np.dtype(header.get_data_dtype()) if header is not None else None
    floating = stored is not None and np.issubdtype(stored, np.floating) and like.series_uid is None
    whole = np.issubdtype(values.dtype, np.integer) or (count_nonfinite(values) == 0
                                                        and np.array_equal(values, np.rint(values)))
    if whole and not floating:
        candidates = [np.dtype(np.int16), np.dtype(np.int32)]
        if stored is not None and np.issubdtype(stored, np.integer):
            slope, inter = header.get_slope_inter()
            if slope in (None, 1.0) and inter in (None, 0.0):
                candidates.insert(0, stored)
        for dtype in candidates:
            if _holds(dtype, values):
                return dtype
    return stored if floating else np.dtype(np.float32)


def _fresh_header(affine: np.ndarray) -> nibabel.Nifti1Header:
    header = nibabel.Nifti1Header()
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header.set_xyzt_units(xyz="mm")
    return header


def save_volume(
    array: np.ndarray,
    like: CTVolume,
    path: str | os.PathLike,
    *,
    dtype=None,
    overwrite: bool = False,
    intent: str | None = None,
) -> pathlib.Path:
    """Write a canonical array back in the geometry of the file ``like`` came from.

    Parameters
    ----------
    array : array_like
        ``(Z, Y, X)`` or ``(Z, Y, X, C)`` array on the canonical grid of
        ``like`` (always the whole volume). The voxel axes are flipped and
        permuted back to the source file's order; a component axis ``C``
        stays last (so the file is 4D). Only the grid is reoriented: vector
        components (e.g. a ``(dy, dx)`` displacement in canonical voxels) are
        stored as they are, still in canonical-axis terms.
    like : CTVolume
        Supplies the source affine, shape and header.
    path : str or path-like
        Output file; ``.nii`` or ``.nii.gz`` (gzip compressed). Missing
        parent folders are created.
    dtype : numpy dtype, optional
        On-disk data type; default the array's own (bool -> uint8, 64-bit
        integers -> int32). Float data saved as an integer type are rounded
        to the nearest integer; values must fit the type. No intensity
        scaling (``scl_slope``) is ever applied, so values are stored exactly.
    overwrite : bool, optional
        Replace an existing file. Default False: an existing file is an error.
    intent : str, optional
        NIfTI intent to record (e.g. ``"label"``, ``"vector"``, as accepted by
        ``Nifti1Header.set_intent``). Default: none (the source header's
        intent is cleared, as are its display range ``cal_min``/``cal_max``).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    AdvsegError
        Wrong shape, unsupported values or type, existing file without
        ``overwrite``, a bad file name, or a failed write. The file is written
        atomically (to a temporary file in the same folder, then renamed over
        ``path``), so a failure never leaves a partial or temporary file.

    Notes
    -----
    The header is a copy of the source header, so the sform and qform keep
    their values and codes, along with units, ``descrip`` and the like. For
    volumes from :func:`~napari_advseg.io.geometry.volume_from_array` (no source header) a fresh header
    is written with the RAS affine as both sform and qform (code 1).
    """
    path = pathlib.Path(path)
    suffix = _nifti_suffix(path)
    if path.is_dir():
        raise AdvsegError(f"{path}: is a folder; give a file name ending in .nii or .nii.gz")
    if path.exists() and not overwrite:
        raise AdvsegError(f"{path}: file already exists (pass overwrite=True to replace it)")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AdvsegError(f"{path}: cannot create the output folder {folder} ({first_line(error)})") from None

    data = np.asarray(array)
    if data.ndim not in (3, 4) or data.shape[:3] != like.shape:
        raise AdvsegError(
            f"{path}: expected an array of shape {like.shape} or {like.shape + ('C',)} (Z, Y, X[, C]), "
            f"got {data.shape}"
        )
    data = _cast_for_saving(data, dtype, path)

    source = like.source
    stored = nio.apply_orientation(data, invert_ornt(source.ornt_to_canonical))
    if tuple(stored.shape[:3]) != tuple(source.shape):  # pragma: no cover - internal consistency
        raise AdvsegError(f"{path}: internal error: reoriented shape {stored.shape} != source {source.shape}")
    stored = np.ascontiguousarray(stored)

    if source.header is not None:
        header = source.header.copy()
    else:
        header = _fresh_header(source.affine)
    try:
        image = nibabel.Nifti1Image(stored, source.affine, header=header, dtype=stored.dtype)
        out_header = image.header
        # Keep the sform and qform exactly as in the source, with their codes.
        if source.header is not None:
            for key in (
                "sform_code",
                "qform_code",
                "srow_x",
                "srow_y",
                "srow_z",
                "quatern_b",
                "quatern_c",
                "quatern_d",
                "qoffset_x",
                "qoffset_y",
                "qoffset_z",
            ):
                out_header[key] = source.header[key]
            out_header["pixdim"][0] = source.header["pixdim"][0]
        out_header["cal_min"] = 0
        out_header["cal_max"] = 0
        if intent is None:
            out_header.set_intent("none")
        else:
            out_header.set_intent(intent)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - nibabel header errors
        raise AdvsegError(f"{path}: cannot build the NIfTI image ({first_line(error, path)})") from None

    def write(tmp: pathlib.Path) -> None:
        nibabel.save(image, tmp)
        # Checked again after the write: another process may have created the file meanwhile.
        if path.exists() and not overwrite:
            raise AdvsegError(f"{path}: file already exists (pass overwrite=True to replace it)")

    try:
        # The temporary file keeps the .nii / .nii.gz suffix: nibabel chooses gzip compression by name.
        atomic_write(path, write, suffix=suffix)
    except AdvsegError:
        raise
    except Exception as error:  # noqa: BLE001 - nibabel and the file system raise many kinds
        raise AdvsegError(f"{path}: could not write the file ({first_line(error, path)})") from error
    return path
