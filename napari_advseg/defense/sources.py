"""Where the adversarial slices of a hardening batch come from, and the batch's Dice."""

from __future__ import annotations

import os
from typing import Any

import torch

from napari_advseg.attack.baselines.common import AttackResult
from napari_advseg.defense.config import HardenConfig
from napari_advseg.errors import AdvsegError


def load_generator_state(generator: str | os.PathLike | dict, class_names) -> dict[str, Any]:
    """A generator checkpoint's dictionary, checked against the target's classes."""
    from napari_advseg.attack.trainer import load_checkpoint

    state = generator if isinstance(generator, dict) else load_checkpoint(generator)
    if list(state["class_names"]) != list(class_names):
        where = "the generator" if isinstance(generator, dict) else str(generator)
        raise AdvsegError(f"{where}: trained against classes {list(state['class_names'])}, "
                          f"but the target has {list(class_names)}")
    return state


def adversarial_part(config: HardenConfig, x: torch.Tensor, y: torch.Tensor, target, rho: float,
                     rng: torch.Generator, generator=None) -> AttackResult:
    """The adversarial version of ``x`` (labels warped with the anatomy), at perceptibility ``rho``.

    ``generator`` is ``(generator, AttackConfig)`` for the ``generator`` method:
    one forward pass with fresh latent codes drawn from ``rng``.
    """
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.baselines.smooth_fields import optimised_smooth_fields, random_smooth_fields

    if config.method == "generator":
        model, attack_config = generator
        return generator_attack(x, y, target, rho, rng, generator=model, config=attack_config)
    if config.method == "random_fields":
        return random_smooth_fields(x, y, rho, rng, control_spacing=config.control_spacing)
    if config.method == "optimised_fields":
        return optimised_smooth_fields(x, y, target, rho, config.opt_steps, rng,
                                       control_spacing=config.control_spacing)
    raise AdvsegError(f"the {config.method!r} method makes no adversarial slices")


def batch_dice(predicted: torch.Tensor, reference: torch.Tensor, n_classes: int) -> float:
    """Mean Dice over the organs present in ``reference`` (hard labels, the whole batch pooled)."""
    scores = []
    for c in range(1, n_classes):
        ref = reference == c
        size = int(ref.sum())
        if size == 0:
            continue
        pred = predicted == c
        scores.append(2.0 * float((pred & ref).sum()) / (size + float(pred.sum())))
    return sum(scores) / len(scores) if scores else float("nan")
