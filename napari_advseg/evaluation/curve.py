"""Dose-response curves: each organ's Dice against the attack's strength rho.

:func:`volume_curve` is ``advseg curve``: the evaluation's per-volume Dice
(:func:`~napari_advseg.evaluation.report.evaluate_attack`) with every slice's
fields scaled to each rho of a grid, the same latent codes at every rho.
:func:`draw_curve` plots a curve into matplotlib axes (the CLI's PNG and the
Explore tab's plot); :func:`write_curve` writes ``curve.json`` and ``curve.png``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.strength import DoseResponse, check_rhos
from napari_advseg.errors import AdvsegError
from napari_advseg.io.atomic import atomic_write
from napari_advseg.io.json_write import write_json
from napari_advseg.organs import class_colours

CURVE_FILES = {"json": "curve.json", "png": "curve.png"}


def volume_curve(generator, config: AttackConfig, target, images, labels, rhos: Sequence[float], *,
                 samples: int = 1, seed: int = 0, temperature: float = 1.0, batch_size: int = 8,
                 progress: Callable[[int], None] | None = None, scored=None) -> DoseResponse:
    """Per-volume Dice of each organ at each rho, averaged over ``samples`` codes per slice.

    Parameters
    ----------
    images, labels : (N, H, W) the volume's chosen slices (normalised) and their reference
    rhos : sequence of float
    samples, seed, temperature, batch_size :
        As for the evaluation; the codes are drawn from ``seed`` afresh for
        every rho, so each rho scales the same fields.
    progress : callable(int) or None
        Called with the slices done after each batch (``samples * N`` per rho).
    scored : sequence of int or None
        The slices of ``images`` to score (None: all), as
        :func:`~napari_advseg.evaluation.report.evaluate_attack`'s third item.

    Returns
    -------
    DoseResponse
        ``achieved``: the mean rho over the slices and samples at each rho.
    """
    from napari_advseg.evaluation.report import evaluate_attack

    if labels is None:
        raise AdvsegError("a dose-response curve needs reference labels (--labels)")
    if samples < 1:
        raise AdvsegError(f"samples must be at least 1, got {samples}")
    curve = DoseResponse(check_rhos(rhos))
    for rho in curve.rhos:
        report = evaluate_attack(generator, config, target, [(images, labels, scored)], samples=samples, seed=seed,
                                 temperature=temperature, batch_size=batch_size, progress=progress, rho=rho)
        curve.achieved.append(report["rho"])
        curve.folds.append(report["fold_fraction"])
        for organ, row in report["organs"].items():
            curve.clean.setdefault(organ, row["dice_clean"])
            curve.dice.setdefault(organ, []).append(row["dice_adv"])
    return curve


def organ_colour(organ: str, class_names: Sequence[str]):
    """The class's colour of the Labels layers (RGB, :func:`~napari_advseg.organs.class_colours`), or None
    (matplotlib's next) for a name the class map lacks."""
    names = list(class_names)
    return class_colours(names)[names.index(organ)][:3] if organ in names else None


def draw_curve(ax, curve: DoseResponse, class_names: Sequence[str], current: float | None = None,
               foreground: str = "black"):
    """One line per organ (Dice against the rho reached), clean Dice as a dot at rho 0.

    ``current``: a dashed vertical line at that rho (returned, to move it
    later; None without). Each organ's line is labelled with its name.
    """
    for organ, values in curve.dice.items():
        colour = organ_colour(organ, class_names)
        (line,) = ax.plot(curve.achieved, values, marker="o", markersize=3, linewidth=1.2, color=colour,
                          label=organ)
        ax.plot([0.0], [curve.clean[organ]], marker="s", markersize=4, color=line.get_color(), linestyle="none")
    ax.set_xlabel("rho (perceptibility)", color=foreground, fontsize=8)
    ax.set_ylabel("Dice (adversarial)", color=foreground, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0.0)
    if curve.dice:
        ax.legend(fontsize=7, loc="lower left")
    return None if current is None else ax.axvline(current, color=foreground, linestyle="--", linewidth=0.8)


def write_curve(out_dir: str | os.PathLike, curve: DoseResponse, class_names: Sequence[str],
                info: dict[str, Any]) -> dict[str, Path]:
    """``curve.json`` (the curve and ``info``: settings, inputs) and ``curve.png`` in ``out_dir``."""
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in CURVE_FILES.items()}
    write_json(paths["json"], {**curve.to_dict(), **info})
    figure = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = figure.subplots()
    draw_curve(ax, curve, class_names)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.set_title(f"Dice against rho ({info.get('samples', 1)} sample(s) per slice)", fontsize=9)
    atomic_write(paths["png"], lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    return paths
