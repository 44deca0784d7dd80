"""The hardening driver, behind ``advseg harden`` and the widget's Harden tab.

:func:`hardening_events` runs (or resumes) a :class:`~napari_advseg.defense.hardener.Hardener`
and yields events; its ``finally`` block writes the files on the way out,
whether the run ends, fails, is interrupted (Ctrl-C) or is closed by its
consumer (Stop, closing napari). :func:`harden_target` drives it to the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from napari_advseg.defense.config import HardenConfig
from napari_advseg.defense.folders import FOLDER_MODELS, check_folder_output
from napari_advseg.defense.hardener import Hardener
from napari_advseg.evaluation.metrics import network_dice


def hardening_events(config: HardenConfig | None, target, images, labels, out: str | os.PathLike, *,
                     generator: str | os.PathLike | None = None, device: str = "auto", resume: bool = False,
                     steps: int | None = None, checkpoint_every: int = 0, test: tuple[Any, Any] | None = None,
                     report: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Harden (or continue hardening) ``target``, yielding progress; files are written in ``finally``.

    Parameters
    ----------
    config : HardenConfig or None
        Settings of a new run (ignored with ``resume``: the state holds them).
    target : Target
        The network to harden: a project U-Net checkpoint, an nnU-Net ``2d``
        folder or a 2D MONAI bundle.
    images, labels : (N, H, W) arrays
        Training slices and reference labels.
    out : path
        The hardened checkpoint (for a folder target, the folder: ``out``
        without ``.pt``); the resume state goes beside it.
    generator : path, optional
        The generator of the ``generator`` method.
    resume : bool
        Continue the run whose state is beside ``out``.
    steps : int, optional
        Total steps to train to (default: the config's).
    checkpoint_every : int
        Also write the files every that many steps (0: only on the way out).
    test : (images, labels), optional
        Held-out slices: once the run is complete, their clean Dice per organ
        goes into the checkpoint's ``metrics["test_dice"]``.
    report : dict, optional
        Filled in on the way out: ``start_step``, ``step``, ``saved`` (the
        path) or ``save_error`` (the exception), ``test_dice``.

    Yields
    ------
    dict
        ``{"kind": "ready", "hardener", "step", "total", "history"}`` first,
        then ``{"kind": "step", "step", "total", "metrics"}`` after each
        fine-tuning step and ``{"kind": "generator", "round", "generator_step",
        "generator_total", "metrics", ...}`` after each generator step of a
        round of the adversarial game.
    """
    report = {} if report is None else report
    hardener = None
    saved_at = None

    def save() -> None:
        nonlocal saved_at
        metrics = {}
        if hardener.complete and test is not None:
            report["test_dice"] = metrics["test_dice"] = network_dice(hardener.current_target(), *test, hardener.class_names)
        report["saved"] = str(hardener.save(out, metrics))
        saved_at = (hardener.step_count, hardener.generator_rounds)

    if isinstance(getattr(target, "model", None), FOLDER_MODELS):
        check_folder_output(out, target.model)
    try:
        if resume:
            hardener = Hardener.resume(out, target, images, labels, device=device, steps=steps)
        else:
            changes = {} if steps is None else {"steps": int(steps)}
            hardener = Hardener(config.replace(**changes), target, images, labels, generator=generator,
                                device=device)
        report["start_step"] = hardener.step_count
        yield {"kind": "ready", "hardener": hardener, "step": hardener.step_count, "total": hardener.config.steps,
               "history": list(hardener.history)}
        for event in hardener.run():
            if (checkpoint_every > 0 and event["kind"] == "step" and hardener.step_count % checkpoint_every == 0
                    and not hardener.complete):
                save()
            yield event
    finally:
        if hardener is not None:
            report["step"] = hardener.step_count
            if saved_at != (hardener.step_count, hardener.generator_rounds):
                try:
                    save()
                except Exception as exc:  # the consumer reports it; a training error, if any, goes on up
                    report["save_error"] = exc


def harden_target(config: HardenConfig | None, target, images, labels, out: str | os.PathLike, *,
                  generator: str | os.PathLike | None = None, device: str = "auto", resume: bool = False,
                  steps: int | None = None, checkpoint_every: int = 50, test: tuple[Any, Any] | None = None,
                  progress: Callable[[dict[str, Any]], None] | None = None) -> tuple[Hardener, Path, dict[str, Any]]:
    """Drive :func:`hardening_events` to the end; ``progress(event)`` after each step.

    Returns the hardener, the path written (the checkpoint, or a folder target's folder) and the report. A failed final
    save raises; Ctrl-C saves first, then propagates.
    """
    report: dict[str, Any] = {}
    hardener = None
    with contextlib.closing(hardening_events(config, target, images, labels, out, generator=generator,
                                             device=device, resume=resume, steps=steps,
                                             checkpoint_every=checkpoint_every, test=test,
                                             report=report)) as events:
        for event in events:
            if event["kind"] == "ready":
                hardener = event["hardener"]
            elif progress is not None:
                progress(event)
    if "save_error" in report:
        raise report["save_error"]
    return hardener, Path(report.get("saved", out)), report
