"""Generator checkpoints: reading one, the frozen generator it holds, and whether it fits a target.

A generator's fields are in the normalised units of the target it was trained
against and its attack loss names that target's classes, so a generator only
fits a target with the same class names and the same intensity normalisation
(:func:`generator_mismatch`). :func:`load_generator` refuses a mismatch when
it is given the target; the trainer's resume, hardening and the widget's
session check with the same function, so every face says the same thing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from napari_advseg.attack.config import CONFIG_FILE, AttackConfig
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError, first_line
from napari_advseg.io.atomic import atomic_write, load_torch_dict
from napari_advseg.io.json_write import write_json
from napari_advseg.models.target_meta import window_words
from napari_advseg.seeding import seeded_build

GENERATOR_FORMAT = "napari-advseg-generator"

META_KEYS = ("step", "class_names", "normalisation", "target", "data", "label_source")
"""What :func:`load_generator` returns of a checkpoint besides the weights (with its ``history``)."""


def _intensities(normalisation: Mapping | None) -> tuple:
    """What a normalisation means for the generator's units: the mode, and a window's HU bounds."""
    normalisation = dict(normalisation or {"mode": "zscore"})
    mode = normalisation.get("mode", "zscore")
    window = normalisation.get("window") if mode == "window" else None
    if mode == "ct":
        return mode, tuple(float(v) for v in normalisation["clip"]), float(normalisation["mean"]), float(normalisation["std"])
    if window is not None and [float(v) for v in normalisation.get("range", (-1, 1))] != [-1.0, 1.0]:
        return mode, tuple(float(v) for v in window), tuple(float(v) for v in normalisation["range"])
    return mode, None if window is None else tuple(float(v) for v in window)


def _describe(normalisation: Mapping | None) -> str:
    mode, *values = _intensities(normalisation)
    if mode == "ct":
        (low, high), mean, std = values
        return f"CT intensities clipped to [{low:g}, {high:g}] HU, mean {mean:g}, std {std:g}"
    if mode == "window" and values[0] is not None:
        window = values[0]
        mapped = f" mapped to [{values[1][0]:g}, {values[1][1]:g}]" if len(values) > 1 else ""
        return f"the HU window [{window[0]:g}, {window[1]:g}]{mapped}"
    return f"{mode} intensities"


def generator_mismatch(meta: Mapping[str, Any], class_names: Sequence[str],
                       normalisation: Mapping | None = None) -> str | None:
    """Why a generator (its checkpoint's ``meta``) does not fit a target, or None when it does.

    The class names must be the same, in the same order. The normalisation is
    compared where the checkpoint records it (checkpoints before that record
    only the classes): the mode, and for a window target the window in HU.
    """
    trained = list(meta.get("class_names") or [])
    if trained and trained != list(class_names):
        return f"trained against classes {trained}, but the target has {list(class_names)}"
    recorded = meta.get("normalisation")
    if recorded is not None and _intensities(recorded) != _intensities(normalisation):
        return (f"trained against a target that sees {_describe(recorded)}, "
                f"but this target sees {_describe(normalisation)}")
    return None


def check_generator_fits(meta: Mapping[str, Any], target, where: str = "the generator") -> None:
    """AdvsegError ``"{where}: {why}"`` unless the generator of ``meta`` fits ``target`` (:func:`generator_mismatch`)."""
    why = generator_mismatch(meta, tuple(target.class_names), getattr(target, "normalisation", None))
    if why is not None:
        raise AdvsegError(f"{where}: {why}")


def window_mismatch(meta: Mapping[str, Any], target) -> str | None:
    """A warning when the generator of ``meta`` was trained against its network run otherwise than ``target``'s
    (a declared sliding window, or none); None when they agree or the checkpoint predates the record.

    Not an error: the fields fit either way; the network they were trained to break is run differently.
    """
    recorded = meta.get("target") or {}
    if not isinstance(recorded, Mapping) or "sliding_window" not in recorded:
        return None
    trained, now = recorded["sliding_window"], getattr(target, "sliding_window", None)
    if trained == now:
        return None
    return (f"the generator was trained against its network run {window_words(trained)}, but this target runs "
            f"{window_words(now)}; declare the same window (--sliding-window, or sliding_window in the model's "
            f".json) to attack the network it was trained on")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a generator checkpoint (``weights_only=True``) and check its kind."""
    return load_torch_dict(path, GENERATOR_FORMAT, ("config", "generator", "step", "class_names"))


def generator_from_state(state: dict[str, Any], device: str | torch.device = "auto", where: str = "the generator"
                         ) -> tuple[AttackGenerator, AttackConfig]:
    """The generator of a checkpoint's dictionary, frozen (eval mode, no gradients), and its config."""
    try:
        config = AttackConfig.from_dict(state["config"])
        with seeded_build(None):  # its first weights are replaced by the checkpoint's
            generator = AttackGenerator(config)
        generator.load_state_dict(state["generator"])
    except (AdvsegError, RuntimeError, TypeError) as exc:
        raise AdvsegError(f"{where}: generator weights do not fit its config ({first_line(exc)})") from None
    generator.to(resolve_device(device)).eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    return generator, config


def load_generator(path: str | os.PathLike, device: str | torch.device = "auto", target=None
                   ) -> tuple[AttackGenerator, AttackConfig, dict[str, Any]]:
    """A trained generator in eval mode for sampling, its config, and the checkpoint's metadata.

    With ``target``, a generator that does not fit it is refused
    (:func:`check_generator_fits`) before its weights are built.
    """
    state = load_checkpoint(path)
    if target is not None:
        check_generator_fits(state, target, str(path))
    generator, config = generator_from_state(state, device, where=str(path))
    meta = {k: v for k, v in state.items() if k in META_KEYS}
    meta["history"] = state.get("history", [])
    return generator, config, meta


def write_run_config(folder: str | os.PathLike, config: AttackConfig) -> Path:
    """Write ``folder/config.json``: the run's full attack configuration, readable and reusable (``--config``)."""
    return write_json(Path(folder) / CONFIG_FILE, config.to_dict())
