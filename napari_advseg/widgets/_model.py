"""Plain-Python state and background tasks behind the dock widget (no Qt here).

:class:`AttackSession` holds what the tabs share: the CT volume and its
reference labels, the target network, the current generator and the case
built from them; :meth:`AttackSession.snapshot` hands them to the background
tasks (:mod:`._tasks`). Torch is imported inside functions only, so importing
the widget stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_advseg.attack.config import AttackConfig
from napari_advseg.errors import AdvsegError

DEFAULT_CONFIG = AttackConfig()
"""Defaults shown in the Train tab."""

CHECKPOINT_NAME = "generator.pt"
"""File name of the training checkpoint inside the checkpoint folder."""


def volume_from_layer(data, scale: Sequence[float], metadata: dict | None, name: str = "CT"):
    """A :class:`~napari_advseg.io.nifti.CTVolume` for the data of an Image layer.

    Parameters
    ----------
    data : array_like
        Canonical ``(Z, Y, X)`` Hounsfield units.
    scale : sequence of float
        The layer's scale (voxel size in mm along Z, Y, X).
    metadata : dict or None
        The layer's metadata; with ``advseg_source`` (set by the plugin's
        reader) the volume keeps the geometry of the file it came from, so
        that exports overlay that file.
    name : str
        Used in error messages when the layer is not a CT volume.

    Returns
    -------
    CTVolume
    """
    from napari_advseg.io.nifti import CTVolume, volume_from_array

    metadata = metadata or {}
    array = np.asarray(data)
    if array.ndim != 3:
        raise AdvsegError(f"layer {name!r}: the attack needs a 3D (Z, Y, X) CT volume, got shape {array.shape}")
    source = metadata.get("advseg_source")
    affine = metadata.get("advseg_affine")
    if source is not None and affine is not None:
        volume = volume_from_array(array, scale, metadata.get("advseg_path") or name)
        return CTVolume(volume.hu, np.asarray(affine, dtype=np.float64), volume.spacing, source,
                        metadata.get("advseg_path"))
    return volume_from_array(array, scale)


def fields_mode(config: AttackConfig, use_phi: bool, use_bias: bool) -> str | None:
    """The ``fields`` setting for the switches of the Explore tab (None: both fields off)."""
    phi = use_phi and config.use_phi
    bias = use_bias and config.use_bias
    if phi and bias:
        return "both"
    if phi:
        return "phi"
    if bias:
        return "bias"
    return None


@dataclass(frozen=True)
class Snapshot:
    """The session's objects at one moment, handed to a worker thread (the session may change)."""

    case: Any
    target: Any
    generator: Any
    config: AttackConfig | None
    generator_path: str | None
    device: str


