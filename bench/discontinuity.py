"""Inter-slice discontinuity of the fields: latent codes drawn per slice against one code per volume.

Attacks a whole volume with a generator (``attack_volume``, the path of
``advseg sample``) with random latent deviates drawn per slice, once per
volume, and once per volume with the fields smoothed along z
(``--z-smooth``), and prints for each the discontinuity ratios of the bias
and the displacement (``napari_advseg.evaluation.continuity``: mean
through-plane change over mean in-plane change; 0 = constant along z), the
mean rho, the mean Dice drop over the organs and the time taken. Figures
are means over ``--seeds``. The CT's own ratio is printed for scale.
Defaults: the shipped sample CT, labels, U-Net and generator.

    .venv/bin/python bench/discontinuity.py [--ct CT --labels LABELS --target UNET --generator G]
        [--seeds 0,1,2] [--z-smooth 1.0] [--threads 1] [--json out.json] [--picture coronal.png]

``--picture``: a coronal reformat through the organs' centre (superior up) of
the volume attacked with one code per volume and the smoothed fields (seed
0): the CT, the adversarial CT, the bias field (HU) and the displacement's
size (mm), with the segmentations' outlines; jumps between slices would
show as horizontal lines.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_advseg.attack.apply import attack_volume, run_attack_volume
from napari_advseg.attack.checkpoint import load_generator
from napari_advseg.data.cases import load_case
from napari_advseg.data.samples import sample_file
from napari_advseg.evaluation.continuity import field_discontinuity, volume_discontinuity
from napari_advseg.models.folder_targets import fit_target_to_volume
from napari_advseg.models.target_load import load_target


def measure(generator, config, target, case, seeds, latent: str, z_smooth: float) -> dict:
    """Mean figures over ``seeds`` of one way of drawing the codes."""
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        result = run_attack_volume(attack_volume(generator, config, target, case, seed=seed, latent=latent,
                                                 z_smooth=z_smooth))
        seconds = time.perf_counter() - start
        figures = volume_discontinuity(result.displacement, result.bias, result.slices)
        drops = [row["drop"] for row in result.organs.values() if np.isfinite(row["drop"])]
        rows.append({**figures, "rho": result.mean_rho, "mean_drop": float(np.mean(drops)) if drops else float("nan"),
                     "seconds": seconds})
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def draw_coronal(case, result, class_names, path: Path) -> None:
    """Coronal reformat (superior up) through the labelled organs' centre: CT, adversarial CT, bias, |phi|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = case.labels if case.labels is not None else result.clean_segmentation
    y = int(np.round(np.nonzero(labels)[1].mean())) if labels.any() else labels.shape[1] // 2
    dz, dy, dx = case.volume.spacing
    flip = np.s_[::-1]  # canonical z runs inferior -> superior; rows of the picture run top -> bottom

    def plane(volume):
        return np.asarray(volume)[:, y][flip]

    magnitude = np.hypot(result.displacement[..., 0] * dy, result.displacement[..., 1] * dx)
    panels = [("CT", plane(case.volume.hu), "gray", (-200, 300), result.clean_segmentation),
              (f"adversarial CT (rho {result.mean_rho:.3f})", plane(result.adversarial_hu), "gray", (-200, 300),
               result.segmentation),
              ("bias field (HU)", plane(result.bias), "RdBu_r", None, None),
              ("displacement (mm)", plane(magnitude), "magma", None, None)]
    fig, axes = plt.subplots(1, 4, figsize=(14, 4.2), constrained_layout=True)
    for ax, (title, image, cmap, limits, seg) in zip(axes, panels):
        if limits is None:
            top = float(np.abs(image).max()) or 1.0
            limits = (-top, top) if cmap == "RdBu_r" else (0.0, top)
        shown = ax.imshow(image, cmap=cmap, vmin=limits[0], vmax=limits[1], aspect=dz / dx)
        if seg is not None:
            ax.contour(plane(seg), levels=np.arange(0.5, len(class_names)), colors="cyan", linewidths=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if seg is None:
            fig.colorbar(shown, ax=ax, shrink=0.8)
    fig.suptitle(f"{case.name}: coronal plane at row {y} (superior up); outlines: the target's segmentation",
                 fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path, help="CT NIfTI (default: the shipped sample)")
    parser.add_argument("--labels", type=Path, help="reference labels (default: the sample's, without --ct)")
    parser.add_argument("--target", type=Path, help="target checkpoint (default: the shipped U-Net)")
    parser.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds to average over (default 0,1,2)")
    parser.add_argument("--z-smooth", type=float, default=1.0, help="sigma of the smoothed row (default 1.0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--picture", type=Path, help="draw a coronal reformat of the attacked volume here (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]

    target = load_target(args.target or sample_file("target"), "cpu")
    generator, config, _ = load_generator(args.generator or sample_file("generator"), "cpu")
    case = load_case(args.ct, args.labels, target.normalisation, target.class_names)
    fit_target_to_volume(target, case.volume)  # a folder target: the CT's voxel size (a 3D one's slab depth)
    ct_ratio = field_discontinuity(case.volume.hu)["ratio"]
    print(f"{case.name}: {case.volume.shape} voxels, spacing {tuple(round(s, 2) for s in case.volume.spacing)} mm, "
          f"seeds {seeds}, {args.threads} thread(s); the CT's own ratio {ct_ratio:.3f}")

    rows = {"per slice (before)": ("slice", 0.0), "one per volume (after)": ("volume", 0.0),
            f"one per volume, z-smooth {args.z_smooth:g}": ("volume", args.z_smooth)}
    results = {}
    run_attack_volume(attack_volume(generator, config, target, case, slices=[0]))  # warm-up, untimed
    print("| codes | bias ratio | displacement ratio | bias dz / dxy (HU) | rho | mean Dice drop | s per volume |")
    print("|---|---|---|---|---|---|---|")
    for name, (latent, z_smooth) in rows.items():
        r = measure(generator, config, target, case, seeds, latent, z_smooth)
        results[name] = {"latent": latent, "z_smooth": z_smooth, **r}
        print(f"| {name} | {r['bias']:.3f} | {r['displacement']:.3f} | {r['bias_through_plane']:.2f} / "
              f"{r['bias_in_plane']:.2f} | {r['rho']:.4f} | {100 * r['mean_drop']:.1f} % | {r['seconds']:.1f} |",
              flush=True)
    if args.picture:
        result = run_attack_volume(attack_volume(generator, config, target, case, seed=seeds[0], latent="volume",
                                                 z_smooth=args.z_smooth))
        draw_coronal(case, result, target.class_names, args.picture)
        print(f"wrote {args.picture}")
    if args.json:
        args.json.write_text(json.dumps({"case": case.name, "shape": list(case.volume.shape), "seeds": seeds,
                                         "threads": args.threads, "ct_ratio": ct_ratio, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
