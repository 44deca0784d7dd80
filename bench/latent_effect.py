"""Does every latent slider change the outcome? Field and Dice change per latent number, median over test slices.

For each latent number of z_phi and z_b, moved alone from -3 to +3 standard
deviations around the encoder's mean (the others at the mean), on each test
slice: the change of the displacement (px, mean over pixels of
|phi(+3) - phi(-3)|), of the bias (HU, the same for b) and the swing of the
slice's mean Dice over its organs (points, max - min over the slider
positions), with the organ it moves most. Printed as a Markdown table of
medians over the slices, then the sliders' goal (median swing >= 10 points
for every number, the strongest >= 25).

    .venv/bin/python bench/latent_effect.py                       # the shipped sample's generator
    .venv/bin/python bench/latent_effect.py --ct CT --labels L --target unet.pt --generator G --split test
    .venv/bin/python bench/latent_effect.py --quick               # 3 slices, 3 positions (CI)
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_EVERY, GOAL_STRONGEST = 10.0, 25.0


def measure(args: argparse.Namespace) -> dict:
    import torch

    from napari_advseg.attack.explore import SliceExplorer
    from napari_advseg.attack.latent_effect import iter_latent_effects
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.data.cases import load_case
    from napari_advseg.data.samples import sample_file
    from napari_advseg.models.target_load import load_target

    torch.set_num_threads(args.threads)
    target = load_target(args.target or sample_file("target"), "cpu")
    generator, config, _ = load_generator(args.generator or sample_file("generator"), "cpu")
    case = load_case(args.ct, args.labels, target.normalisation)
    images, labels, index = case.part(args.split)
    keep = [i for i in range(len(index)) if labels is not None and (labels[i] > 0).any()]
    if args.slices and len(keep) > args.slices:  # evenly over the organ slices
        keep = [keep[int(round(k))] for k in np.linspace(0, len(keep) - 1, args.slices)]
    explorer = SliceExplorer(generator, config, target, case.scale)
    hu = case.volume.hu[index]
    per_number: dict[tuple[str, int], list] = collections.defaultdict(list)
    start = time.perf_counter()
    for i in keep:
        explorer.set_slice(images[i], labels[i], hu[i])
        for effect in iter_latent_effects(explorer, span=args.span, points=args.points,
                                          bias_scale=float(case.scale.scale)):
            per_number[(effect.field, effect.index)].append(effect)
    seconds = time.perf_counter() - start
    rows = []
    for (name, j), effects in sorted(per_number.items()):
        organs = collections.Counter(e.organ for e in effects if e.organ)
        rows.append({
            "field": name, "index": j,
            "displacement_px": statistics.median(e.displacement_px for e in effects),
            "bias_hu": statistics.median(e.bias_change for e in effects),
            "dice_swing": statistics.median(e.dice_swing for e in effects if math.isfinite(e.dice_swing)),
            "mostly": organs.most_common(1)[0][0] if organs else None,
        })
    return {"generator": str(args.generator or sample_file("generator")), "ct": str(case.volume.path),
            "split": args.split, "slices": [int(index[i]) for i in keep], "span": args.span, "points": args.points,
            "seconds": seconds, "config": {"latent_decoder": config.latent_decoder, "fields": config.fields},
            "rows": rows}


def report(result: dict) -> str:
    lines = [f"generator `{result['generator']}` on `{result['ct']}` ({result['split']}, "
             f"{len(result['slices'])} slices, {result['points']} positions in +-{result['span']:g} sd; "
             f"{result['seconds']:.0f} s; decoder {result['config']['latent_decoder']})", "",
             "| latent | displacement change (px) | bias change (HU) | mean Dice swing (points) | mostly |",
             "| --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        lines.append(f"| z_{row['field']}[{row['index']}] | {row['displacement_px']:.2f} | {row['bias_hu']:.1f} | "
                     f"{row['dice_swing']:.1f} | {row['mostly'] or '-'} |")
    swings = [row["dice_swing"] for row in result["rows"]]
    if swings:
        weakest, strongest = min(swings), max(swings)
        lines += ["", f"median swing per number: weakest {weakest:.1f}, median {statistics.median(swings):.1f}, "
                      f"strongest {strongest:.1f} points; goal (every >= {GOAL_EVERY:g}, strongest >= "
                      f"{GOAL_STRONGEST:g}): {'met' if weakest >= GOAL_EVERY and strongest >= GOAL_STRONGEST else 'missed'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--target", type=Path)
    parser.add_argument("--generator", type=Path)
    parser.add_argument("--split", choices=["all", "train", "test"], default="all",
                        help="slices to measure on (default all: the shipped generator never saw the sample)")
    parser.add_argument("--slices", type=int, default=12, help="at most this many organ slices, evenly spread")
    parser.add_argument("--points", type=int, default=7, help="slider positions per number")
    parser.add_argument("--span", type=float, default=3.0, help="standard deviations either side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="3 slices, 3 positions: a check that it runs (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.slices, args.points = 3, 3
    result = measure(args)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
