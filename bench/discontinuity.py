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
        [--seeds 0,1,2] [--z-smooth 1.0] [--threads 1] [--json out.json]
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]

    target = load_target(args.target or sample_file("target"), "cpu")
    generator, config, _ = load_generator(args.generator or sample_file("generator"), "cpu")
    case = load_case(args.ct, args.labels, target.normalisation, target.class_names)
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
    if args.json:
        args.json.write_text(json.dumps({"case": case.name, "shape": list(case.volume.shape), "seeds": seeds,
                                         "threads": args.threads, "ct_ratio": ct_ratio, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
