"""Cases: a CT volume, its reference labels and the normalised slices a target sees."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_advseg.data.class_map import ClassMapping, map_classes
from napari_advseg.data.intensity import IntensityScale, scale_for
from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.data.samples import sample_file
from napari_advseg.data.slices import split_slices
from napari_advseg.errors import AdvsegError
from napari_advseg.io.geometry import CTVolume
from napari_advseg.io.labels import check_labels
from napari_advseg.io.nifti import load_labels
from napari_advseg.io.volumes import load_volume


@dataclass
class Case:
    """One volume ready for the attack.

    Attributes
    ----------
    volume : CTVolume (canonical (Z, Y, X) order, HU)
    labels : uint8 (Z, Y, X) reference labels, or None
    scale : IntensityScale that maps HU to the target's input
    images : float32 (Z, Y, X) normalised slices
    name : a short name for reports
    class_mapping : how the reference label values became the target's class indices (None: not mapped)
    """

    volume: CTVolume
    labels: np.ndarray | None
    scale: IntensityScale
    images: np.ndarray
    name: str
    class_mapping: ClassMapping | None = None

    def part(self, part: str = "all") -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(images, labels, slice indices) of a split: ``all``, ``train`` or ``test`` (z % 3 == 2)."""
        index = split_slices(self.volume.n_slices, part)
        labels = None if self.labels is None else self.labels[index]
        return self.images[index], labels, index


def make_case(volume: CTVolume, labels: np.ndarray | None, normalisation: dict | None,
              name: str | None = None, class_mapping: ClassMapping | None = None) -> Case:
    """Normalise a volume for a target."""
    scale = scale_for(volume.hu, normalisation)
    images = scale.apply(volume.hu).astype(np.float32, copy=False)
    return Case(volume, labels, scale, images, name or (Path(volume.path).name if volume.path else "volume"),
                class_mapping)


def load_case(ct: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
              normalisation: dict | None = None, class_names=ORGAN_CLASSES, series: str | None = None,
              reference_names=ORGAN_CLASSES) -> Case:
    """Load a CT and (optional) labels; with neither given, the shipped sample.

    ``ct`` is a NIfTI file or a DICOM series (a folder, one of its files or a
    list of its files; ``series`` chooses a SeriesInstanceUID when a folder
    holds several), see :func:`napari_advseg.io.volumes.load_volume`. Labels
    are NIfTI on the CT's voxel grid. A CT given without labels is the
    label-free mode (labels None).

    The label values are named by ``reference_names``; where the target's
    ``class_names`` do not start with the same names in the same order, the
    values are mapped by name into the target's indices
    (:func:`napari_advseg.data.class_map.map_classes`, kept as
    ``case.class_mapping``); otherwise they are read as the target's indices.
    """
    if ct is None:
        if series is not None:
            raise AdvsegError("a DICOM series was chosen (--series) without a CT (--ct)")
        ct = sample_file("ct")
        if labels is None:
            labels = sample_file("labels")
    volume = load_volume(ct, series)
    if labels is None:
        return make_case(volume, None, normalisation)
    mapping = map_classes(reference_names, class_names)
    if tuple(class_names[:len(reference_names)]) == tuple(reference_names) or not mapping.by_name:
        label_array = load_labels(labels, volume, class_names)
    else:
        label_array = mapping.apply(load_labels(labels, volume, reference_names))
    return make_case(volume, label_array, normalisation, class_mapping=mapping)


def phantom_case(seed: int, normalisation: dict | None, shape=(48, 128, 128)) -> Case:
    """A synthetic subject (``napari_advseg.data.phantom``) as a case."""
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.io.geometry import volume_from_array

    phantom = make_phantom(seed, shape)
    volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
    labels = check_labels(phantom.labels, volume, phantom.class_names)
    return make_case(volume, labels, normalisation, name=f"phantom-{seed}")
