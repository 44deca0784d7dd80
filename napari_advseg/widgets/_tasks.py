"""The background tasks of the widget: training, slice renders, whole-volume attack, export.

Each runs in a worker thread on a :class:`~._model.Snapshot` taken on the
main thread; they call the core modules and never touch layers or widgets.
Torch is imported inside the functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_advseg.attack.config import AttackConfig
from napari_advseg.errors import AdvsegError
from napari_advseg.widgets._model import AttackSession, Snapshot, fields_mode

MAX_ARROWS = 2000
"""At most this many displacement arrows per slice."""

ARROW_SPACING = 6
"""Arrows are at least this many pixels apart (denser grids read as noise)."""

BODY_HU = -500.0
"""Arrows are drawn where the CT is denser than this (inside the body)."""


def training_run(snapshot: Snapshot, config: AttackConfig | None, checkpoint: str | os.PathLike,
                 report: dict, resume_from: str | os.PathLike | None = None,
                 steps: int | None = None) -> Iterator[dict]:
    """Train (or continue) a generator, yielding progress; the checkpoint is saved in ``finally``.

    Runs in a worker thread. Yields ``{"kind": "ready", ...}`` once the trainer
    exists (with its config and earlier history), then ``{"kind": "step",
    "metrics": ..., "total": N}`` after each step. Whether it ends normally,
    with an error, or is closed early (Stop, closing napari), the ``finally``
    block writes ``checkpoint`` so no finished step is lost; ``report`` then
    holds ``saved`` (the path), ``step`` and ``new_steps`` (or ``save_error``).
    """
    from napari_advseg.attack.trainer import AttackTrainer

    case, target, device = snapshot.case, snapshot.target, snapshot.device
    trainer = None
    try:
        if resume_from is not None:
            changes = {} if steps is None else {"steps": int(steps)}
            trainer = AttackTrainer.resume(resume_from, target, case.images, case.labels, device, **changes)
        else:
            trainer = AttackTrainer(config, target, case.images, case.labels, device)
        report["start_step"] = trainer.step_count
        yield {"kind": "ready", "config": trainer.config, "history": list(trainer.history),
               "step": trainer.step_count, "total": trainer.config.steps, "labels": trainer.label_source}
        for metrics in trainer.run():
            yield {"kind": "step", "metrics": metrics, "total": trainer.config.steps}
    finally:
        if trainer is not None:
            report["step"] = trainer.step_count
            report["new_steps"] = trainer.step_count - report.get("start_step", 0)
            try:
                report["saved"] = str(trainer.save_checkpoint(checkpoint))
            except Exception as exc:  # reported by the widget; the training error (if any) wins
                report["save_error"] = exc


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

    Used by one render worker at a time (the widget never runs two at once).
    """

    def __init__(self, session: AttackSession):
        from napari_advseg.attack.explore import SliceExplorer

        self.session = session
        self.revision = session.revision
        self.case = session.case
        self.config = session.config
        self.explorer = SliceExplorer(session.generator, session.config, session.target)
        self.z: int | None = None
        self.latent: dict = {}

    def render(self, request: SliceRequest) -> SliceResult:
        from napari_advseg.attack.explore import displacement_vectors

        case, config = self.case, self.config
        z = int(np.clip(request.z, 0, case.volume.n_slices - 1))
        if self.z != z:
            labels = None if case.labels is None else case.labels[z]
            self.explorer.set_slice(case.images[z], labels)
            self.latent = self.explorer.latent_mean_and_sigma()
            self.z = z
        view = self.explorer.render(request.eps_phi, request.eps_b, request.temperature,
                                    request.use_phi, request.use_bias, segment=True)
        adversarial_hu = case.scale.to_hu(view.adversarial)
        if config.bias_mode == "additive":
            bias_display = (view.bias * case.scale.scale).astype(np.float32)
        else:
            bias_display = np.exp(view.bias).astype(np.float32)
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
        return SliceResult(request, view, adversarial_hu, bias_display, vectors, magnitude, dict(self.latent))


def bias_limits(config: AttackConfig, case, bias: np.ndarray | None = None) -> tuple[float, float]:
    """Display limits of the bias field layer, symmetric about "no bias".

    With ``bias`` (the first field shown), 1.2 times its largest deviation,
    so a typical field uses the colormap's range; otherwise the bound
    ``b_max`` allows. In HU, or the factor ``exp(b)`` for multiplicative bias.
    """
    if config.bias_mode == "additive":
        bound = float(config.b_max * case.scale.scale)
        if bias is not None and bias.size:
            bound = min(bound, max(1.0, 1.2 * float(np.abs(bias).max())))
        return -bound, bound
    bound = float(config.b_max)
    if bias is not None and bias.size:
        bound = min(bound, max(0.01, 1.2 * float(np.abs(np.log(np.maximum(bias, 1e-6))).max())))
    return float(math.exp(-bound)), float(math.exp(bound))


def volume_run(snapshot: Snapshot, eps_phi, eps_b, temperature: float, use_phi: bool, use_bias: bool,
               batch_size: int = 4) -> Iterator[tuple[int, int]]:
    """Attack every slice with fixed latent deviates; yields (slices done, total), returns arrays.

    Returns ``(adversarial_hu, adversarial_segmentation)`` as ``(Z, Y, X)``
    float32 and uint8 arrays (nothing is written to disk).
    """
    from napari_advseg.evaluation.report import attack_slices

    case, generator, target = snapshot.case, snapshot.generator, snapshot.target
    mode = fields_mode(snapshot.config, use_phi, use_bias)
    adversarial = case.volume.hu.astype(np.float32, copy=True)
    segmentation = np.zeros(case.volume.shape, np.uint8)
    total = case.volume.n_slices
    if mode is None:  # both fields off: the image is the CT; segment it once
        config = snapshot.config
        eps = np.zeros(config.latent_dim, np.float32)
        stream = attack_slices(generator, config.replace(fields="both"), target, case.images, None,
                               batch_size=batch_size, eps_phi=eps, eps_b=eps)
        for result in stream:
            n = len(result.rho)
            segmentation[result.start:result.start + n] = result.pred_clean.numpy()
            yield result.start + n, total
        return adversarial, segmentation
    config = snapshot.config.replace(fields=mode)
    for result in attack_slices(generator, config, target, case.images, None, batch_size=batch_size,
                                temperature=temperature, eps_phi=eps_phi, eps_b=eps_b):
        n = len(result.rho)
        adversarial[result.start:result.start + n] = case.scale.to_hu(result.adversarial[:, 0].numpy())
        segmentation[result.start:result.start + n] = result.pred_adv.numpy()
        yield result.start + n, total
    return adversarial, segmentation


class Cancelled(Exception):
    """Raised inside an export when the user (or closing napari) cancels it."""


def export_run(snapshot: Snapshot, out_dir: str | os.PathLike, slices: Sequence[int] | None,
               eps_phi, eps_b, temperature: float, use_phi: bool, use_bias: bool,
               progress: Callable[[int], None] | None = None, cancelled: Callable[[], bool] | None = None,
               seed: int = 0) -> dict:
    """Write the adversarial NIfTI files of the chosen slices (``sample.sample_volume``).

    Existing files are replaced: the widget has asked the user first.
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
                         generator_path=snapshot.generator_path, progress=step)


def existing_outputs(out_dir: str | os.PathLike, with_labels: bool) -> list[Path]:
    """The files an export to ``out_dir`` would replace."""
    from napari_advseg.attack.sampling import output_paths

    paths = output_paths(out_dir)
    if not with_labels:
        paths.pop("warped_reference")
    return [p for p in paths.values() if p.exists()]
