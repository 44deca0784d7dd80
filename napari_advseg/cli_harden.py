"""``advseg harden`` and ``advseg robustness``: making a target robust, and measuring it."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.errors import AdvsegError


def _default_generator(args: argparse.Namespace) -> Path | None:
    """``--generator``, or the shipped one when the shipped target and data are used."""
    from napari_advseg.data.samples import sample_file

    if args.generator is not None:
        return args.generator
    if args.target is None and args.ct is None:
        return Path(sample_file("generator"))
    return None


def _dice_line(dice: dict) -> str:
    return ", ".join(f"{organ} {100 * d:.1f}" for organ, d in dice.items() if d is not None)


def cmd_harden(args: argparse.Namespace) -> int:
    from napari_advseg.cli import _Bar, _case, _load_target, _say
    from napari_advseg.defense import HardenConfig, harden_target, resume_path

    target = _load_target(args)
    case = _case(args, target)
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
            generator = _default_generator(args)
            if generator is None:
                raise AdvsegError("--method generator needs --generator: a generator trained against this target "
                                  "(advseg train --target ...)")
    bars: dict[str, _Bar] = {}

    def progress(event: dict) -> None:
        kind = "harden" if event["kind"] == "step" else f"generator round {event['round'] + 1}"
        if kind not in bars:
            for bar in bars.values():
                bar.close()
            bars.clear()
            total = event["total"] if event["kind"] == "step" else event["generator_total"]
            done = event["step"] - 1 if event["kind"] == "step" else event["generator_step"] - 1
            bars[kind] = _Bar(total, kind, args.quiet, initial=done)
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
    except KeyboardInterrupt:
        for bar in bars.values():
            bar.close()
        _say(f"interrupted: saved {args.out} and {resume_path(args.out)} (continue with --resume)")
        return 130
    for bar in bars.values():
        bar.close()
    _say(f"hardened ({hardener.config.method}, {hardener.step_count} steps, {hardener.seconds:.0f} s of "
         f"fine-tuning): saved {out}")
    if report.get("test_dice"):
        from napari_advseg.evaluation.metrics import network_dice

        _say(f"clean Dice on the {len(test[0])} held-out slices (z % 3 == 2):")
        _say(f"  original: {_dice_line(network_dice(target, *test, target.class_names))}")
        _say(f"  hardened: {_dice_line(report['test_dice'])}")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from napari_advseg.cli import _Bar, _case, _say
    from napari_advseg.data.samples import sample_file
    from napari_advseg.evaluation.robustness import format_robustness, robustness_report, write_robustness
    from napari_advseg.models.target_load import load_target

    if args.ct is None and args.labels is not None:
        raise AdvsegError("--labels was given without --ct")
    paths = args.target or [Path(sample_file("target"))]
    targets = [load_target(path, args.device) for path in paths]
    for other in targets[1:]:
        if tuple(other.class_names) != tuple(targets[0].class_names) or \
                other.normalisation != targets[0].normalisation:
            raise AdvsegError(f"{other.path}: its classes or normalisation differ from {targets[0].path}; "
                              "report networks of the same task together")
    case = _case(args, targets[0])
    if case.labels is None:
        raise AdvsegError("robustness needs reference labels (--labels) to score Dice")
    train, test = case.part("train")[:2], case.part("test")[:2]
    bar: list[_Bar] = []

    def progress(message: str, metrics: dict | None) -> None:
        if metrics is None:
            if bar:
                bar.pop().close()
            _say(message)
            return
        if not bar:
            bar.append(_Bar(args.new_generator_steps, "new generator", args.quiet, initial=int(metrics["step"]) - 1))
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
    _say(format_robustness(report))
    _say(f"wrote {written['markdown']}, {written['json']} and {written['png']}")
    return 0