class AttackSession:
    """What the tabs share: volume, labels, target, generator and the case made of them.

    Attributes
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; used by every load and by training.
    target : napari_advseg.models.target.Target or None
    target_path : str or None
    generator : AttackGenerator or None
        The current generator (eval mode) that Explore and Export use.
    config : AttackConfig or None
        The current generator's configuration.
    generator_path : str or None
        The checkpoint the current generator was loaded from.
    generator_step : int
        Training steps behind the current generator.
    """

    def __init__(self) -> None:
        self.device = "auto"
        self.target = None
        self.target_path: str | None = None
        self.generator = None
        self.config: AttackConfig | None = None
        self.generator_path: str | None = None
        self.generator_step = 0
        self.generator_classes: tuple[str, ...] = ()
        self.generator_history: list[dict] = []
        self.volume = None
        self.labels: np.ndarray | None = None
        self._case = None
        self.revision = 0  # bumped whenever the case, target or generator changes

    # ------------------------------------------------------------------ loading
    def load_target(self, path: str | os.PathLike) -> None:
        """Load the target network (project checkpoint or TorchScript) as current."""
        from napari_advseg.models.target_load import load_target

        target = load_target(path, self.device)
        self.target = target
        self.target_path = str(path)
        if self.generator is not None and not self._generator_fits(self.generator_classes):
            self.generator = self.config = self.generator_path = None
        self._changed()

    def load_generator(self, path: str | os.PathLike) -> None:
        """Load a trained generator checkpoint as the current generator."""
        from napari_advseg.attack.trainer import load_generator

        generator, config, meta = load_generator(path, self.device)
        classes = tuple(meta.get("class_names", ()))
        if self.target is not None and classes and not self._generator_fits(classes):
            raise AdvsegError(f"{path}: trained against classes {list(classes)}, but the target has "
                              f"{list(self.target.class_names)}")
        self.generator, self.config, self.generator_path = generator, config, str(path)
        self.generator_classes = classes
        self.generator_step = int(meta.get("step", 0))
        self.generator_history = list(meta.get("history", []))
        self._changed()

    def _generator_fits(self, classes: Sequence[str]) -> bool:
        return self.target is None or not classes or tuple(classes) == tuple(self.target.class_names)

    def set_device(self, device: str) -> None:
        """Switch device: reload the target and the generator there (errors leave the old ones)."""
        from napari_advseg.device import resolve_device

        resolve_device(device)  # raises AdvsegError for a device this machine lacks
        old = self.device
        self.device = device
        try:
            if self.target_path:
                self.load_target(self.target_path)
            if self.generator_path:
                self.load_generator(self.generator_path)
        except Exception:
            self.device = old
            raise

    def set_volume(self, volume, labels: np.ndarray | None, labels_name: str = "reference") -> None:
        """Set the CT volume (CTVolume) and its reference labels ((Z, Y, X) or None = label-free)."""
        if labels is not None:
            from napari_advseg.data.organs import ORGAN_CLASSES
            from napari_advseg.io.nifti import check_labels

            names = self.target.class_names if self.target is not None else ORGAN_CLASSES
            labels = check_labels(labels, volume, names, name=f"labels layer {labels_name!r}")
        self.volume, self.labels = volume, labels
        self._changed()

    def clear_volume(self) -> None:
        self.volume = self.labels = None
        self._changed()

    def _changed(self) -> None:
        self._case = None
        self.revision += 1

    # ------------------------------------------------------------------ derived state
    @property
    def case(self):
        """The normalised case for the target (None until a volume and a target are set)."""
        if self._case is None and self.volume is not None and self.target is not None:
            from napari_advseg.data.cases import make_case

            self._case = make_case(self.volume, self.labels, self.target.normalisation)
        return self._case

    @property
    def class_names(self) -> tuple[str, ...]:
        from napari_advseg.data.organs import ORGAN_CLASSES

        return tuple(self.target.class_names) if self.target is not None else tuple(ORGAN_CLASSES)

    def normalisation_text(self) -> str:
        """How the target expects its input, in words."""
        if self.target is None:
            return "(no target loaded)"
        norm = self.target.normalisation
        if norm.get("mode") == "window":
            low, high = norm.get("window", (None, None))
            return f"window [{low:g}, {high:g}] HU -> [-1, 1]"
        return "z-score (per volume)"

    def snapshot(self) -> Snapshot:
        """The current case, target and generator, for a background job (call on the main thread)."""
        return Snapshot(self.case, self.target, self.generator, self.config, self.generator_path, self.device)

    def can_explore(self) -> bool:
        return self.case is not None and self.generator is not None

    def require(self, *what: str) -> None:
        """Raise AdvsegError naming what is missing (``"volume"``, ``"target"``, ``"generator"``)."""
        missing = {"volume": self.volume is None, "target": self.target is None,
                   "generator": self.generator is None}
        lacking = [name for name in what if missing.get(name)]
        if lacking:
            hints = {"volume": "choose a CT image layer", "target": "load a target model file",
                     "generator": "train a generator or load one"}
            raise AdvsegError("; ".join(hints[name] for name in lacking) + " first (Data and model tab)")

    def make_config(self, **settings: Any) -> AttackConfig:
        """An AttackConfig from the Train tab's settings."""
        return AttackConfig(**settings)
