"""The dock widget's shared state, an evented plain-Python object (no Qt here).

:class:`AttackSession` holds what the tabs share: the CT volume and its
reference labels, the target network, the current generator, the case built
from them and the Explore tab's latent choice. Every change is announced with
psygnal signals, which the tabs subscribe to (no tab calls into another);
:meth:`AttackSession.snapshot` hands the objects to the background tasks
(:mod:`._tasks`). Torch is imported inside functions only, so importing the
widget stays light.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from psygnal import Signal

from napari_advseg.attack.config import AttackConfig
from napari_advseg.errors import AdvsegError

DEFAULT_CONFIG = AttackConfig()
"""Defaults shown in the Train tab."""


def _default_name(path: str) -> str:
    """A listed file's name: its folder and file name."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return f"{folder}/{os.path.basename(path)}" if folder else os.path.basename(path)


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


@dataclass(frozen=True)
class LatentChoice:
    """The Explore tab's sliders and switches: what a whole-volume attack or an export uses.

    ``rho``: every slice's fields scaled to this perceptibility ("Set rho"); None: the generator's own.
    """

    eps_phi: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    eps_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    temperature: float = 1.0
    use_phi: bool = True
    use_bias: bool = True
    rho: float | None = None


@dataclass
class GeneratorEntry:
    """One generator of the session's list: the shipped one, those loaded and the runs trained since the
    viewer opened.

    ``steps``: training steps in the file; ``total``: the steps its run was set up for (None: not trained
    in this session). ``summary``: its Table-1 figures on the case (:func:`~._tasks.generator_summary`),
    measured for the case of ``summary_key`` (:attr:`AttackSession.case_revision`); ``problem``: why it
    has none there (e.g. it was trained against another target).
    """

    path: str
    name: str
    steps: int = 0
    total: int | None = None
    summary: dict | None = None
    summary_key: int | None = None
    problem: str | None = None

    def complete(self) -> bool:
        """Whether its run trained every step it was set up for (or it was not trained here)."""
        return self.total is None or self.steps >= self.total


