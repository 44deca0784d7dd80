"""The background tasks of the widget: training, slice renders, whole-volume attack, export.

Each runs in a worker thread on a :class:`~._model.Snapshot` taken on the
main thread; they call the core modules and never touch layers or widgets.
Torch is imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_advseg.attack.config import AttackConfig
from napari_advseg.errors import AdvsegError
from napari_advseg.widgets._model import AttackSession, Snapshot, fields_mode
from napari_advseg.widgets._workers import background_priority, call_in_own_thread, in_own_thread

MAX_ARROWS = 1024
"""At most this many displacement arrows per slice (a 32 x 32 grid on a large slice): the fields are smooth,
and napari redraws every arrow (and its layer thumbnail, arrow by arrow) on each slider change."""

ARROW_SPACING = 6
"""Arrows are at least this many pixels apart (denser grids read as noise)."""

BODY_HU = -500.0
"""Arrows are drawn where the CT is denser than this (inside the body)."""


def training_run(snapshot: Snapshot, config: AttackConfig | None, checkpoint: str | os.PathLike,
                 report: dict, resume_from: str | os.PathLike | None = None,
                 steps: int | None = None) -> Iterator[dict]:
    """Train (or continue) a generator: :func:`~napari_advseg.attack.training.training_events`
    on the snapshot's case (its ``finally`` writes ``checkpoint`` on Stop, error or close).

    The steps run in a thread of their own behind the viewer
    (:func:`~._workers.background_priority`), so that Explore stays responsive.
    """
    def events() -> Iterator[dict]:
        from napari_advseg.attack.training import training_events

        case = snapshot.case
        for event in training_events(config, snapshot.target, case.images, case.labels, checkpoint,
                                     device=snapshot.device, resume=resume_from, steps=steps, report=report):
            event.pop("trainer", None)  # stays in the training thread
            yield event

    return (yield from in_own_thread(events, lambda: background_priority(snapshot.device), "advseg-training"))


TIMED_STEPS = 2
"""Training steps a time measurement runs: the first one warms up, the last one is timed."""


def step_seconds(snapshot: Snapshot, config: AttackConfig, steps: int = TIMED_STEPS,
                 cancelled: Callable[[], bool] | None = None) -> dict:
    """How long training ``config`` takes on the snapshot's case and device, measured as the Train tab runs it
    (behind the viewer, in a thread of its own).

    Returns ``{"step": seconds of one step (the last one), "setup": seconds before the first step's
    steady pace (the trainer's construction and the first step's extra), "device": "cpu", "cuda" or "mps",
    "batch_size"}``. Nothing is written. ``cancelled()`` true stops it between steps (raising
    :class:`Cancelled`).
    """
    def measure() -> dict:
        import time

        from napari_advseg.attack.trainer import AttackTrainer
        from napari_advseg.device import resolve_device

        case = snapshot.case
        start = time.perf_counter()
        trainer = AttackTrainer(config.replace(steps=max(1, steps)), snapshot.target, case.images, case.labels,
                                snapshot.device)
        times = []
        for _ in range(max(1, steps)):
            if cancelled is not None and cancelled():
                raise Cancelled()
            times.append(trainer.step()["seconds"])
        total = time.perf_counter() - start
        step = times[-1]
        return {"step": step, "setup": max(0.0, total - step * len(times)),
                "device": resolve_device(snapshot.device).type, "batch_size": config.batch_size}

    return call_in_own_thread(measure, setup=lambda: background_priority(snapshot.device), name="advseg-timing")


SUMMARY_PART = "all"
"""The slices a generator's summary is measured on: all of them, as ``advseg evaluate`` does by default."""


def generator_summary(path: str | os.PathLike, snapshot: Snapshot, cancelled: Callable[[], bool] | None = None
                      ) -> dict:
    """A generator's Table-1 figures on the snapshot's case (:data:`SUMMARY_PART` slices, one sample per slice,
    seed 0: ``advseg evaluate --samples 1``).

    Against the reference labels, or without them against the target's own
    clean prediction. Returns ``{"steps", "mean_drop", "organs": {name: drop},
    "succeeded" (organs whose Dice drops by 30 % or more), "rho", "slices",
    "reference": "labels" or "prediction"}``; a generator that does not fit the
    target raises AdvsegError; ``cancelled()`` true stops it between batches (raising :class:`Cancelled`).
    """
    def measure() -> dict:
        from napari_advseg.attack.checkpoint import load_generator
        from napari_advseg.evaluation.report import evaluate_attack
        from napari_advseg.models.unet import predict_labels

        generator, config, meta = load_generator(path, snapshot.device, target=snapshot.target)
        images, labels, _ = snapshot.case.part(SUMMARY_PART)
        reference = "labels"
        if labels is None:
            labels, reference = predict_labels(snapshot.target, images), "prediction"
        def progress(_done: int) -> None:
            if cancelled is not None and cancelled():
                raise Cancelled()

        report = evaluate_attack(generator, config, snapshot.target, [(images, labels)], progress=progress)
        organs = report["organs"]
        return {"steps": int(meta.get("step", 0)), "mean_drop": float(report["mean_drop"]),
                "organs": {name: float(row["drop"]) for name, row in organs.items()},
                "succeeded": sum(1 for row in organs.values() if row["success"]), "rho": float(report["rho"]),
                "slices": int(report["slices"]), "reference": reference}

    return call_in_own_thread(measure, setup=lambda: background_priority(snapshot.device), name="advseg-summary")


