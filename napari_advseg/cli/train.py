"""``advseg train`` and ``advseg sweep``: train a generator, or one per Table-1 row and evaluate each."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from napari_advseg.attack.config import GENERATOR_FILE
from napari_advseg.cli.arguments import SPLITS, ExpertOptions, add_common, add_data, add_target, floats
from napari_advseg.cli.options import add_attack_options, config_from
from napari_advseg.errors import AdvsegError

DEFAULT_GAMMAS = "0.5,1.0,1.5,2.0,2.5,3.0"
"""The gammas of ``sweep``'s rows (the paper's Table 1)."""


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) a generator against a target",
                       description="Train the attack generator. Without --labels the attack is label-free "
                                   "(argmax of the target on the clean slice is the reference). The run folder "
                                   "gets generator.pt and config.json (the full attack configuration).")
    expert = ExpertOptions(p)
    add_data(p, expert=expert)
    add_target(p)
    add_attack_options(p, expert)
    p.add_argument("--split", choices=list(SPLITS), default="all",
                   help="slices to train on: all, train (z %% 3 != 2) or test (z %% 3 == 2) (default all); a 3D "
                        "target sees every slice and the others get labels 0")
    p.add_argument("--out", type=Path, default=Path("runs/attack"),
                   help="folder for generator.pt (default runs/attack)")
    p.add_argument("--resume", type=Path, help="checkpoint to continue from, exactly (its config is used; "
                                               "--steps sets the new total)")
    expert.hide(p.add_argument("--checkpoint-every", type=int, default=50,
                               help="steps between checkpoints (default 50)"))
    add_common(p, seed=False)
    p.set_defaults(func=run_train)


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="train and evaluate one generator per gamma plus the phi-only and b-only ablations",
                       description="Table 1: one row per gamma, then the ablations phi only and b only. Each "
                                   "row's folder gets generator.pt and config.json.")
    expert = ExpertOptions(p)
    add_data(p, expert=expert)
    add_target(p)
    add_attack_options(p, expert, skip=("gamma", "fields"))  # each row sets its own
    p.add_argument("--gammas", type=floats, default=floats(DEFAULT_GAMMAS), help=f"gammas (default {DEFAULT_GAMMAS})")
    p.add_argument("--ablation-gamma", type=float, default=2.0, help="gamma of the ablation rows (default 2.0)")
    p.add_argument("--no-ablations", action="store_true", help="skip the phi-only and b-only rows")
    p.add_argument("--train-split", choices=list(SPLITS), default="all", help="slices to train on (default all)")
    p.add_argument("--test-split", choices=list(SPLITS), default="all", help="slices to test on (default all)")
    p.add_argument("--samples", type=int, default=2, help="adversarial samples per slice (default 2)")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"), help="folder for the runs and table (default runs/sweep)")
    add_common(p, seed=False)
    p.set_defaults(func=run_sweep)


def run_train(args: argparse.Namespace) -> int:
    from napari_advseg.attack.training import train_generator
    from napari_advseg.cli.common import ProgressBar, load_case, load_target, say, warn
    from napari_advseg.cli.diagnostics import check_clean_dice
    from napari_advseg.cli.stop import exit_status

    from napari_advseg.attack.apply import slices_to_run

    config = config_from(args)
    target = load_target(args)
    case = load_case(args, target)
    check_clean_dice(target, case)
    images, labels, scored = slices_to_run(target, case.images, case.labels, case.part(args.split)[2])
    if target.volumetric:
        say(volumetric_line(target, len(images), args.split))
    start_step = 0
    if args.resume is not None:
        from napari_advseg.attack.checkpoint import load_checkpoint

        start_step = int(load_checkpoint(args.resume)["step"])
    bar = ProgressBar(max(config.steps - start_step, 0) + start_step, f"train generator (gamma {config.gamma:g})",
                      args.quiet, initial=start_step)
    report: dict = {}
    try:
        trainer, out = train_generator(config, target, images, labels, args.out, device=args.device,
                                       resume=args.resume, steps=config.steps,
                                       checkpoint_every=args.checkpoint_every,
                                       progress=lambda m: bar.step(ce=m["attack_ce"], rho=m["rho"]),
                                       warn=warn, report=report, scored=scored)
    except KeyboardInterrupt as exc:
        bar.close()
        if "saved" in report:
            say(f"stopped at step {report['step']}, saved {report['saved']} (continue with --resume)")
        elif "save_error" in report:
            say(f"stopped at step {report['step']}, NOT saved: {report['save_error']}")
        else:
            say("stopped before training began; nothing saved")
        return exit_status(exc)
    bar.close()
    if trainer.history:
        last = trainer.history[-1]
        say(f"step {trainer.step_count}: attack CE {last['attack_ce']:.3f} (gamma {config.gamma:g}), "
            f"rho {last['rho']:.3f}, critic W {last.get('wasserstein', float('nan')):.3f}")
    say(f"saved {out}")
    return 0


def volumetric_line(target, n_slices: int, split: str) -> str:
    """What training against a 3D target does with the slices (the first line ``train`` and ``sweep`` print)."""
    held = {"all": "", "train": ", the held-out slices (z % 3 == 2) are input only (labels 0, never in the attack "
                                "loss)", "test": ", the slices z % 3 != 2 are input only (labels 0)"}[split]
    depth = min(target.slab_depth, n_slices)
    return (f"3D target: each step attacks one slab of {depth} consecutive slices of the whole volume (one latent "
            f"code per slab, fields smoothed along z){held}")


def run_sweep(args: argparse.Namespace) -> int:
    from napari_advseg.attack.training import train_generator
    from napari_advseg.cli.common import ProgressBar, load_case, load_target, say, warn
    from napari_advseg.cli.diagnostics import check_clean_dice
    from napari_advseg.workflows import evaluate_case, sweep_rows, write_report

    base = config_from(args)
    target = load_target(args)
    case = load_case(args, target)
    if case.labels is None:
        raise AdvsegError("sweep needs reference labels (--labels) to evaluate")
    from napari_advseg.attack.apply import slices_to_run

    check_clean_dice(target, case)
    images, labels, scored = slices_to_run(target, case.images, case.labels, case.part(args.train_split)[2])
    if target.volumetric:
        say(volumetric_line(target, len(images), args.train_split))
    out = Path(args.out)
    rows = []
    plan = sweep_rows(args.gammas, None if args.no_ablations else args.ablation_gamma)
    for label, changes in plan:
        config = base.replace(**changes)
        run_dir = out / label.replace(" ", "_").replace("(", "").replace(")", "")
        bar = ProgressBar(config.steps, label, args.quiet)
        start = time.perf_counter()
        trainer, _ = train_generator(config, target, images, labels, run_dir, device=args.device,
                                     progress=lambda m: bar.step(ce=m["attack_ce"], rho=m["rho"]), warn=warn,
                                     scored=scored)
        train_seconds = time.perf_counter() - start
        bar.close()
        generator = trainer.generator.eval()
        report = evaluate_case(generator, trainer.config, target, case, part=args.test_split, samples=args.samples,
                               seed=config.seed)
        report["generator"] = str(run_dir / GENERATOR_FILE)
        report["train_seconds"] = train_seconds
        report["train_slices"] = int(len(images) if scored is None else len(scored))
        rows.append((label, report))
        write_report(rows, out / "sweep.json", out / "table.md")  # keep what is done if a later row fails
        say(f"{label}: mean drop {100 * report['mean_drop']:.1f} %, rho {report['rho']:.3f}")
    say(write_report(rows, out / "sweep.json", out / "table.md"))
    say(f"wrote {out / 'table.md'} and {out / 'sweep.json'}")
    return 0