def same_file(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Whether two paths name the same file (None names none)."""
    if a is None or b is None:
        return False
    return os.path.abspath(os.path.expanduser(a)) == os.path.abspath(os.path.expanduser(b))


class AttackSession:
    """What the tabs share: volume, labels, target, generator and the case made of them.

    Signals (psygnal; emitted on the main thread, after the state has changed)
    -------
    device_changed, target_changed, generator_changed, volume_changed :
        That part changed (a target load that drops a generator of other
        classes emits both ``target_changed`` and ``generator_changed``).
    changed(tuple of str) :
        After the specific signals of one change, once, with the names of
        what changed (``"device"``, ``"target"``, ``"generator"``,
        ``"volume"``). Within :meth:`batch` the announcements wait until the
        outermost batch ends and then go out together.
    latent_changed :
        The Explore tab's :attr:`latent` choice changed (no new case).
    generators_changed :
        The list of generators (:attr:`generators`) or one of its entries changed.

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
    volume, labels, layer :
        The CT volume (CTVolume), its reference labels in the target's class
        indices (or None: label-free) and the napari Image layer it came from
        (output layers overlay it).
    class_mapping : napari_advseg.data.class_map.ClassMapping or None
        How the labels' values (named by their layer) became the target's
        class indices.
    latent : LatentChoice
        The Explore tab's slider values and switches.
    revision : int
        Bumped whenever the case, target or generator changes.
    case_revision : int
        Bumped whenever the case or the target changes (not the generator).
    generators : list of GeneratorEntry
        The generators to choose from: every one loaded and every run trained
        since the viewer opened, in that order (a new run is added, never
        put in another's place).
    """

    device_changed = Signal()
    target_changed = Signal()
    generator_changed = Signal()
    volume_changed = Signal()
    changed = Signal(tuple)
    latent_changed = Signal()
    generators_changed = Signal()

    SIGNALS = ("device_changed", "target_changed", "generator_changed", "volume_changed", "changed",
               "latent_changed", "generators_changed")
    _ORDER = ("device", "target", "generator", "volume")

    def __init__(self) -> None:
        self.device = "auto"
        self.target = None
        self.target_path: str | None = None
        self.generator = None
        self.config: AttackConfig | None = None
        self.generator_path: str | None = None
        self.generator_step = 0
        self.generator_meta: dict = {}  # the checkpoint's class names and normalisation (attack.checkpoint)
        self.generator_history: list[dict] = []
        self.volume = None
        self.labels: np.ndarray | None = None
        self.layer = None
        self.class_mapping = None  # ClassMapping of the labels into the target's classes (data.class_map)
        self.latent = LatentChoice()
        self._case = None
        self.revision = 0
        self.case_revision = 0
        self.generators: list[GeneratorEntry] = []
        self._batch_depth = 0
        self._pending: set[str] = set()

    # ------------------------------------------------------------------ signals
    def signals(self) -> dict[str, Any]:
        """The session's signal instances by name."""
        return {name: getattr(self, name) for name in self.SIGNALS}

    def subscriber_count(self) -> int:
        """How many callbacks are connected to the session's signals, all together."""
        return sum(len(signal) for signal in self.signals().values())

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Announce the changes made inside the block once, when the (outermost) block ends."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if not self._batch_depth and self._pending:
                what, self._pending = self._pending, set()
                self._announce(what)

    def _announce(self, what) -> None:
        if self._batch_depth:
            self._pending.update(what)
            return
        names = tuple(name for name in self._ORDER if name in what)
        for name in names:
            getattr(self, f"{name}_changed").emit()
        self.changed.emit(names)

    # ------------------------------------------------------------------ loading
    def load_target(self, path: str | os.PathLike) -> None:
        """Load the target network (project checkpoint, TorchScript, nnU-Net folder or MONAI bundle) as current."""
        from napari_advseg.models.target_load import load_target

        target = load_target(path, self.device)
        self.target = target
        self.target_path = str(path)
        what = ["target"]
        if self.generator is not None and not self._generator_fits():
            self.generator = self.config = self.generator_path = None
            what.append("generator")
        self._changed(*what)

    def load_generator(self, path: str | os.PathLike) -> None:
        """Load a trained generator checkpoint as the current generator."""
        from napari_advseg.attack.checkpoint import load_generator

        generator, config, meta = load_generator(path, self.device, target=self.target)
        self.generator, self.config, self.generator_path = generator, config, str(path)
        self.generator_meta = meta
        self.generator_step = int(meta.get("step", 0))
        self.generator_history = list(meta.get("history", []))
        entry = self.generator_entry(path)
        if entry is None:
            self.add_generator(path, steps=self.generator_step)
        elif entry.steps != self.generator_step:  # the file was trained further
            self.add_generator(path, name=entry.name, steps=self.generator_step, total=entry.total)
        self._changed("generator")

    # ------------------------------------------------------------------ the list of generators
    def generator_entry(self, path: str | os.PathLike | None) -> GeneratorEntry | None:
        """The list's entry of this file, or None."""
        return next((entry for entry in self.generators if same_file(entry.path, path)), None)

    def current_entry(self) -> GeneratorEntry | None:
        """The list's entry of the current generator (None: no generator, or one trained in memory only)."""
        return self.generator_entry(self.generator_path)

    def add_generator(self, path: str | os.PathLike, name: str | None = None, steps: int = 0,
                      total: int | None = None) -> GeneratorEntry:
        """Add a generator file to the list (the current one stays current).

        A file listed already keeps its place and takes the new name, steps and total (its summary is
        measured again: the file changed). ``name`` defaults to the file's folder and name.
        """
        path = str(path)
        name = name or _default_name(path)
        entry = self.generator_entry(path)
        if entry is None:
            entry = GeneratorEntry(path, name, int(steps), total)
            self.generators.append(entry)
        else:
            entry.name, entry.steps, entry.total = name, int(steps), total
            entry.summary = entry.summary_key = entry.problem = None
        self.generators_changed.emit()
        return entry

    def set_generator_summary(self, path: str | os.PathLike, key: int, summary: dict | None = None,
                              problem: str | None = None) -> None:
        """Record a listed generator's summary (or why it has none) measured on the case of ``key``."""
        entry = self.generator_entry(path)
        if entry is None:
            return
        entry.summary, entry.summary_key, entry.problem = summary, key, problem
        if summary is not None:
            entry.steps = int(summary.get("steps", entry.steps))
        self.generators_changed.emit()

    def _generator_fits(self) -> bool:
        from napari_advseg.attack.checkpoint import generator_mismatch

        return self.target is None or generator_mismatch(self.generator_meta, self.target.class_names,
                                                         self.target.normalisation) is None

    def set_device(self, device: str) -> None:
        """Switch device: reload the target and the generator there (errors leave the old ones)."""
        from napari_advseg.device import resolve_device

        resolve_device(device)  # raises AdvsegError for a device this machine lacks
        old = self.device
        with self.batch():
            self.device = device
            try:
                if self.target_path:
                    self.load_target(self.target_path)
                if self.generator_path:
                    self.load_generator(self.generator_path)
            except Exception:
                self.device = old
                raise
            finally:
                self._announce({"device"})

    def set_volume(self, volume, labels: np.ndarray | None, labels_name: str = "reference", layer=None,
                   label_names=None) -> None:
        """Set the CT volume (CTVolume), its reference labels ((Z, Y, X) or None = label-free) and the
        layer it came from; labels that do not fit raise AdvsegError and change nothing.

        ``label_names`` names the label values (value 0 first; None: the six organs). Where they differ
        from the target's class names, the values are mapped by name into the target's indices, as the
        command line does (:func:`napari_advseg.data.cases.mapped_labels`); :attr:`class_mapping` and
        :meth:`class_mapping_message` say how.
        """
        mapping = None
        if labels is not None:
            from napari_advseg.data.cases import mapped_labels
            from napari_advseg.io.labels import check_labels

            raw = labels
            labels, mapping = mapped_labels(
                lambda names: check_labels(raw, volume, names, name=f"labels layer {labels_name!r}"),
                self.class_names, label_names)
        self.volume, self.labels, self.layer = volume, labels, layer
        self.class_mapping = mapping
        self._changed("volume")

    def clear_volume(self) -> None:
        self.volume = self.labels = self.layer = self.class_mapping = None
        self._changed("volume")

    def class_mapping_message(self) -> str | None:
        """The line saying how the reference labels were mapped into the target's classes (as the command
        line warns it); None without labels, without a target, or when the classes are the same."""
        if self.class_mapping is None or self.target is None:
            return None
        return self.class_mapping.message()

    def set_latent(self, choice: LatentChoice) -> None:
        """Record the Explore tab's slider values and switches."""
        self.latent = choice
        self.latent_changed.emit()

    def _changed(self, *what: str) -> None:
        self._case = None
        self.revision += 1
        if {"device", "target", "volume"} & set(what):
            self.case_revision += 1
        self._announce(set(what))

    # ------------------------------------------------------------------ derived state
    @property
    def case(self):
        """The normalised case for the target (None until a volume and a target are set)."""
        if self._case is None and self.volume is not None and self.target is not None:
            from napari_advseg.data.cases import make_case
            from napari_advseg.models.folder_targets import fit_target_to_volume

            fit_target_to_volume(self.target, self.volume)  # a folder target resamples to its own spacing
            self._case = make_case(self.volume, self.labels, self.target.normalisation)
        return self._case

    @property
    def class_names(self) -> tuple[str, ...]:
        from napari_advseg.organs import ORGAN_CLASSES

        return tuple(self.target.class_names) if self.target is not None else tuple(ORGAN_CLASSES)

    def normalisation_text(self) -> str:
        """How the target expects its input, in words (and a declared sliding window)."""
        if self.target is None:
            return "(no target loaded)"
        norm = self.target.normalisation
        mode = norm.get("mode", "zscore")
        if mode == "window":
            (low, high), (a, b) = norm["window"], norm.get("range", (-1.0, 1.0))
            text = f"window [{low:g}, {high:g}] HU -> [{a:g}, {b:g}]"
        elif mode == "ct":
            low, high = norm["clip"]
            text = f"CT: HU clipped to [{low:g}, {high:g}], then (HU - {norm['mean']:g}) / {norm['std']:g}"
        elif mode == "none":
            text = "none (HU as they are)"
        else:
            text = "z-score (per volume)"
        window = getattr(self.target, "sliding_window", None)
        if window is not None:
            from napari_advseg.models.target_meta import window_words

            text += f"; run {window_words(window)}"
        return text

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
