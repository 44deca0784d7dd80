"""``advseg train-target``: train the target 2D U-Net and print its test Dice per organ."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import add_common, add_data, non_negative_int, window
from napari_advseg.data.intensity import DEFAULT_WINDOW, NORMALISATION_MODES
from napari_advseg.errors import AdvsegError


def add_parser(sub) -> None:
    p = sub.add_parser("train-target", help="train the target 2D U-Net and print its test Dice per organ",
                       description="Train the standard 2D U-Net on patches and test it on whole slices. With "
                                   "--ct/--labels: slices z % 3 != 2 train, z % 3 == 2 test. Without: phantom "
                                   "subjects 1-8 train, the sample phantom tests. The U-Net's classes are the "
                                   "six organs; labels whose values are named otherwise (--label-names, or a "
                                   ".json sidecar beside them) are mapped to them by name.")
    add_data(p, "reference labels, NIfTI on the CT's grid (needed with --ct)")
    p.add_argument("--out", type=Path, default=Path("unet.pt"), help="checkpoint to write (default unet.pt)")
    p.add_argument("--steps", type=non_negative_int, default=1500, help="training steps (default 1500)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per step (default 16)")
    p.add_argument("--patch-size", type=int, default=96, help="patch side in pixels (default 96)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--base-channels", type=int, default=16, help="channels of the first U-Net level (default 16)")
    p.add_argument("--normalisation", choices=list(NORMALISATION_MODES), default="zscore",
                   help="input normalisation: per-volume z-score, or an HU window mapped to [-1, 1] (default zscore)")
    p.add_argument("--window", type=window, default=DEFAULT_WINDOW,
                   help="HU window LOW,HIGH, mapped to [-1, 1] (default %g,%g)" % DEFAULT_WINDOW)
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_advseg.cli.common import ProgressBar, check_data_args, say, warn
    from napari_advseg.data.cases import load_case, phantom_case
    from napari_advseg.organs import ORGAN_CLASSES
    from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir
    from napari_advseg.workflows import phantom_training_data, train_target

    check_data_args(args)
    normalisation = {"mode": args.normalisation}
    if args.normalisation == "window":
        normalisation["window"] = list(args.window)
    if args.ct is not None:
        if args.labels is None:
            raise AdvsegError("train-target needs --labels with --ct")
        case = load_case(args.ct, args.labels, normalisation, series=args.series, label_names=args.label_names)
        message = case.class_mapping.message()
        if message:
            warn(message)
        train_images, train_labels, _ = case.part("train")
        test_images, test_labels, _ = case.part("test")
        note = f"{args.ct}: slices z % 3 != 2 for training, z % 3 == 2 for testing"
    else:
        train_images, train_labels = phantom_training_data(normalisation)
        sample_ct = sample_data_dir() / SAMPLE_FILES["ct"]
        if sample_ct.is_file():
            test = load_case(sample_ct, sample_data_dir() / SAMPLE_FILES["labels"], normalisation)
        else:
            test = phantom_case(0, normalisation)
        test_images, test_labels = test.images, test.labels
        note = "phantom subjects 1-8 for training, the sample phantom (subject 0) for testing"
    bar = ProgressBar(args.steps, "train U-Net", args.quiet)
    metrics = train_target(train_images, train_labels, test_images, test_labels, args.out,
                           normalisation=normalisation, class_names=ORGAN_CLASSES, steps=args.steps,
                           batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr,
                           base_channels=args.base_channels, seed=args.seed, device=args.device,
                           progress=lambda r: bar.step(loss=r["loss"]), data_note=note)
    bar.close()
    say(f"data: {note}")
    say("| organ | test Dice (%) |\n| --- | --- |")
    for organ, dice in metrics["test_dice"].items():
        say(f"| {organ} | {'absent' if dice is None else f'{100 * dice:.2f}'} |")
    say(f"saved {args.out} ({metrics['train_seconds']:.0f} s of training)")
    return 0
