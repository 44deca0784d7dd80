"""``advseg curve``: dose-response, each organ's Dice against the attack's strength rho."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import SPLITS, add_common, add_data, add_target, floats, slice_list
from napari_advseg.errors import AdvsegError


def add_parser(sub) -> None:
    p = sub.add_parser("curve", help="dose-response: each organ's Dice against the attack's strength rho",
                       description="Scales every slice's fields to each rho of a grid (the same latent codes at "
                                   "every rho) and scores the per-volume Dice against the warped reference, as "
                                   "evaluate does. Writes curve.json and curve.png to --out.")
    add_data(p)
    add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--slices", type=slice_list, help="axial slices to score, e.g. 10-20,25 (default: --split)")
    which.add_argument("--split", choices=list(SPLITS), default="all",
                       help="slices to score: all, train (z %% 3 != 2) or test (z %% 3 == 2) (default all)")
    p.add_argument("--rhos", type=floats, help="rho values, comma-separated (default 0,0.01,...,0.12)")
    p.add_argument("--samples", type=int, default=2, help="latent codes per slice, averaged (default 2)")
    p.add_argument("--temperature", type=float, default=1.0, help="latent temperature T (default 1)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per forward pass (default 8)")
    p.add_argument("--out", type=Path, required=True, help="output folder for curve.json and curve.png")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_advseg.attack.strength import DEFAULT_RHOS, check_rhos
    from napari_advseg.cli.common import ProgressBar, load_attack, say
    from napari_advseg.cli.diagnostics import check_clean_dice
    from napari_advseg.evaluation.curve import volume_curve, write_curve
    from napari_advseg.io.volumes import volume_source

    target, generator, config, path, case = load_attack(args)
    check_clean_dice(target, case)
    if case.labels is None:
        raise AdvsegError("curve needs reference labels (--labels) to score Dice")
    if args.slices:
        index = np.asarray(sorted(set(args.slices)))
        if index.min() < 0 or index.max() >= case.volume.n_slices:
            raise AdvsegError(f"--slices must lie in 0..{case.volume.n_slices - 1}")
    else:
        index = case.part(args.split)[2]
    rhos = check_rhos(DEFAULT_RHOS if args.rhos is None else args.rhos)
    if args.samples < 1:
        raise AdvsegError(f"--samples must be at least 1, got {args.samples}")
    from napari_advseg.attack.apply import slices_to_run

    images, labels, scored = slices_to_run(target, case.images, case.labels, index)
    bar = ProgressBar(len(rhos) * args.samples * len(index), "dose-response", args.quiet)
    curve = volume_curve(generator, config, target, images, labels, rhos, samples=args.samples, seed=args.seed,
                         temperature=args.temperature, batch_size=args.batch_size, progress=lambda n: bar.step(n),
                         scored=scored)
    bar.close()
    settings = {"rhos": list(curve.rhos), "samples": args.samples, "seed": args.seed,
                "temperature": args.temperature, "split": None if args.slices else args.split,
                "batch_size": args.batch_size, "device": args.device}
    info = {"settings": settings, "generator": path, "target": target.path, "ct": case.volume.path,
            "source": volume_source(case.volume), "slices": index.tolist(), "samples": args.samples}
    paths = write_curve(args.out, curve, target.class_names, info)
    say("| rho asked | rho reached | folds | " + " | ".join(curve.dice) + " |")
    say("|" + " --- |" * (len(curve.dice) + 3))
    for i, rho in enumerate(curve.rhos):
        say(f"| {rho:.3f} | {curve.achieved[i]:.3f} | {100 * curve.folds[i]:.2f} % | "
            + " | ".join(f"{100 * values[i]:.1f}" for values in curve.dice.values()) + " |")
    say(f"Dice in % (per volume, {args.samples} sample(s) per slice, {len(index)} slices); clean: "
        + ", ".join(f"{organ} {100 * d:.1f}" for organ, d in curve.clean.items()))
    say(f"wrote {paths['json']} and {paths['png']}")
    return 0
