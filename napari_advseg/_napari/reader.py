"""napari reader: NIfTI CT volumes and label maps, and DICOM CT series, as Image and Labels layers.

Every NIfTI file is read with :func:`napari_advseg.io.nifti.load_ct`, so an image and
a label map from the same voxel grid come out in the same canonical
``(Z, Y, X)`` order (inferior -> superior, anterior -> posterior, patient
right -> left). ``layer.data[z]`` shown by napari with row 0 at the top is then
an axial slice in the radiological convention: anterior up, the patient's
left on the right of the screen.

The layer's ``metadata`` keeps what the writer (:mod:`napari_advseg._napari.writer`)
needs to put the data back in the file's own orientation and header: its kind,
the file, the canonical affine and the source geometry (the ``advseg_*``
entries of :mod:`napari_advseg._napari.layers`).

DICOM: a folder (File > Open Folder), one ``.dcm`` file of a series, or a
list of a series' files is read with :mod:`napari_advseg.io.dicom` into the
same canonical order, as an Image layer in Hounsfield units with the same
scale, metadata and display as a NIfTI CT (plus ``advseg_series_uid``). A
folder holding several series opens each as its own layer, named by its
SeriesDescription. What is not a CT volume (localisers, other modalities,
secondary captures, dose reports, ...) is skipped and listed in an info
notification, with how images without SeriesInstanceUID were grouped; a CT
series that fails the checks (a gap, mixed sizes, ...) is left out with an
error notification that names it and the problem. To pick one series of a
large study, use the dock widget's Data tab ("DICOM folder…" and its series
list) instead.

napari, nibabel and pydicom are imported inside the functions, so that importing this
module (which napari does when it looks for a reader) stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from napari_advseg._napari import layers as meta
from napari_advseg._napari.label_values import label_array, looks_like_labels
from napari_advseg.errors import AdvsegError, InputFileError
from napari_advseg.data.intensity import DEFAULT_WINDOW

__all__ = [
    "CT_CONTRAST_LIMITS",
    "NIFTI_SUFFIXES",
    "get_reader",
    "layer_name",
    "read_dicom",
    "series_layer",
    "read_layer",
    "read_nifti",
]

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
"""File name endings the reader accepts (case-insensitive)."""

CT_CONTRAST_LIMITS: tuple[float, float] = DEFAULT_WINDOW
"""Initial display window of CT images: an abdominal soft-tissue window in HU."""

KINDS = meta.FILE_KINDS
"""Values of the ``advseg_kind`` metadata entry of a layer read from a file."""

LayerDataTuple = tuple


def layer_name(path: str | os.PathLike) -> str | None:
    """The file name without ``.nii`` / ``.nii.gz``, or None for other files.

    Parameters
    ----------
    path : str or path-like
        A file path.

    Returns
    -------
    str or None
        The stem (``"ct"`` for ``/data/ct.nii.gz``); None when the name does
        not end in a NIfTI suffix or is nothing but the suffix.
    """
    name = os.path.basename(os.fspath(path))
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def get_reader(path) -> Callable[[str], list[LayerDataTuple]] | None:
    """npe2 reader contribution: a reader function for a NIfTI file or a DICOM series, else None.

    Parameters
    ----------
    path : str, path-like or list
        What napari asks about: a file, a folder, or a list of files (a
        stack). NIfTI files (``.nii``, ``.nii.gz``), DICOM files (``.dcm``,
        ``.dicom`` or any file that starts like DICOM), folders holding DICOM
        files and lists of DICOM files are taken; everything else is
        declined.

    Returns
    -------
    callable or None
        :func:`read_nifti` for a NIfTI file, :func:`read_dicom` for DICOM;
        None otherwise, so that napari offers the path to other readers.
    """
    from napari_advseg.io.dicom import is_dicom_path

    try:
        if isinstance(path, (list, tuple)):
            if path and all(not os.path.isdir(p) and is_dicom_path(p) for p in path):
                return read_dicom
            return None
        if os.path.isdir(path):
            from napari_advseg.io.dicom import looks_like_dicom

            return read_dicom if looks_like_dicom(path) else None
        if layer_name(path) is not None:
            return read_nifti
        return read_dicom if is_dicom_path(path) else None
    except TypeError:
        return None


def read_nifti(path) -> list[LayerDataTuple]:
    """Read one NIfTI file as a layer; problems become a napari notification.

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file (a one-element list is accepted too).

    Returns
    -------
    list of tuple
        ``[(data, kwargs, layer_type)]``, see :func:`read_layer`. When the
        file cannot be read (missing, corrupt, not NIfTI, not 3D, ...), the
        one-line message is shown with ``napari.utils.notifications.show_error``
        and ``[(None,)]`` is returned: npe2's "read, but no layers" value, so
        napari adds nothing and raises nothing (an empty list would make
        ``viewer.open`` raise "returned no data").
    """
    if isinstance(path, (list, tuple)) and len(path) == 1:
        path = path[0]
    try:
        return [read_layer(path)]
    except AdvsegError as error:
        message = str(error)
    except MemoryError:
        message = f"{path}: not enough memory to read this volume"
    from napari.utils.notifications import show_error

    show_error(message)
    return [(None,)]


def read_dicom(path) -> list[LayerDataTuple]:
    """Read the DICOM CT series of a folder, a file or a list of files, one Image layer per series.

    Parameters
    ----------
    path : str, path-like or list
        A folder (searched recursively), one file of a series (its folder's
        files of that series are read) or the files of a series.

    Returns
    -------
    list of tuple
        One ``(data, kwargs, "image")`` per CT series that reads cleanly, see
        :func:`series_layer`. What was skipped (not a CT volume) and how
        images without UID were grouped is said in one ``show_info``
        notification; CT series that fail a check are left out and named in
        one ``show_error`` notification; when none can be read, the error
        notification is all and ``[(None,)]`` is returned (napari adds nothing).
    """
    from napari_advseg.io.dicom import find_series

    if isinstance(path, (list, tuple)) and len(path) == 1:
        path = path[0]
    problems: list[str] = []
    notes: list[str] = []
    layers: list[LayerDataTuple] = []
    try:
        found = find_series(list(path) if isinstance(path, (list, tuple)) else path)
        notes = found.all_notes()
        for series in found:
            try:
                layers.append(series_layer(series, unique_names=len(found) > 1))
            except AdvsegError as error:
                problems.append(str(error))
            except MemoryError:
                problems.append(f"series {series.uid}: not enough memory to read it")
    except AdvsegError as error:
        problems.append(str(error))
    from napari.utils import notifications

    if notes and layers:
        notifications.show_info(" | ".join(notes))
    if problems:
        skipped = "" if not layers else f"{len(problems)} DICOM series not opened: "
        notifications.show_error(skipped + " | ".join(problems))
    return layers or [(None,)]


def series_layer(series, name: str | None = None, unique_names: bool = False) -> LayerDataTuple:
    """One DICOM series (:class:`~napari_advseg.io.dicom.DicomSeries`) read as an Image layer data tuple.

    Parameters
    ----------
    series : DicomSeries
        From :func:`napari_advseg.io.dicom.find_series`.
    name : str, optional
        Layer name; default the SeriesDescription (or "series N", or the
        folder's name).
    unique_names : bool
        Add the SeriesNumber to the default name (several series of one
        folder may share a description).

    Raises
    ------
    InputFileError
        The series fails a check of :func:`napari_advseg.io.dicom.read_series`.
    """
    from napari_advseg.io.dicom import read_series

    volume = read_series(series)
    if name is None:
        name = series.description or (f"series {series.number}" if series.number is not None else "")
        name = name or os.path.basename(os.path.normpath(os.fspath(series.where))) or "DICOM"
        if unique_names and series.number is not None and name != f"series {series.number}":
            name = f"{name} ({series.number})"
    return _layer_tuple(volume, meta.CT, name, volume.path)


def _organ_colormap(n_values: int, class_names=None):
    """The colours of the label map's classes as a napari colormap, or None when no class map covers the labels.

    ``class_names`` (the sidecar's) colour the values by name
    (:func:`napari_advseg.organs.class_colours`); without them the values are
    read as the organ class map when they fit it.
    """
    from napari_advseg.organs import ORGAN_CLASSES

    if class_names is None:
        if n_values > len(ORGAN_CLASSES):
            return None
        class_names = ORGAN_CLASSES
    return meta.class_colormap(class_names)


def read_layer(path: str | os.PathLike, kind: str | None = None, name: str | None = None,
               series: str | None = None) -> LayerDataTuple:
    """Read a NIfTI file (or one DICOM CT series) as one napari layer data tuple, in canonical order.

    Parameters
    ----------
    path : str or path-like
        ``.nii`` or ``.nii.gz`` file holding a 3D volume (a 4D file whose
        extra dimensions have size 1 is accepted); or a DICOM series (a
        folder or one of its files, read as a CT image, never as labels).
    kind : {'ct', 'labels'}, optional
        Force the layer type. Default: decided from the values with
        :func:`~napari_advseg._napari.label_values.looks_like_labels` (labels -> Labels layer,
        else Image).
    name : str, optional
        Layer name; default the file name without ``.nii`` / ``.nii.gz``.
    series : str, optional
        DICOM SeriesInstanceUID, for a folder holding several series.

    Returns
    -------
    tuple
        ``(data, kwargs, layer_type)``. ``layer_type`` is ``"image"`` (data:
        float32 HU, gray colormap, contrast limits :data:`CT_CONTRAST_LIMITS`)
        or ``"labels"`` (data: uint8, or int16 / int32 for values above 255;
        each class's colour by its name, from the sidecar's names or, without a
        sidecar, the organ class map when the values fit it).
        ``kwargs`` has ``name``, ``scale`` (the voxel spacing ``(dz, dy, dx)``
        in mm) and ``metadata`` (see the module docstring; a label map's
        sidecar JSON, ``labels.nii.gz`` and ``labels.json``, gives its value
        names as ``advseg_label_names``).

    Raises
    ------
    InputFileError
        The file is missing, not NIfTI, corrupt or truncated, not 3D, holds
        NaN/inf, has a degenerate affine; or ``kind='labels'`` for a file
        that does not hold whole non-negative numbers; or a label map's
        sidecar is bad (naming the sidecar).
    AdvsegError
        Unknown ``kind``.
    """
    from napari_advseg.io.volumes import load_volume

    if kind is not None and kind not in KINDS:
        raise AdvsegError(f"unknown layer kind {kind!r}: choose one of {', '.join(KINDS)}")
    volume = load_volume(path, series)
    if volume.series_uid is not None:
        if kind == meta.LABELS:
            raise InputFileError(path, "DICOM series are read as CT images only, not as label maps")
        kind = meta.CT
    if kind is None:
        kind = meta.LABELS if looks_like_labels(volume.hu) else meta.CT
    if name is None:
        name = layer_name(path) or os.path.basename(os.path.normpath(os.fspath(path)))
    names = None
    if kind == meta.LABELS:
        from napari_advseg.io.labels import read_label_names

        names = read_label_names(path)
    return _layer_tuple(volume, kind, name, path, names)


def _layer_tuple(volume, kind: str, name: str, path, label_names=None) -> LayerDataTuple:
    """The layer data tuple of a canonical volume (see :func:`read_layer`)."""
    metadata = meta.file_metadata(volume, kind, path)
    if label_names is not None:
        metadata[meta.LABEL_NAMES] = list(label_names)
    kwargs: dict = {"name": name, "scale": tuple(float(s) for s in volume.spacing), "metadata": metadata}
    if kind == meta.LABELS:
        data = label_array(volume.hu, path)
        colormap = _organ_colormap(int(data.max()) + 1 if data.size else 1, label_names)
        if colormap is not None:
            kwargs["colormap"] = colormap
        return (data, kwargs, "labels")
    kwargs["colormap"] = "gray"
    kwargs["contrast_limits"] = list(CT_CONTRAST_LIMITS)
    return (volume.hu, kwargs, "image")
