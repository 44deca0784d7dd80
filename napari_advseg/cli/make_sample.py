"""``advseg make-sample``: rebuild the shipped sample data from seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import add_common, non_negative_int, shape
from napari_advseg.data.sample_recipe import (ATTACK_STEPS, ATTACK_SUBJECTS, PHANTOM_SHAPE, SAMPLE_SEED,
                                         TRAINING_SUBJECTS, UNET_STEPS)


def add_parser(sub) -> None:
    p = sub.add_parser("make-sample", help="rebuild the shipped sample data from seeds",
                       description=f"Phantom subject {SAMPLE_SEED} as the test volume, a U-Net trained on "
                                   f"subjects 1-{len(TRAINING_SUBJECTS)}, a generator trained against it on "
                                   f"subjects 1-{len(ATTACK_SUBJECTS)}, and sample.json with their figures on "
                                   f"subject {SAMPLE_SEED}.")
    z, y, x = PHANTOM_SHAPE
    p.add_argument("--out", type=Path, default=None, help="folder (default: the shipped sample_data/ folder)")
    p.add_argument("--unet-steps", type=non_negative_int, default=UNET_STEPS,
                   help=f"U-Net training steps (default {UNET_STEPS})")
    p.add_argument("--steps", type=non_negative_int, default=ATTACK_STEPS,
                   help=f"generator training steps (default {ATTACK_STEPS})")
    p.add_argument("--reuse-target", action="store_true",
                   help="keep an existing unet.pt in the folder instead of training it again")
    p.add_argument("--resume-generator", action="store_true",
                   help="continue the folder's generator.pt (its own settings, its exact state) up to --steps in "
                        "all, instead of training a new one")
    p.add_argument("--shape", type=shape, default=PHANTOM_SHAPE,
                   help=f"phantom volume size Z,Y,X in voxels (default {z},{y},{x}; smaller for a quick check)")
    p.add_argument("--unet-subjects", type=non_negative_int, default=len(TRAINING_SUBJECTS),
                   help=f"the U-Net learns from phantom subjects 1..N (default {len(TRAINING_SUBJECTS)})")
    p.add_argument("--attack-subjects", type=non_negative_int, default=len(ATTACK_SUBJECTS),
                   help=f"the generator learns from phantom subjects 1..N (default {len(ATTACK_SUBJECTS)})")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_advseg.cli.common import ProgressBar, say
    from napari_advseg.workflows import make_sample_data

    bars: dict[str, ProgressBar] = {}
    totals = {"unet": args.unet_steps, "generator": args.steps}

    def progress(stage: str, record: dict) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = ProgressBar(totals[stage], f"train {stage}", args.quiet,
                                      initial=max(int(record.get("step", 1)) - 1, 0))  # a resumed generator
        bars[stage].step()

    summary = make_sample_data(args.out, unet_steps=args.unet_steps, attack_steps=args.steps,
                               device=args.device, seed=args.seed, reuse_target=args.reuse_target,
                               resume_generator=args.resume_generator,
                               shape=args.shape, unet_subjects=range(1, args.unet_subjects + 1),
                               attack_subjects=range(1, args.attack_subjects + 1), progress=progress)
    for bar in bars.values():
        bar.close()
    say(summary["table"])
    say(f"U-Net training {summary['unet']['train_seconds']:.0f} s, generator training "
        f"{summary['attack_train_seconds']:.0f} s")
    return 0
