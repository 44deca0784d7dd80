"""``advseg harden`` and ``advseg robustness``: making a target robust, and measuring it."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import (add_common, add_data, add_target, add_target_overrides, floats,
                                         non_negative_int)
from napari_advseg.defense.config import HARDEN_METHODS, HardenConfig
from napari_advseg.errors import AdvsegError


def add_harden_parser(sub) -> None:
    d = HardenConfig()
    p = sub.add_parser("harden", help="fine-tune a target on generated attacks (or a baseline) to make it robust",
                       description="Fine-tunes a copy of the target on the training slices (z % 3 != 2), each "
                                   "batch a mix of clean and adversarial slices, and writes it as a project "
                                   "checkpoint (with the settings and the generator's SHA-256 in its metrics) "
                                   "plus OUT-stem.resume.pt to continue from. An nnU-Net folder or MONAI bundle "
                                   "target is written as a folder of the same layout with the new weights. Its "
                                   "held-out (z % 3 == 2) clean Dice is printed at the end.")
    add_data(p)
    add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint trained against the target (default: the "
                                                  "shipped generator, with the shipped target only)")
    p.add_argument("--method", choices=list(HARDEN_METHODS), default=d.method,
                   help="adversarial slices from the generator, or a baseline: clean fine-tuning only, random "
                        "smooth fields, per-image optimised fields (default generator)")
    p.add_argument("--steps", type=non_negative_int, default=d.steps, help=f"fine-tuning steps (default {d.steps})")
    p.add_argument("--mix", type=float, default=d.mix, help=f"fraction of each batch made adversarial (default {d.mix:g})")
    p.add_argument("--rounds", type=non_negative_int, default=d.rounds,
                   help="rounds of the adversarial game: before each round after the first the generator is "
                        f"trained --generator-steps more steps against the network being hardened (default {d.rounds})")
    p.add_argument("--generator-steps", type=int, default=d.generator_steps,
                   help=f"generator steps per extra round (default {d.generator_steps})")
    p.add_argument("--rho-range", type=floats, default=[d.rho_low, d.rho_high], metavar="LOW,HIGH",
                   help=f"adversarial slices are scaled to a rho drawn from this range (default {d.rho_low:g},{d.rho_high:g})")
    p.add_argument("--opt-steps", type=non_negative_int, default=d.opt_steps,
                   help=f"gradient steps per batch of the optimised-fields method (default {d.opt_steps})")
    p.add_argument("--batch-size", type=non_negative_int, default=d.batch_size,
                   help=f"slices per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr:g})")
    p.add_argument("--out", type=Path, help="hardened checkpoint (default hardened.pt); for an nnU-Net folder or "
                                            "MONAI bundle target, the folder to write (default hardened)")
    p.add_argument("--resume", action="store_true", help="continue the run whose state is beside --out "
                                                         "(its settings are used; --steps sets the new total)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    add_common(p)
    p.set_defaults(func=run_harden)


def add_robustness_parser(sub) -> None:
    p = sub.add_parser("robustness", help="robustness report of one or more networks under five attacks",
                       description="For each --target, on the held-out slices (z % 3 == 2): clean Dice per "
                                   "organ and Dice under (a) the generator it was hardened with, (b) a new "
                                   "generator trained from scratch against it, (c) random smooth fields, (d) "
                                   "20-step per-image optimised fields and (e) PGD-L2, at each --rhos. Writes "
                                   "robustness.md, .json and .png to --out.")
    add_data(p)
    p.add_argument("--target", type=Path, action="append", help="a network to report (repeat the option; "
                                                                 "default: the shipped U-Net)")
    add_target_overrides(p)
    p.add_argument("--generator", type=Path, help="attack (a) for networks without a hardening record "
                                                  "(default: the shipped generator with the shipped data)")
    p.add_argument("--rhos", type=floats, default=[0.04, 0.08], help="rho values (default 0.04,0.08)")
    p.add_argument("--new-generator-steps", type=non_negative_int, default=200,
                   help="training steps of each new generator (b) (default 200; 0 leaves (b) out)")
    p.add_argument("--samples", type=non_negative_int, default=2, help="attacks per slice (default 2)")
    p.add_argument("--out", type=Path, default=Path("robustness"),
                   help="folder for the report and the new generators (default robustness/)")
    add_common(p)
    p.set_defaults(func=run_robustness)


def run_harden(args: argparse.Namespace) -> int:
    from napari_advseg.cli.common import ProgressBar, default_generator, dice_line, load_case, load_target, say
    from napari_advseg.defense import check_hardenable, harden_target, resume_path

    from napari_advseg.defense.folders import FOLDER_MODELS, folder_output

    target = load_target(args)
    check_hardenable(target)
    if args.out is None:
        args.out = Path("hardened" if isinstance(target.model, FOLDER_MODELS) else "hardened.pt")
    elif isinstance(target.model, FOLDER_MODELS):
        args.out = folder_output(args.out)
    case = load_case(args, target)
    if case.labels is None:
        raise AdvsegError("harden needs reference labels (--labels) to fine-tune on")
    train_images, train_labels, _ = case.part("train")
    test = case.part("test")[:2]
    generator = None
    config = None
    if args.resume:
        if not resume_path(args.out).is_file():
            raise AdvsegError(f"--resume: no run to continue ({resume_path(args.out)} not found)")
    else:
        if len(args.rho_range) != 2:
            raise AdvsegError(f"--rho-range needs two numbers LOW,HIGH, got {args.rho_range}")
        config = HardenConfig(method=args.method, steps=args.steps, mix=args.mix, batch_size=args.batch_size,
                              lr=args.lr, rho_low=args.rho_range[0], rho_high=args.rho_range[1], rounds=args.rounds,
                              generator_steps=args.generator_steps, opt_steps=args.opt_steps, seed=args.seed)
        if config.needs_generator:
            generator = default_generator(args)
            if generator is None:
                raise AdvsegError("--method generator needs --generator: a generator trained against this target "
                                  "(advseg train --target ...)")
    bars: dict[str, ProgressBar] = {}

    def progress(event: dict) -> None:
        kind = "harden" if event["kind"] == "step" else f"generator round {event['round'] + 1}"
        if kind not in bars:
            for bar in bars.values():
                bar.close()
            bars.clear()
            total = event["total"] if event["kind"] == "step" else event["generator_total"]
            done = event["step"] - 1 if event["kind"] == "step" else event["generator_step"] - 1
            bars[kind] = ProgressBar(total, kind, args.quiet, initial=done)
        m = event["metrics"]
        if event["kind"] == "step":
            bars[kind].step(loss=m["loss"], adv_dice=m["dice_adversarial"], clean_dice=m["dice_clean"])
        else:
            bars[kind].step(ce=m["attack_ce"], rho=m["rho"])

    try:
        hardener, out, report = harden_target(config, target, train_images, train_labels, args.out,
                                              generator=generator, device=args.device, resume=args.resume,
                                              steps=args.steps if args.resume else None,
                                              checkpoint_every=args.checkpoint_every, test=test, progress=progress)
    except KeyboardInterrupt as exc:
        from napari_advseg.cli.stop import exit_status

        for bar in bars.values():
            bar.close()
        say(f"interrupted: saved {args.out} and {resume_path(args.out)} (continue with --resume)")
        return exit_status(exc)
    for bar in bars.values():
        bar.close()
    say(f"hardened ({hardener.config.method}, {hardener.step_count} steps, {hardener.seconds:.0f} s of "
        f"fine-tuning): saved {out}")
    if report.get("test_dice"):
        from napari_advseg.evaluation.metrics import network_dice

        say(f"clean Dice on the {len(test[0])} held-out slices (z % 3 == 2):")
        say(f"  original: {dice_line(network_dice(target, *test, target.class_names))}")
        say(f"  hardened: {dice_line(report['test_dice'])}")
    return 0


def run_robustness(args: argparse.Namespace) -> int:
    from napari_advseg.cli.common import ProgressBar, load_case, load_target_file, say
    from napari_advseg.data.samples import sample_file
    from napari_advseg.evaluation.robustness import format_robustness, robustness_report, write_robustness

    if args.ct is None and args.labels is not None:
        raise AdvsegError("--labels was given without --ct")
    paths = args.target or [Path(sample_file("target"))]
    targets = [load_target_file(path, args) for path in paths]
    for other in targets[1:]:
        if tuple(other.class_names) != tuple(targets[0].class_names) or \
                other.normalisation != targets[0].normalisation:
            raise AdvsegError(f"{other.path}: its classes or normalisation differ from {targets[0].path}; "
                              "report networks of the same task together")
    if len({other.volumetric for other in targets}) > 1:
        raise AdvsegError("2D and 3D networks (slab targets) see different slices; report them separately")
    case = load_case(args, targets[0])
    if case.labels is None:
        raise AdvsegError("robustness needs reference labels (--labels) to score Dice")
    from napari_advseg.attack.apply import slices_to_run

    train, test = (slices_to_run(targets[0], case.images, case.labels, case.part(part)[2])
                   for part in ("train", "test"))
    bar: list[ProgressBar] = []

    def progress(message: str, metrics: dict | None) -> None:
        if metrics is None:
            if bar:
                bar.pop().close()
            say(message)
            return
        if not bar:
            bar.append(ProgressBar(args.new_generator_steps, "new generator", args.quiet,
                                   initial=int(metrics["step"]) - 1))
        bar[0].step(ce=metrics["attack_ce"], rho=metrics["rho"])

    attacker = args.generator
    if attacker is None and args.ct is None:  # the shipped data: the shipped generator attacks what was not hardened
        attacker = Path(sample_file("generator"))
    report = robustness_report(targets, train, test, rhos=args.rhos, attacker=attacker,
                               new_generator_steps=args.new_generator_steps, samples=args.samples, seed=args.seed,
                               work_dir=Path(args.out) / "generators", device=args.device, progress=progress)
    if bar:
        bar.pop().close()
    written = write_robustness(args.out, report)
    say(format_robustness(report))
    say(f"wrote {written['markdown']}, {written['json']} and {written['png']}")
    return 0
