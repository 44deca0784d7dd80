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
from napari_advseg.attack.checkpoint import write_run_config
from napari_advseg.attack.trainer import AttackTrainer

STALL_STEPS = 50
"""Steps over which an attack CE that has not moved is warned about (0: never)."""

STALL_TOLERANCE = 0.1
"""Relative change of the attack CE (mean of a window's second half against its first) taken as not moving."""


class StallWatch:
    """Warns once when the attack CE has not moved over the last ``window`` steps while far from gamma.

    Not moving: the mean of the window's second half differs from its first
    half's by less than ``tolerance`` of it; far: that mean is under a quarter
    of gamma. Slow starts exist (a CE flat for many steps that rises later),
    so the message is a hint with its likely causes, not a verdict.
    """

    def __init__(self, gamma: float, window: int = STALL_STEPS, tolerance: float = STALL_TOLERANCE):
        self.gamma, self.window, self.tolerance = float(gamma), int(window), float(tolerance)
        self.values: list[float] = []
        self.warned = False

    def add(self, attack_ce: float) -> str | None:
        """Record one step's attack CE; the warning line the first time the CE is found stalled."""
        if self.warned or self.window < 2:
            return None
        self.values.append(float(attack_ce))
        if len(self.values) < self.window:
            return None
        recent = self.values[-self.window:]
        half = self.window // 2
        first, last = sum(recent[:half]) / half, sum(recent[half:]) / (self.window - half)
        if abs(last - first) > self.tolerance * max(abs(first), 1e-8) or last >= self.gamma / 4:
            return None
        self.warned = True
        return (f"the attack term has not moved in {self.window} steps (attack CE {first:.3f} -> {last:.3f}, "
                f"gamma {self.gamma:g}): the normalisation may be wrong, the attack outweighed by the other terms "
                f"(with attack_gradient raw, a well-trained network's input gradient is tiny: use normalised; "
                f"else raise attack_sensitivity or lambda_atk), or gamma is out of reach (it may also still "
                f"rise later)")


def training_events(config: AttackConfig | None, target, images, labels, checkpoint: str | os.PathLike, *,
                    device: str = "auto", resume: str | os.PathLike | None = None, steps: int | None = None,
                    checkpoint_every: int = 0, report: dict[str, Any] | None = None,
                    stall_steps: int = STALL_STEPS, scored=None) -> Iterator[dict[str, Any]]:
    """Train or continue a generator, yielding progress; the checkpoint is written in ``finally``.

    The run's resolved configuration (a resume's own, with ``steps``) is
    written as ``config.json`` beside the checkpoint once the trainer exists.

    Parameters
    ----------
    config : AttackConfig or None
        Settings of a new generator (ignored with ``resume``, whose checkpoint
        holds them).
    target, images, labels, scored
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
    stall_steps : int
        Window of :class:`StallWatch` over this run's steps (0: no check).

    Yields
    ------
    dict
        ``{"kind": "ready", "trainer", "config", "history", "step", "total",
        "labels"}`` once the trainer exists, then ``{"kind": "step",
        "metrics", "step", "total"}`` after each step, and at most once
        ``{"kind": "warning", "message", "step"}`` (a stalled attack term).
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
            trainer = AttackTrainer.resume(resume, target, images, labels, device, scored, **changes)
        else:
            trainer = AttackTrainer(config.replace(**changes), target, images, labels, device, scored)
        report["start_step"] = trainer.step_count
        if trainer.rank == 0:  # the run's resolved configuration beside its checkpoint
            write_run_config(Path(checkpoint).parent, trainer.config)
        yield {"kind": "ready", "trainer": trainer, "config": trainer.config, "history": list(trainer.history),
               "step": trainer.step_count, "total": trainer.config.steps, "labels": trainer.label_source}
        watch = StallWatch(trainer.config.gamma, stall_steps)
        for metrics in trainer.run():
            if checkpoint_every > 0 and trainer.step_count % checkpoint_every == 0:
                save()
            yield {"kind": "step", "metrics": metrics, "step": trainer.step_count, "total": trainer.config.steps}
            message = watch.add(metrics["attack_ce"])
            if message is not None:
                yield {"kind": "warning", "message": message, "step": trainer.step_count}
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
                    warn: Callable[[str], None] | None = None, stall_steps: int = STALL_STEPS,
                    report: dict[str, Any] | None = None, scored=None) -> tuple[AttackTrainer, Path]:
    """Drive :func:`training_events` to the end; ``progress(metrics)`` after each step, ``warn(line)`` on a warning.

    Returns the trainer and ``out_dir/generator.pt``. A failed final save
    raises; Ctrl-C (or a KeyboardInterrupt raised by ``progress`` to stop
    after a step) saves first, then propagates. ``report``: filled in as
    :func:`training_events`'s, for a caller that stops early. ``scored``: as
    :class:`~napari_advseg.attack.trainer.AttackTrainer`'s.
    """
    out = Path(out_dir) / GENERATOR_FILE
    report = {} if report is None else report
    trainer = None
    with contextlib.closing(training_events(config, target, images, labels, out, device=device, resume=resume,
                                            steps=steps, checkpoint_every=checkpoint_every,
                                            report=report, stall_steps=stall_steps, scored=scored)) as events:
        for event in events:
            if event["kind"] == "ready":
                trainer = event["trainer"]
            elif event["kind"] == "warning":
                if warn is not None:
                    warn(event["message"])
            elif progress is not None:
                progress(event["metrics"])
    if "save_error" in report:
        raise report["save_error"]
    return trainer, out