@dataclass
class SliceRequest:
    """What the Explore tab asks to see: a slice and the slider values."""

    z: int
    eps_phi: np.ndarray
    eps_b: np.ndarray
    temperature: float
    use_phi: bool
    use_bias: bool
    revision: int
    seq: int = 0  # order of the requests: an older result never replaces a newer one
    rho: float | None = None  # fields scaled to this rho; None: the generator's own


@dataclass
class SliceResult:
    """One rendered slice in the units the layers show."""

    request: SliceRequest
    view: Any  # explore.SliceView
    adversarial_hu: np.ndarray
    bias_display: np.ndarray
    vectors: np.ndarray  # (N, 2, 3): start (z, y, x) and direction (0, dy, dx)
    magnitude: np.ndarray
    latent: dict


class SliceRenderer:
    """A SliceExplorer that re-encodes only when the slice (or the model) changes.

    :meth:`render_fields` is used by one worker at a time; :meth:`segment`
    may run alongside it in another.
    """

    def __init__(self, session: AttackSession):
        from napari_advseg.attack.explore import SliceExplorer

        self.session = session
        self.revision = session.revision
        self.case = session.case
        self.config = session.config
        self.explorer = SliceExplorer(session.generator, session.config, session.target, scale=session.case.scale)
        self.z: int | None = None
        self.latent: dict = {}

    def _encode(self, request: SliceRequest) -> int:
        """Set the request's slice on the explorer (encoding it) unless it is set already; its index."""
        case = self.case
        z = int(np.clip(request.z, 0, case.volume.n_slices - 1))
        if self.z != z:
            self.explorer.set_case_slice(case, z)
            self.latent = self.explorer.latent_mean_and_sigma()
            self.z = z
        return z

    def render_fields(self, request: SliceRequest) -> SliceResult:
        """Stage one: the fields, adversarial image and warped reference (no segmentation yet)."""
        from napari_advseg.attack.apply import bias_in_display_units
        from napari_advseg.attack.explore import displacement_vectors

        case, config = self.case, self.config
        z = self._encode(request)
        view = self.explorer.render_fields(request.eps_phi, request.eps_b, request.temperature,
                                           request.use_phi, request.use_bias, folds=False,  # in stage two
                                           rho=request.rho)
        bias_display = bias_in_display_units(view.bias, config, case.scale)
        h, w = view.displacement.shape[1:]
        arrows = int(min(MAX_ARROWS, max(1, h * w // ARROW_SPACING ** 2)))
        vectors2, magnitude = displacement_vectors(view.displacement, max_arrows=arrows)
        rows, cols = vectors2[:, 0, 0].astype(int), vectors2[:, 0, 1].astype(int)
        inside = case.volume.hu[z][rows, cols] > BODY_HU  # arrows in the air around the body say nothing
        if inside.any():
            vectors2, magnitude = vectors2[inside], magnitude[inside]
        vectors = np.zeros((len(vectors2), 2, 3), np.float32)
        vectors[:, 0, 0] = z
        vectors[:, :, 1:] = vectors2
        return SliceResult(request, view, view.adversarial_hu, bias_display, vectors, magnitude, dict(self.latent))

    def segment(self, result: SliceResult) -> SliceResult:
        """Stage two: a copy of a stage-one result with the target's segmentation and the Dice table.

        Reads only the result's own arrays and the target, so it may run in
        one worker while :meth:`render_fields` runs in another; the result
        given (perhaps on screen) is left as it is.
        """
        return replace(result, view=self.explorer.segment(replace(result.view)))

    def render(self, request: SliceRequest) -> SliceResult:
        """Both stages in one call."""
        return self.segment(self.render_fields(request))

    def dose_response(self, request: SliceRequest, rhos: Sequence[float]):
        """Each organ's Dice at each rho on the request's slice and code (a DoseResponse)."""
        from napari_advseg.attack.strength import dose_response

        self._encode(request)
        return dose_response(self.explorer, rhos, eps_phi=request.eps_phi, eps_b=request.eps_b,
                             temperature=request.temperature, use_phi=request.use_phi, use_bias=request.use_bias)


def volume_run(snapshot: Snapshot, eps_phi, eps_b, temperature: float, use_phi: bool, use_bias: bool,
               batch_size: int = 4, rho: float | None = None, latent: str = "volume"
               ) -> Iterator[tuple[int, int]]:
    """Attack every slice; yields (slices done, total), returns arrays.

    ``latent="volume"``: the fixed deviates ``eps_*`` for every slice (one
    code per volume); ``"slice"``: fresh random deviates for each slice
    (seed 0), ``eps_*`` unused. ``rho``: every slice's fields scaled to it.

    The same path as Export and ``advseg sample`` (:func:`~napari_advseg.attack.apply.attack_volume`):
    returns ``(adversarial_hu, adversarial_segmentation)`` as ``(Z, Y, X)``
    float32 and uint8 arrays, voxel for voxel what an export of the same code
    (and ``rho``) writes (nothing is written to disk). Both fields off: the
    CT and the target's segmentation of it (the network runs once per slice).
    """
    from napari_advseg.attack.apply import attack_volume
    from napari_advseg.models.target_meta import is_volumetric
    from napari_advseg.models.unet import predict_labels

    case, generator, target = snapshot.case, snapshot.generator, snapshot.target
    mode = fields_mode(snapshot.config, use_phi, use_bias)
    total = case.volume.n_slices
    if mode is None:  # both fields off: the image is the CT, and the answer its segmentation (one pass)
        step = total if is_volumetric(target) else max(1, batch_size)  # a 3D network sees the whole stack
        parts = []
        for start in range(0, total, step):
            parts.append(predict_labels(target, case.images[start:start + step], batch_size=batch_size))
            yield min(start + step, total), total
        return case.volume.hu.astype(np.float32, copy=True), np.concatenate(parts)
    config = snapshot.config.replace(fields=mode)
    if latent == "slice":
        eps_phi = eps_b = None
    stream = attack_volume(generator, config, target, case, temperature=temperature, eps_phi=eps_phi,
                           eps_b=eps_b, batch_size=batch_size, rho=rho, latent=latent, predict_clean=False)
    while True:
        try:
            done = next(stream)
        except StopIteration as stop:
            result = stop.value
            break
        yield done, total
    return result.adversarial_hu, result.segmentation


class Cancelled(Exception):
    """Raised inside an export when the user (or closing napari) cancels it."""


def export_run(snapshot: Snapshot, out_dir: str | os.PathLike, slices: Sequence[int] | None,
               eps_phi, eps_b, temperature: float, use_phi: bool, use_bias: bool,
               progress: Callable[[int], None] | None = None, cancelled: Callable[[], bool] | None = None,
               seed: int = 0, rho: float | None = None, prefix: str = "", formats: Sequence[str] = ("nifti",),
               drop_patient_tags: bool = False) -> dict:
    """Write the adversarial files of the chosen slices (``sample.sample_volume``).

    Existing files are replaced: the widget has asked the user first. ``rho``:
    the Explore tab's "Set rho" (None: the generator's own strength);
    ``prefix``, ``formats``, ``drop_patient_tags``: as ``sample_volume``'s.
    """
    from napari_advseg.attack.sampling import sample_volume

    mode = fields_mode(snapshot.config, use_phi, use_bias)
    if mode is None:
        raise AdvsegError("both fields are switched off: there is nothing to export (tick deformation or bias)")
    config = snapshot.config.replace(fields=mode)

    def step(n: int) -> None:
        if cancelled is not None and cancelled():
            raise Cancelled()
        if progress is not None:
            progress(n)

    return sample_volume(snapshot.generator, config, snapshot.target, snapshot.case, out_dir, seed=seed,
                         temperature=temperature, eps_phi=eps_phi, eps_b=eps_b, slices=slices, overwrite=True,
                         generator_path=snapshot.generator_path, progress=step, rho=rho, prefix=prefix,
                         formats=formats, drop_patient_tags=drop_patient_tags)


def existing_outputs(out_dir: str | os.PathLike, with_labels: bool, prefix: str = "",
                     formats: Sequence[str] = ("nifti",)) -> list[Path]:
    """The files (and DICOM folder) an export to ``out_dir`` would replace."""
    from napari_advseg.attack.sampling import output_paths

    paths = output_paths(out_dir, prefix, formats)
    if not with_labels:
        paths.pop("warped_reference", None)
    return [p for p in paths.values() if p.exists()]
