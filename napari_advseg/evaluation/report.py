"""Evaluation in the shape of the paper's Table 1: Dice per organ, success, rho, folding.

- Dice per organ per volume, over all of its test slices; averaged over volumes.
- Clean Dice: ``f(x)`` against ``y``. Adversarial Dice: ``f(x_adv)`` against
  the warped reference ``y_adv = T_nearest(y; phi)``.
- An organ absent from a volume's reference is left out of that volume's
  average (not scored 0 or 1); absent from every volume, it is not reported.
- An attack on an organ succeeds when ``Dice_adv <= 0.7 * Dice_clean``.
- Chosen organs (``organs``, e.g. the generator's ``--organs``): each is a
  row and the target's other foreground classes are pooled into one class,
  :data:`OTHER` (a network with many classes, TotalSegmentator's 117,
  reports the organs asked for and the rest together). ``other`` is a row
  where the reference holds it, left out of the mean drop and the success
  count.
- Realism of the fields (:mod:`~napari_advseg.attack.realism`): the bias
  field's strongest single wave and its power at short wavelengths, as shares
  of its power, and the range of the deformation's Jacobian determinant.
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
from napari_advseg.attack.realism import SHORT_WAVELENGTH_PX, RealismTally
from napari_advseg.errors import AdvsegError
from napari_advseg.evaluation.metrics import OverlapCounter, organ_row, slice_successes

OTHER = "other"
"""The row of the target's foreground classes pooled beside the chosen organs."""


def report_classes(class_names: Sequence[str], organs: Sequence[str] | None = None
                   ) -> tuple[list[str], torch.Tensor | None, list[str]]:
    """``(report class names, lookup table or None, pooled class names)`` of ``organs`` among ``class_names``.

    ``organs`` None: every class is its own row (no table). Otherwise the
    report's classes are background, the organs in the order given and, when
    the target has other foreground classes, :data:`OTHER`; the table maps a
    target class index to its report index.
    """
    names = list(class_names)
    if organs is None:
        return names, None, []
    index = {name: i for i, name in enumerate(names) if i > 0}
    unknown = [organ for organ in organs if organ not in index]
    if unknown or len(set(organs)) != len(organs) or not organs:
        raise AdvsegError(f"organs to report {', '.join(organs) or '(none)'}: each must be one foreground class of "
                          f"the target, once ({', '.join(names[1:])})")
    table = torch.zeros(len(names), dtype=torch.long)
    for k, organ in enumerate(organs, start=1):
        table[index[organ]] = k
    pooled = [name for i, name in enumerate(names) if i > 0 and name not in organs]
    report_names = [names[0], *organs]
    if pooled:
        table[[index[name] for name in pooled]] = len(report_names)
        report_names.append(OTHER)
    return report_names, table, pooled


def report_organs(class_names: Sequence[str], organs: Sequence[str] | None = None,
                  reference_classes: Sequence[int] | None = None) -> list[str] | None:
    """The organs a report lists: ``organs`` when given; else, when the target has foreground classes the
    reference labels do not name, the target's classes they do name (``reference_classes``, target indices),
    the rest to be pooled as :data:`OTHER`; else None (every class its own row)."""
    if organs is not None:
        return list(organs)
    if reference_classes is None:
        return None
    named = sorted({int(i) for i in reference_classes if i is not None and int(i) > 0})
    if not named or len(named) == len(class_names) - 1:
        return None
    return [class_names[i] for i in named]


