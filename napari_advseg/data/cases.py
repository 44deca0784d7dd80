"""Cases: a CT volume, its reference labels and the normalised slices a target sees."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
from napari_advseg.io.labels import check_label_names, check_labels, read_label_names
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


def mapped_labels(read: Callable[[Sequence[str]], np.ndarray], class_names: Sequence[str],
                  label_names: Sequence[str] | None = None) -> tuple[np.ndarray, ClassMapping]:
    """Reference labels in the target's class indices, and how they were mapped.

    ``read(names)`` returns the label map checked against the class map
    ``names`` (e.g. :func:`~napari_advseg.io.nifti.load_labels` of a file or
    :func:`~napari_advseg.io.labels.check_labels` of an array). The values are
    named by ``label_names`` (None: the six organs of
    :data:`~napari_advseg.organs.ORGAN_CLASSES`, undeclared). Declared names
    are a strict class map: a value beyond them is refused, and the values are
    mapped into ``class_names`` by name
    (:func:`~napari_advseg.data.class_map.map_classes`). Undeclared names are
    read as the target's own indices where the target's class names start
    with the six organs in order, or share no organ name with them.
    """
    declared = label_names is not None
    reference = tuple(label_names) if declared else tuple(ORGAN_CLASSES)
    target = tuple(class_names)
    mapping = map_classes(reference, target)
    if not declared and (target[:len(reference)] == reference or not mapping.by_name):
        return read(target), mapping
    return mapping.apply(read(reference)), mapping


def load_case(ct: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
              normalisation: dict | None = None, class_names=ORGAN_CLASSES, series: str | None = None,
              label_names: Sequence[str] | None = None) -> Case:
    """Load a CT and (optional) labels; with neither given, the shipped sample.

    ``ct`` is a NIfTI file or a DICOM series (a folder, one of its files or a
    list of its files; ``series`` chooses a SeriesInstanceUID when a folder
    holds several), see :func:`napari_advseg.io.volumes.load_volume`. Labels
    are NIfTI on the CT's voxel grid. A CT given without labels is the
    label-free mode (labels None).

    The label values are named by ``label_names`` when given, else by the
    labels file's sidecar (:func:`napari_advseg.io.labels.read_label_names`,
    always read, so a bad sidecar is refused), else they are the six organs.
    Where the names differ from the target's ``class_names``, the values are
    mapped by name into the target's indices (:func:`mapped_labels`; the
    mapping is kept as ``case.class_mapping``).
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
    declared = read_label_names(labels)
    if label_names is not None:
        try:
            names = check_label_names(label_names)
        except ValueError as error:
            raise AdvsegError(f"label names: {error}") from None
    else:
        names = declared
    label_array, mapping = mapped_labels(lambda check: load_labels(labels, volume, check), class_names, names)
    return make_case(volume, label_array, normalisation, class_mapping=mapping)


def phantom_case(seed: int, normalisation: dict | None, shape=(48, 128, 128)) -> Case:
    """A synthetic subject (``napari_advseg.data.phantom``) as a case."""
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.io.geometry import volume_from_array

    phantom = make_phantom(seed, shape)
    volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
    labels = check_labels(phantom.labels, volume, phantom.class_names)
    return make_case(volume, labels, normalisation, name=f"phantom-{seed}")
