"""Where the adversarial slices of a hardening batch come from, and the batch's Dice."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from napari_advseg.attack.baselines.common import AttackResult
from napari_advseg.defense.config import HardenConfig
from napari_advseg.errors import AdvsegError


def load_generator_state(generator: str | os.PathLike | dict, target) -> dict[str, Any]:
    """A generator checkpoint's dictionary, checked against the target (classes and normalisation)."""
    from napari_advseg.attack.checkpoint import check_generator_fits, load_checkpoint

    state = generator if isinstance(generator, dict) else load_checkpoint(generator)
    check_generator_fits(state, target, "the generator" if isinstance(generator, dict) else str(generator))
    return state


def adversarial_part(config: HardenConfig, x: torch.Tensor, y: torch.Tensor, target, rho: float,
                     rng: torch.Generator, generator=None) -> AttackResult:
    """The adversarial version of ``x`` (labels warped with the anatomy), at perceptibility ``rho``.

    ``generator`` is ``(generator, AttackConfig)`` for the ``generator`` method:
    one forward pass with fresh latent codes drawn from ``rng``.
    """
    from napari_advseg.attack.baselines.registry import ATTACKS, generator_attack

    if config.method == "generator":
        model, attack_config = generator
        return generator_attack(x, y, target, rho, rng, generator=model, config=attack_config)
    # the registry's peers see the fields as the target does (its input range; along z for a 3D target)
    if config.method == "random_fields":
        return ATTACKS["random_fields"](x, y, target, rho, rng, control_spacing=config.control_spacing)
    if config.method == "optimised_fields":
        return ATTACKS["optimised_fields_20"](x, y, target, rho, rng, steps=config.opt_steps,
                                              control_spacing=config.control_spacing)
    raise AdvsegError(f"the {config.method!r} method makes no adversarial slices")


def batch_dice(predicted: torch.Tensor, reference: torch.Tensor, class_names) -> float:
    """Mean Dice over the organs present in ``reference`` (the whole batch pooled); NaN when none is."""
    from napari_advseg.evaluation.metrics import dice_per_organ

    scores = [d for d in dice_per_organ(predicted, reference, class_names).values() if not math.isnan(d)]
    return float(sum(scores) / len(scores)) if scores else math.nan
