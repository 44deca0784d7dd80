"""The one training driver, behind ``advseg train``/``sweep``/``make-sample`` and the widget's Train tab.

:func:`training_events` trains (or resumes) a generator and yields events; its
``finally`` block is the one place that writes the checkpoint on the way out,
whether training ends, fails, is interrupted (Ctrl-C) or is closed early by
its consumer (Stop or closing napari close the generator). The command line
drives it under a progress bar (:func:`train_generator`), the widget in a
``thread_worker``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from napari_advseg.attack.config import GENERATOR_FILE, AttackConfig
from napari_advseg.attack.trainer import AttackTrainer



def training_events(config: AttackConfig | None, target, images, labels, checkpoint: str | os.PathLike, *,
                    device: str = "auto", resume: str | os.PathLike | None = None, steps: int | None = None,
                    checkpoint_every: int = 0, report: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Train or continue a generator, yielding progress; the checkpoint is written in ``finally``.

    Parameters
    ----------
    config : AttackConfig or None
        Settings of a new generator (ignored with ``resume``, whose checkpoint
        holds them).
    target, images, labels
        As :class:`~napari_advseg.attack.trainer.AttackTrainer`.
    checkpoint : path
        Where the checkpoint is written (atomically).
    resume : path, optional
        A checkpoint to continue from, exactly.
    steps : int, optional
        Total steps to train to (default: the config's).
    checkpoint_every : int
        Also write the checkpoint every that many steps (0: only on the way out).
    report : dict, optional
        Filled in on the way out: ``start_step``, ``step``, ``new_steps``, and
        ``saved`` (the path) or ``save_error`` (the exception).

    Yields
    ------
    dict
        ``{"kind": "ready", "trainer", "config", "history", "step", "total",
        "labels"}`` once the trainer exists, then ``{"kind": "step",
        "metrics", "step", "total"}`` after each step.
    """
    report = {} if report is None else report
    trainer = None
    saved_at = None

    def save() -> None:
        nonlocal saved_at
        report["saved"] = str(trainer.save_checkpoint(checkpoint))
        saved_at = trainer.step_count

    try:
        changes = {} if steps is None else {"steps": int(steps)}
        if resume is not None:
            trainer = AttackTrainer.resume(resume, target, images, labels, device, **changes)
        else:
            trainer = AttackTrainer(config.replace(**changes), target, images, labels, device)
        report["start_step"] = trainer.step_count
        yield {"kind": "ready", "trainer": trainer, "config": trainer.config, "history": list(trainer.history),
               "step": trainer.step_count, "total": trainer.config.steps, "labels": trainer.label_source}
        for metrics in trainer.run():
            if checkpoint_every > 0 and trainer.step_count % checkpoint_every == 0:
                save()
            yield {"kind": "step", "metrics": metrics, "step": trainer.step_count, "total": trainer.config.steps}
    finally:
        if trainer is not None:
            report["step"] = trainer.step_count
            report["new_steps"] = trainer.step_count - report.get("start_step", 0)
            if saved_at != trainer.step_count:
                try:
                    save()
                except Exception as exc:  # the consumer reports it; a training error, if any, goes on up
                    report["save_error"] = exc


def train_generator(config: AttackConfig | None, target, images, labels, out_dir: str | os.PathLike, *,
                    device: str = "auto", resume: str | os.PathLike | None = None, steps: int | None = None,
                    checkpoint_every: int = 50,
                    progress: Callable[[dict[str, Any]], None] | None = None,
                    report: dict[str, Any] | None = None) -> tuple[AttackTrainer, Path]:
    """Drive :func:`training_events` to the end; ``progress(metrics)`` after each step.

    Returns the trainer and ``out_dir/generator.pt``. A failed final save
    raises; Ctrl-C (or a KeyboardInterrupt raised by ``progress`` to stop
    after a step) saves first, then propagates. ``report``: filled in as
    :func:`training_events`'s, for a caller that stops early.
    """
    out = Path(out_dir) / GENERATOR_FILE
    report = {} if report is None else report
    trainer = None
    with contextlib.closing(training_events(config, target, images, labels, out, device=device, resume=resume,
                                            steps=steps, checkpoint_every=checkpoint_every,
                                            report=report)) as events:
        for event in events:
            if event["kind"] == "ready":
                trainer = event["trainer"]
            elif progress is not None:
                progress(event["metrics"])
    if "save_error" in report:
        raise report["save_error"]
    return trainer, out
