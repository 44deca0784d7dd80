"""Evaluation in the shape of the paper's Table 1: Dice per organ, success, rho, folding.

- Dice per organ per volume, over all of its test slices; averaged over volumes.
- Clean Dice: ``f(x)`` against ``y``. Adversarial Dice: ``f(x_adv)`` against
  the warped reference ``y_adv = T_nearest(y; phi)``.
- An organ absent from a volume's reference is left out of that volume's
  average (not scored 0 or 1); absent from every volume, it is not reported.
- An attack on an organ succeeds when ``Dice_adv <= 0.7 * Dice_clean``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_advseg.attack.apply import attack_slices
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.fields import fold_count
from napari_advseg.evaluation.metrics import OverlapCounter, organ_row


def evaluate_attack(generator, config: AttackConfig, target, volumes: Sequence[tuple[Any, Any]], *,
                    samples: int = 1, seed: int = 0, temperature: float = 1.0, batch_size: int = 8,
                    progress=None) -> dict[str, Any]:
    """The Table-1 figures of one generator on one or more test volumes.

    Parameters
    ----------
    volumes : sequence of (images (N, H, W) normalised, labels (N, H, W))
        Each entry is one volume's test slices with their reference labels.
    samples : int
        Adversarial samples drawn per slice (latent deviates from ``seed``).
    progress : callable(int) or None
        Called with the number of slices done after each batch.
    """
    class_names = list(target.class_names)
    n_classes = len(class_names)
    clean_per_volume: list[dict[int, float]] = []
    adv_per_volume: list[dict[int, float]] = []
    rhos: list[float] = []
    folded = checked = 0
    rng = torch.Generator().manual_seed(seed)
    for images, labels in volumes:
        clean = OverlapCounter(n_classes)
        adv_runs = []
        for sample in range(samples):
            adv = OverlapCounter(n_classes)
            for result in attack_slices(generator, config, target, images, labels, batch_size=batch_size,
                                        temperature=temperature, rng=rng):
                if sample == 0:
                    y = torch.as_tensor(np.asarray(labels[result.start:result.start + len(result.rho)]))
                    clean.add(result.pred_clean, y)
                adv.add(result.pred_adv, result.warped_reference)
                rhos.extend(result.rho.tolist())
                f, c = fold_count(result.displacement)
                folded, checked = folded + f, checked + c
                if progress is not None:
                    progress(len(result.rho))
            adv_runs.append(adv.dice())
        clean_per_volume.append(clean.dice())
        adv_per_volume.append({c: float(np.mean([run[c] for run in adv_runs])) for c in range(1, n_classes)})

    return {
        **summarise_dice(clean_per_volume, adv_per_volume, class_names),
        "rho": float(np.mean(rhos)) if rhos else math.nan,
        "fold_fraction": folded / checked if checked else 0.0,
        "config": config.to_dict(),
        "samples": samples,
        "temperature": temperature,
        "seed": seed,
        "volumes": len(volumes),
        "slices": sum(len(images) for images, _ in volumes),
    }


def summarise_dice(clean_per_volume: Sequence[dict[int, float]], adv_per_volume: Sequence[dict[int, float]],
                   class_names: Sequence[str]) -> dict[str, Any]:
    """Per-volume Dice (class -> value, NaN where absent) -> the report's organ entries.

    Returns ``organs`` (name -> :func:`organ_row` of the means over the volumes
    holding the organ, plus ``volumes``), ``absent_organs``, ``mean_drop`` and
    ``all_succeed``.
    """
    organs: dict[str, Any] = {}
    absent = []
    for c in range(1, len(class_names)):
        pairs = [(cv[c], av[c]) for cv, av in zip(clean_per_volume, adv_per_volume) if not math.isnan(cv[c])]
        if not pairs:
            absent.append(class_names[c])
            continue
        row = organ_row(float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs])))
        row["volumes"] = len(pairs)
        organs[class_names[c]] = row
    drops = [row["drop"] for row in organs.values() if not math.isnan(row["drop"])]  # clean Dice 0: no drop
    return {"organs": organs, "absent_organs": absent,
            "mean_drop": float(np.mean(drops)) if drops else math.nan,
            "all_succeed": bool(organs) and all(row["success"] for row in organs.values())}


def format_table(rows: Sequence[tuple[str, dict[str, Any]]], organs: Sequence[str] | None = None) -> str:
    """A Markdown table shaped like the paper's Table 1.

    ``rows`` are (row label, report) pairs; the clean Dice and the 30 % line
    come from the first report. Dice in %, adversarial cells with the
    relative drop; a cell passing the 30 % line ends with ``*``.
    """
    if not rows:
        return ""
    first = rows[0][1]["organs"]
    names = list(organs) if organs is not None else list(first)
    header = "| row | " + " | ".join(names) + " | rho | folds | organs >= 30 % |"
    lines = [header, "|" + " --- |" * (len(names) + 4)]

    def cell(value: float) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"

    lines.append("| U-Net, clean | " + " | ".join(cell(first[n]["dice_clean"]) if n in first else "n/a"
                                                   for n in names) + " | | | |")
    lines.append("| 30 % decrease | " + " | ".join(cell(0.7 * first[n]["dice_clean"]) if n in first else "n/a"
                                                    for n in names) + " | | | |")
    for label, report in rows:
        organ_rows = report["organs"]
        cells = []
        for n in names:
            if n not in organ_rows:
                cells.append("n/a")
                continue
            r = organ_rows[n]
            drop = "" if math.isnan(r["drop"]) else f" ({-100 * r['drop']:+.0f} %)"
            cells.append(f"{cell(r['dice_adv'])}{drop}{'*' if r['success'] else ''}")
        passed = sum(1 for n in names if n in organ_rows and organ_rows[n]["success"])
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {report['rho']:.3f} | {100 * report['fold_fraction']:.2f} % | {passed}/{len(names)} |")
    return "\n".join(lines)
