"""Scoring the baseline attacks: the Table-1 report of one baseline, with the generator's counting.

The same :class:`~napari_advseg.evaluation.report.Tally` counts the
generator's report (:func:`~napari_advseg.evaluation.report.evaluate_attack`)
and these, so the two are comparable figure for figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from napari_advseg.attack.baselines.common import AttackResult
from napari_advseg.attack.baselines.registry import ATTACKS
from napari_advseg.attack.fields import perceptibility_per_slice
from napari_advseg.evaluation.report import Tally, scored_rows
from napari_advseg.models.target import slices_per_call


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
    volumes : sequence of (images (N, H, W) normalised, labels (N, H, W) integer[, scored])
        Each entry is one volume's test slices with their reference labels,
        and optionally the indices of the slices to score (as
        :func:`~napari_advseg.evaluation.report.evaluate_attack`'s).
    rho : float or None
        Perceptibility per slice (Eq. 7, dimensionless); None only for attacks
        that choose their own (:func:`generator_attack`).
    samples : int
        Attacks per slice (different random draws from one stream seeded by ``seed``).
    seed : int
        Seed of the ``torch.Generator`` every random draw comes from.
    batch_size : int
        Slices attacked together; a volumetric target is attacked a whole
        volume at a time (:func:`~napari_advseg.models.target.slices_per_call`).
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
        ``rho``, ``fold_fraction``, ``realism``, ``mean_drop``, ``all_succeed``, ``config``,
        ``samples``, ``temperature`` (None: no latent sampling), ``seed``,
        ``volumes``, ``slices``), with ``config`` describing the baseline, plus
        ``"seconds_per_slice"``: mean wall-clock time of the attack per slice
        (seconds; model forward passes for the Dice excluded), and
        ``"slice_success_rate"``: the fraction of (slice, organ) pairs whose
        Dice on that slice drops by >= 30 % (:func:`~napari_advseg.evaluation.metrics.slice_successes`).
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
    device = torch.device(getattr(target, "device", "cpu"))
    rng = torch.Generator().manual_seed(seed)
    tally = Tally(target.class_names)
    seconds = 0.0
    attacked = 0
    for entry in volumes:
        images = np.asarray(entry[0], dtype=np.float32)
        labels = np.asarray(entry[1])
        scored = entry[2] if len(entry) > 2 else None
        step = slices_per_call(target, len(images), batch_size)
        clean_predictions: dict[int, torch.Tensor] = {}  # batch start -> f(x), the same for every sample
        tally.start_volume()
        for sample in range(samples):
            tally.start_sample()
            for start in range(0, len(images), step):
                x = torch.as_tensor(images[start:start + step])[:, None].to(device)
                y = torch.as_tensor(labels[start:start + step]).long().to(device)
                result = attack(x, y, target, rho, rng, organ_ids=organ_ids, **options)
                seconds += result.seconds
                attacked += x.shape[0]
                with torch.no_grad():
                    if sample == 0:
                        clean_predictions[start] = target(x).argmax(dim=1).cpu()
                    pred_adv = target(result.adversarial).argmax(dim=1).cpu()
                keep = scored_rows(start, x.shape[0], scored)
                if not keep.any():
                    continue
                rho_rows = perceptibility_per_slice(result.adversarial, x).cpu()
                tally.add(sample == 0, y.cpu()[keep], clean_predictions[start][keep], pred_adv[keep],
                          result.warped_labels.cpu()[keep], rho_rows[keep], _rows(result.displacement, keep),
                          _rows(result.bias, keep))
                if progress is not None:
                    progress(int(keep.sum()))
            tally.end_sample()
        tally.end_volume()

    config = {"baseline": name, "rho": None if rho is None else float(rho),
              "organ_ids": None if organ_ids is None else [int(o) for o in organ_ids]}
    config.update({key: value for key, value in options.items()
                   if value is None or isinstance(value, (bool, int, float, str))})
    return {**tally.report(), "config": config, "samples": samples, "temperature": None, "seed": seed,
            "seconds_per_slice": seconds / attacked if attacked else math.nan}


def _rows(values: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    """The kept rows of a per-slice field (None stays None)."""
    return None if values is None else values.cpu()[keep]
