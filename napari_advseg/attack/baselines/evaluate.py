"""Scoring a baseline attack: per-slice successes and the Table-1 report of one baseline.

Kept apart from the attacks: these score them, with the counting of
:mod:`napari_advseg.evaluation.report`, and no attack needs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from napari_advseg.attack.baselines.common import AttackResult
from napari_advseg.attack.baselines.registry import ATTACKS
from napari_advseg.attack.fields import fold_count, perceptibility_per_slice
from napari_advseg.evaluation.report import SUCCESS_DROP, OverlapCounter, summarise_dice

__all__ = [
    "evaluate_baseline",
    "slice_successes",
]


def slice_successes(pred_clean: torch.Tensor, reference: torch.Tensor, pred_adv: torch.Tensor,
                    warped_reference: torch.Tensor, n_classes: int) -> tuple[int, int]:
    """(successes, trials) over the (slice, organ) pairs of a batch.

    A trial is an organ present in a slice's reference whose clean Dice on that
    slice is above 0; it succeeds when the slice's adversarial Dice (against the
    warped reference) is at most 70 % of the clean one, the 30 % line of Table 1
    applied slice by slice.
    """
    def dice(ref: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Per-slice Dice of two (N, H, W) masks (0 where both are empty)."""
        ref, pred = ref.flatten(1), pred.flatten(1)
        return 2 * (ref & pred).sum(1).double() / (ref.sum(1) + pred.sum(1)).double().clamp_min(1)

    successes = trials = 0
    for c in range(1, n_classes):
        clean = dice(reference == c, pred_clean == c)
        adv = dice(warped_reference == c, pred_adv == c)
        counted = (reference == c).flatten(1).any(1) & (clean > 0)
        trials += int(counted.sum())
        successes += int((counted & (adv <= (1.0 - SUCCESS_DROP) * clean)).sum())
    return successes, trials


def evaluate_baseline(name: str | Callable[..., AttackResult], target, volumes: Sequence[tuple[Any, Any]],
                      rho: float | None, samples: int = 1, seed: int = 0, batch_size: int = 8,
                      organ_ids: Sequence[int] | None = None, *, options: dict[str, Any] | None = None,
                      progress=None) -> dict[str, Any]:
    """The Table-1 figures of one baseline attack, shaped like ``evaluate_attack``'s report.

    Dice per organ per volume over all its slices, averaged over volumes;
    clean Dice of ``f(x)`` against ``y``, adversarial Dice of ``f(x_adv)``
    against the warped reference ``warp_labels(y, phi)`` (``y`` for intensity
    attacks); organs absent from a volume's reference are left out of its
    average. Slices are moved to ``target.device``.

    Parameters
    ----------
    name : str or callable
        A key of :data:`ATTACKS`, or an attack with their signature (e.g.
        :func:`generator_attack` with its generator bound); its ``__name__``
        names it in the report.
    target : napari_advseg.models.target.Target
        Frozen network (needs ``class_names`` and ``device``).
    volumes : sequence of (images (N, H, W) normalised, labels (N, H, W) integer)
        Each entry is one volume's test slices with their reference labels.
    rho : float or None
        Perceptibility per slice (Eq. 7, dimensionless); None only for attacks
        that choose their own (:func:`generator_attack`).
    samples : int
        Attacks per slice (different random draws from one stream seeded by ``seed``).
    seed : int
        Seed of the ``torch.Generator`` every random draw comes from.
    batch_size : int
        Slices attacked together.
    organ_ids : sequence of int or None
        Label values attacked (passed to the attack); None means every label > 0.
    options : dict, optional
        Further keyword arguments of the attack (e.g. ``control_spacing``).
    progress : callable(int) or None
        Called with the number of slices done after each batch.

    Returns
    -------
    dict
        The keys of ``evaluate_attack``'s report (``organs``, ``absent_organs``,
        ``rho``, ``fold_fraction``, ``mean_drop``, ``all_succeed``, ``config``,
        ``samples``, ``temperature`` (None: no latent sampling), ``seed``,
        ``volumes``, ``slices``), with ``config`` describing the baseline, plus
        ``"seconds_per_slice"``: mean wall-clock time of the attack per slice
        (seconds; model forward passes for the Dice excluded), and
        ``"slice_success_rate"``: the fraction of (slice, organ) pairs whose
        Dice on that slice drops by >= 30 % (:func:`slice_successes`).
    """
    if callable(name):
        attack = name
        name = getattr(attack, "__name__", None) or getattr(getattr(attack, "func", None), "__name__", "attack")
    elif name in ATTACKS:
        attack = ATTACKS[name]
    else:
        raise ValueError(f"unknown baseline {name!r}: expected one of {', '.join(ATTACKS)}")
    if samples < 1 or batch_size < 1:
        raise ValueError("samples and batch_size must be >= 1")
    options = dict(options or {})
    class_names = list(target.class_names)
    n_classes = len(class_names)
    device = torch.device(getattr(target, "device", "cpu"))
    rng = torch.Generator().manual_seed(seed)
    clean_per_volume: list[dict[int, float]] = []
    adv_per_volume: list[dict[int, float]] = []
    rhos: list[float] = []
    folded = checked = 0
    seconds = 0.0
    attacked = 0
    successes = trials = 0
    for images, labels in volumes:
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels)
        clean = OverlapCounter(n_classes)
        clean_predictions: dict[int, torch.Tensor] = {}  # batch start -> f(x), the same for every sample
        adv_runs = []
        for sample in range(samples):
            adv = OverlapCounter(n_classes)
            for start in range(0, len(images), batch_size):
                x = torch.as_tensor(images[start:start + batch_size])[:, None].to(device)
                y = torch.as_tensor(labels[start:start + batch_size]).long().to(device)
                result = attack(x, y, target, rho, rng, organ_ids=organ_ids, **options)
                seconds += result.seconds
                attacked += x.shape[0]
                with torch.no_grad():
                    if sample == 0:
                        clean_predictions[start] = target(x).argmax(dim=1).cpu()
                        clean.add(clean_predictions[start], y.cpu())
                    pred_adv = target(result.adversarial).argmax(dim=1).cpu()
                pred_clean = clean_predictions[start]
                adv.add(pred_adv, result.warped_labels.cpu())
                s, t = slice_successes(pred_clean, y.cpu(), pred_adv, result.warped_labels.cpu(), n_classes)
                successes, trials = successes + s, trials + t
                rhos.extend(perceptibility_per_slice(result.adversarial, x).cpu().tolist())
                f, c = fold_count(result.displacement)
                folded, checked = folded + f, checked + c
                if progress is not None:
                    progress(x.shape[0])
            adv_runs.append(adv.dice())
        clean_per_volume.append(clean.dice())
        adv_per_volume.append({c: float(np.mean([run[c] for run in adv_runs])) for c in range(1, n_classes)})

    config = {"baseline": name, "rho": None if rho is None else float(rho),
              "organ_ids": None if organ_ids is None else [int(o) for o in organ_ids]}
    config.update({key: value for key, value in options.items()
                   if value is None or isinstance(value, (bool, int, float, str))})
    return {
        **summarise_dice(clean_per_volume, adv_per_volume, class_names),
        "rho": float(np.mean(rhos)) if rhos else math.nan,
        "fold_fraction": folded / checked if checked else 0.0,
        "config": config,
        "samples": samples,
        "temperature": None,
        "seed": seed,
        "volumes": len(volumes),
        "slices": sum(len(images) for images, _ in volumes),
        "seconds_per_slice": seconds / attacked if attacked else math.nan,
        "slice_success_rate": successes / trials if trials else math.nan,
    }