class Tally:
    """The one counting loop behind every Table-1 report, the generator's and the baselines'.

    Feed it volume by volume, sample by sample, batch by batch: clean Dice
    counts come from the first sample, adversarial Dice is averaged over the
    samples, and rho, folding, the fields' realism figures and per-slice
    successes over every batch.
    """

    def __init__(self, class_names: Sequence[str], organs: Sequence[str] | None = None):
        self.class_names, self._table, self.pooled = report_classes(class_names, organs)
        self.n_classes = len(self.class_names)
        self._scored = self.n_classes - (1 if self.pooled else 0)  # classes whose successes count
        self.clean_per_volume: list[dict[int, float]] = []
        self.adv_per_volume: list[dict[int, float]] = []
        self.rhos: list[float] = []
        self.folded = self.checked = 0
        self.successes = self.trials = 0
        self.slices = 0
        self.realism = RealismTally()
        self._clean: OverlapCounter | None = None
        self._runs: list[dict[int, float]] = []
        self._adv: OverlapCounter | None = None

    def start_volume(self) -> None:
        self._clean, self._runs = OverlapCounter(self.n_classes), []

    def start_sample(self) -> None:
        self._adv = OverlapCounter(self.n_classes)

    def add(self, first_sample: bool, reference, pred_clean, pred_adv, warped_reference, rho, displacement,
            bias=None) -> None:
        """One batch: (B, H, W) label maps, per-slice ``rho`` (B,), ``displacement`` (B, 2, H, W) pixels and
        ``bias`` (B, 1, H, W) (an intensity attack's perturbation ``x_adv - x``), each None or zero when
        the attack has no such field."""
        reference, warped_reference = torch.as_tensor(reference).cpu(), torch.as_tensor(warped_reference).cpu()
        if self._table is not None:
            reference, warped_reference, pred_clean, pred_adv = (
                self._table[torch.as_tensor(x).cpu().long()] for x in (reference, warped_reference, pred_clean,
                                                                        pred_adv))
        if first_sample:
            self._clean.add(pred_clean, reference)
            self.slices += len(reference)
        self._adv.add(pred_adv, warped_reference)
        s, t = slice_successes(pred_clean, reference, pred_adv, warped_reference, self._scored)
        self.successes, self.trials = self.successes + s, self.trials + t
        self.rhos.extend(torch.as_tensor(rho).flatten().tolist())
        if displacement is not None:
            f, c = fold_count(displacement)
            self.folded, self.checked = self.folded + f, self.checked + c
        self.realism.add(displacement, bias)

    def end_sample(self) -> None:
        self._runs.append(self._adv.dice())

    def end_volume(self) -> None:
        self.clean_per_volume.append(self._clean.dice())
        self.adv_per_volume.append({c: float(np.mean([run[c] for run in self._runs]))
                                    for c in range(1, self.n_classes)})

    def report(self) -> dict[str, Any]:
        """The organ entries (:func:`summarise_dice`), rho, folding, ``realism``
        (:meth:`~napari_advseg.attack.realism.RealismTally.report`), the per-slice success rate and, where
        classes are pooled as :data:`OTHER`, ``other_classes`` (their names)."""
        return {
            **summarise_dice(self.clean_per_volume, self.adv_per_volume, self.class_names,
                             pooled=OTHER if self.pooled else None),
            "rho": float(np.mean(self.rhos)) if self.rhos else math.nan,
            "fold_fraction": self.folded / self.checked if self.checked else 0.0,
            "realism": self.realism.report(),
            "slice_success_rate": self.successes / self.trials if self.trials else math.nan,
            "volumes": len(self.clean_per_volume),
            "slices": self.slices,
            **({"other_classes": list(self.pooled)} if self.pooled else {}),
        }


def evaluate_attack(generator, config: AttackConfig, target, volumes: Sequence[tuple[Any, Any]], *,
                    samples: int = 1, seed: int = 0, temperature: float = 1.0, batch_size: int = 8,
                    progress=None, rho: float | None = None, organs: Sequence[str] | None = None) -> dict[str, Any]:
    """The Table-1 figures of one generator on one or more test volumes.

    Parameters
    ----------
    volumes : sequence of (images (N, H, W) normalised, labels (N, H, W)[, scored])
        Each entry is one volume's test slices with their reference labels;
        a third item, the indices of the slices to score (the others are
        attacked and seen by the target but not counted), is what a
        volumetric target needs to score part of a volume
        (:func:`~napari_advseg.attack.apply.slices_to_run`).
    samples : int
        Adversarial samples drawn per slice (latent deviates from ``seed``).
    progress : callable(int) or None
        Called with the number of slices done after each batch.
    rho : float or None
        Each slice's fields scaled to this rho (:func:`~napari_advseg.attack.strength.scale_to_rho`);
        None: the generator's own.
    organs : sequence of str or None
        The organs to report, the target's other classes pooled as
        :data:`OTHER` (:func:`report_classes`); None: every class.
    """
    tally = Tally(target.class_names, organs)
    rng = torch.Generator().manual_seed(seed)
    for entry in volumes:
        images, labels = entry[0], entry[1]
        scored = entry[2] if len(entry) > 2 else None
        tally.start_volume()
        clean = None  # the target's clean segmentation of the slices: made with the first sample, then reused
        for sample in range(samples):
            tally.start_sample()
            made = None if clean is not None else np.zeros(np.shape(labels), np.uint8)
            for result in attack_slices(generator, config, target, images, labels, batch_size=batch_size,
                                        temperature=temperature, rng=rng, rho=rho, clean=clean):
                if made is not None:
                    made[result.start:result.start + len(result.rho)] = result.pred_clean.numpy()
                keep = scored_rows(result.start, len(result.rho), scored)
                if not keep.any():
                    continue
                y = np.asarray(labels[result.start:result.start + len(result.rho)])[keep.numpy()]
                tally.add(sample == 0, y, result.pred_clean[keep], result.pred_adv[keep],
                          result.warped_reference[keep], result.rho[keep], result.displacement[keep],
                          result.bias[keep])
                if progress is not None:
                    progress(int(keep.sum()))
            if made is not None:
                clean = made
            tally.end_sample()
        tally.end_volume()
    return {**tally.report(), "config": config.to_dict(), "samples": samples, "temperature": temperature,
            "seed": seed}


