"""Layer metadata: the ``advseg_*`` entries of napari layers, in one place.

The reader (:mod:`napari_advseg._napari.reader`) writes them, the writer and
the dock widget read them, the sample data adds the model files:

``advseg_kind`` (:data:`KIND`)
    ``"ct"`` or ``"labels"`` for layers read from a file; ``"output"`` for the
    layers the widget makes (never offered as its input).
``advseg_path`` (:data:`PATH`)
    The file read, as a string.
``advseg_affine`` (:data:`AFFINE`)
    The canonical 4x4 affine (voxel ``(z, y, x)`` -> RAS+ mm) as nested lists.
``advseg_source`` (:data:`SOURCE`)
    The :class:`~napari_advseg.io.nifti.SourceGeometry` of the file (stored
    affine, shape, header and orientation transform), kept in memory only.
``advseg_label_names`` (:data:`LABEL_NAMES`)
    The names of a label map's values (list of str, value 0 first), from the
    labels file's sidecar (:func:`napari_advseg.io.labels.read_label_names`);
    absent when the file has none (the six organs). The dock widget scores
    the values as the target's classes of the same names. The dock widget's
    own organ-coloured Labels layers carry the target's class names here.
``advseg_series_uid`` (:data:`SERIES`)
    The DICOM SeriesInstanceUID of a layer read from a DICOM series (absent
    for NIfTI); carried into the volume the widget attacks, and so into the
    JSON sidecar of its exports.
``advseg_target``, ``advseg_generator`` (:data:`TARGET`, :data:`GENERATOR`)
    Paths (str) of a target network and a generator trained against it; the
    dock widget loads them when the CT layer is chosen (the sample data sets
    both).

napari and nibabel are imported only inside functions, so the reader
stays cheap to import.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_advseg.errors import AdvsegError

KIND = "advseg_kind"
PATH = "advseg_path"
AFFINE = "advseg_affine"
SOURCE = "advseg_source"
SERIES = "advseg_series_uid"
LABEL_NAMES = "advseg_label_names"
TARGET = "advseg_target"
GENERATOR = "advseg_generator"

CT, LABELS, OUTPUT = "ct", "labels", "output"
"""Values of :data:`KIND`."""

FILE_KINDS = (CT, LABELS)
"""The kinds a file is read as."""


def label_names(layer) -> tuple[str, ...] | None:
    """The names a Labels layer's :data:`LABEL_NAMES` entry gives its values (None when it has none)."""
    names = (getattr(layer, "metadata", None) or {}).get(LABEL_NAMES)
    return None if names is None else tuple(names)


def class_colormap(class_names: Sequence[str]):
    """A napari DirectLabelColormap giving each value of a class map (value -> name) its class's colour
    (:func:`napari_advseg.organs.class_colours`), grey for values outside it."""
    from napari.utils.colormaps import DirectLabelColormap

    from napari_advseg.organs import OUTSIDE_COLOUR, class_colours

    colours: dict = dict(class_colours(tuple(class_names)))
    colours[None] = OUTSIDE_COLOUR
    return DirectLabelColormap(color_dict=colours)


def layer_kind(layer) -> str | None:
    """A layer's :data:`KIND` entry (None when it has none)."""
    return (getattr(layer, "metadata", None) or {}).get(KIND)


def is_output(layer) -> bool:
    """Whether ``layer`` was made by the dock widget."""
    return layer_kind(layer) == OUTPUT


def output_metadata() -> dict:
    """Metadata of a layer the dock widget makes."""
    return {KIND: OUTPUT}


def file_metadata(volume, kind: str, path) -> dict:
    """Metadata of a layer read from ``path``: its kind, the file and its geometry.

    Parameters
    ----------
    volume : CTVolume
        The volume read (its canonical affine and source geometry are kept).
    kind : {'ct', 'labels'}
    path : str or path-like
    """
    metadata = {
        KIND: kind,
        PATH: str(path),
        AFFINE: np.asarray(volume.affine, dtype=np.float64).tolist(),
        SOURCE: volume.source,
    }
    if getattr(volume, "series_uid", None):
        metadata[SERIES] = volume.series_uid
    return metadata


def with_models(metadata: dict, target=None, generator=None) -> dict:
    """``metadata`` with the target and generator files a CT layer names (in place; returned)."""
    if target is not None:
        metadata[TARGET] = str(target)
    if generator is not None:
        metadata[GENERATOR] = str(generator)
    return metadata


def volume_from_layer(data, scale: Sequence[float], metadata: dict | None, name: str = "CT"):
    """A :class:`~napari_advseg.io.geometry.CTVolume` for the data of an Image layer.

    Parameters
    ----------
    data : array_like
        Canonical ``(Z, Y, X)`` Hounsfield units.
    scale : sequence of float
        The layer's scale (voxel size in mm along Z, Y, X).
    metadata : dict or None
        The layer's metadata; with :data:`SOURCE` and :data:`AFFINE` (set by
        the reader) the volume keeps the geometry of the file it came from, so
        that exports overlay that file.
    name : str
        Used in error messages when the layer is not a CT volume.

    Returns
    -------
    CTVolume
    """
    from napari_advseg.io.geometry import CTVolume, volume_from_array

    metadata = metadata or {}
    array = np.asarray(data)
    if array.ndim != 3:
        raise AdvsegError(f"layer {name!r}: the attack needs a 3D (Z, Y, X) CT volume, got shape {array.shape}")
    source = metadata.get(SOURCE)
    affine = metadata.get(AFFINE)
    if source is not None and affine is not None:
        volume = volume_from_array(array, scale, metadata.get(PATH) or name)
        return CTVolume(volume.hu, np.asarray(affine, dtype=np.float64), volume.spacing, source,
                        metadata.get(PATH), series_uid=metadata.get(SERIES))
    return volume_from_array(array, scale)