def scored_rows(start: int, length: int, scored) -> torch.Tensor:
    """Which rows of a batch of the slices ``start .. start + length - 1`` are scored: a bool mask.

    ``scored``: the indices of the slices to score, or None (every slice).
    """
    if scored is None:
        return torch.ones(length, dtype=torch.bool)
    return torch.as_tensor(np.isin(np.arange(start, start + length), np.asarray(scored)))


def summarise_dice(clean_per_volume: Sequence[dict[int, float]], adv_per_volume: Sequence[dict[int, float]],
                   class_names: Sequence[str], pooled: str | None = None) -> dict[str, Any]:
    """Per-volume Dice (class -> value, NaN where absent) -> the report's organ entries.

    Returns ``organs`` (name -> :func:`organ_row` of the means over the volumes
    holding the organ, plus ``volumes``), ``absent_organs``, ``mean_drop`` and
    ``all_succeed``; the class named ``pooled`` (:data:`OTHER`) is a row but
    counts in neither of the last two.
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
    scored = [row for name, row in organs.items() if name != pooled]
    drops = [row["drop"] for row in scored if not math.isnan(row["drop"])]  # clean Dice 0: no drop
    return {"organs": organs, "absent_organs": absent,
            "mean_drop": float(np.mean(drops)) if drops else math.nan,
            "all_succeed": bool(scored) and all(row["success"] for row in scored)}


def _share_cell(value) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def realism_cells(report: dict[str, Any]) -> list[str]:
    """The table's realism cells of one report: bias stripe share, bias short-wavelength share, det J range.

    ``n/a`` where the attack has no such field, or the report predates the figures.
    """
    realism = report.get("realism") or {}
    low, high = realism.get("jacobian_min"), realism.get("jacobian_max")
    jacobian = "n/a" if low is None or high is None else f"{low:.2f}..{high:.2f}"
    return [_share_cell(realism.get("bias_stripe_share")), _share_cell(realism.get("bias_short_share")), jacobian]


REALISM_COLUMNS = ("b stripe", f"b < {SHORT_WAVELENGTH_PX:g} px", "det J")
"""Headers of the realism columns of :func:`format_table`."""


def format_table(rows: Sequence[tuple[str, dict[str, Any]]], organs: Sequence[str] | None = None) -> str:
    """A Markdown table shaped like the paper's Table 1.

    ``rows`` are (row label, report) pairs; the clean Dice and the 30 % line
    come from the first report. Dice in %, adversarial cells with the
    relative drop; a cell passing the 30 % line ends with ``*``. Beside rho
    the realism figures (:func:`realism_cells`): the bias field's strongest
    wave and its short-wavelength power as shares of its power, and the range
    of the deformation's Jacobian determinant.
    """
    if not rows:
        return ""
    first = rows[0][1]["organs"]
    names = list(organs) if organs is not None else list(first)
    header = "| row | " + " | ".join(names) + " | rho | " + " | ".join(REALISM_COLUMNS) + " | folds | organs >= 30 % |"
    lines = [header, "|" + " --- |" * (len(names) + 4 + len(REALISM_COLUMNS))]
    blanks = " |" * (3 + len(REALISM_COLUMNS))

    def cell(value: float | None) -> str:
        return "n/a" if _undefined(value) else f"{100 * value:.2f}"

    lines.append("| U-Net, clean | " + " | ".join(cell(first[n]["dice_clean"]) if n in first else "n/a"
                                                   for n in names) + " |" + blanks)
    lines.append("| 30 % decrease | " + " | ".join(cell(0.7 * first[n]["dice_clean"]) if n in first else "n/a"
                                                    for n in names) + " |" + blanks)
    for label, report in rows:
        organ_rows = report["organs"]
        cells = []
        for n in names:
            if n not in organ_rows:
                cells.append("n/a")
                continue
            r = organ_rows[n]
            drop = "" if _undefined(r["drop"]) else f" ({-100 * r['drop']:+.0f} %)"
            cells.append(f"{cell(r['dice_adv'])}{drop}{'*' if r['success'] else ''}")
        scored = [n for n in names if not (n == OTHER and report.get("other_classes"))]
        passed = sum(1 for n in scored if n in organ_rows and organ_rows[n]["success"])
        rho = "n/a" if _undefined(report["rho"]) else f"{report['rho']:.3f}"
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {rho} | " + " | ".join(realism_cells(report))
                     + f" | {100 * report['fold_fraction']:.2f} % | {passed}/{len(scored)} |")
    return "\n".join(lines)


def _undefined(value: float | None) -> bool:
    """No figure: None (how strict JSON reports store it) or NaN (how it is computed)."""
    return value is None or math.isnan(value)
