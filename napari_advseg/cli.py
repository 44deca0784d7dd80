"""``advseg``: the command line over the core (headless and cluster use).

Every input left out defaults to the shipped sample data. Errors in the
input print one line naming the file and the problem (exit status 2), never a
traceback; set ``ADVSEG_DEBUG=1`` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from napari_advseg.attack.config import GENERATOR_FILE
from napari_advseg.cli_args import build_parser
from napari_advseg.errors import AdvsegError


def _config_from(args: argparse.Namespace, target) -> Any:
    from napari_advseg.attack.config import AttackConfig

    organs = None if not args.organs else [o.strip() for o in args.organs.split(",") if o.strip()]
    return AttackConfig(
        gamma=args.gamma, steps=args.steps, batch_size=args.batch_size, fields=args.fields, organs=organs,
        alpha=args.alpha, beta=args.beta, lambda_rho=args.lambda_rho, rho_max=args.rho_max,
        lambda_atk=args.lambda_atk,
        lambda_kl=args.lambda_kl, lambda_real=args.lambda_real, phi_max=args.phi_max, b_max=args.b_max,
        bias_mode=args.bias_mode, critic=args.critic, critic_steps=args.critic_steps, lr_generator=args.lr,
        lr_critic=args.lr_critic, label_mode=args.label_mode, seed=args.seed,
        attack_reduction=args.attack_reduction, lambda_diversity=args.lambda_diversity,
        phi_rho_max=args.phi_rho_max or None, bias_rho_max=args.bias_rho_max or None,
        lambda_jacobian=args.lambda_jacobian,
        jacobian_floor=args.jacobian_floor, control_spacing=args.control_spacing,
        phi_control_spacing=args.phi_control_spacing, latent_decoder=args.latent_decoder,
        phi_response=args.phi_response, phi_integration=args.phi_integration,
        lambda_single=args.lambda_single, phi_edge_gate=args.phi_edge_gate or None,
        lambda_kl_phi=args.lambda_kl_phi, single_alone=args.single_alone == "alone",
        lambda_alone=args.lambda_alone, lambda_excess=args.lambda_excess,
        lambda_mean=args.lambda_mean, single_phi_share=args.single_phi_share,
    )


class _Bar:
    """A tqdm progress bar on stderr that can be switched off (and is only on rank 0)."""

    def __init__(self, total: int, desc: str, quiet: bool, initial: int = 0):
        self.bar = None
        if not quiet and int(os.environ.get("RANK", "0")) == 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)

    def step(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _say(text: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(text, flush=True)


def _check_data_args(args: argparse.Namespace) -> None:
    """``--labels`` and ``--series`` need ``--ct``."""
    if getattr(args, "ct", None) is None:
        if getattr(args, "labels", None) is not None:
            raise AdvsegError("--labels was given without --ct")
        if getattr(args, "series", None) is not None:
            raise AdvsegError("--series was given without --ct (a DICOM folder)")


def _load_target(args: argparse.Namespace):
    """The target of ``--target`` (or the shipped U-Net); checks the data arguments first."""
    _check_data_args(args)
    from napari_advseg.data.samples import sample_file
    from napari_advseg.models.target_load import load_target

    return load_target(args.target or sample_file("target"), args.device)


def _load_generator(args: argparse.Namespace):
    from napari_advseg.data.samples import sample_file
    from napari_advseg.attack.trainer import load_generator

    path = args.generator or sample_file("generator")
    generator, config, meta = load_generator(path, args.device)
    return generator, config, meta, str(path)


def _case(args: argparse.Namespace, target):
    from napari_advseg.data.cases import load_case

    return load_case(args.ct, args.labels, target.normalisation, target.class_names, series=args.series)


# ---------------------------------------------------------------------------------------------- commands
def cmd_train_target(args: argparse.Namespace) -> int:
    from napari_advseg.data.organs import ORGAN_CLASSES
    from napari_advseg.data.cases import load_case, phantom_case
    from napari_advseg.data.samples import sample_data_dir, SAMPLE_FILES
    from napari_advseg.workflows import phantom_training_data, train_target

    _check_data_args(args)
    normalisation = {"mode": args.normalisation}
    if args.normalisation == "window":
        normalisation["window"] = list(args.window)
    if args.ct is not None:
        if args.labels is None:
            raise AdvsegError("train-target needs --labels with --ct")
        case = load_case(args.ct, args.labels, normalisation, series=args.series)
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
    bar = _Bar(args.steps, "train U-Net", args.quiet)
    metrics = train_target(train_images, train_labels, test_images, test_labels, args.out,
                           normalisation=normalisation, class_names=ORGAN_CLASSES, steps=args.steps,
                           batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr,
                           base_channels=args.base_channels, seed=args.seed, device=args.device,
                           progress=lambda r: bar.step(loss=r["loss"]), data_note=note)
    bar.close()
    _say(f"data: {note}")
    _say("| organ | test Dice (%) |\n| --- | --- |")
    for organ, dice in metrics["test_dice"].items():
        _say(f"| {organ} | {'absent' if dice is None else f'{100 * dice:.2f}'} |")
    _say(f"saved {args.out} ({metrics['train_seconds']:.0f} s of training)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from napari_advseg.attack.training import train_generator

    target = _load_target(args)
    case = _case(args, target)
    images, labels, _ = case.part(args.split)
    config = _config_from(args, target)
    start_step = 0
    if args.resume is not None:
        from napari_advseg.attack.trainer import load_checkpoint

        start_step = int(load_checkpoint(args.resume)["step"])
    bar = _Bar(max(config.steps - start_step, 0) + start_step, f"train generator (gamma {config.gamma:g})",
               args.quiet, initial=start_step)
    try:
        trainer, out = train_generator(config, target, images, labels, args.out, device=args.device,
                                       resume=args.resume, steps=config.steps,
                                       checkpoint_every=args.checkpoint_every,
                                       progress=lambda m: bar.step(ce=m["attack_ce"], rho=m["rho"]))
    except KeyboardInterrupt:
        bar.close()
        _say(f"interrupted: checkpoint saved to {Path(args.out) / GENERATOR_FILE}")
        return 130
    bar.close()
    if trainer.history:
        last = trainer.history[-1]
        _say(f"step {trainer.step_count}: attack CE {last['attack_ce']:.3f} (gamma {config.gamma:g}), "
             f"rho {last['rho']:.3f}, critic W {last.get('wasserstein', float('nan')):.3f}")
    _say(f"saved {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_advseg.workflows import evaluate_case, write_report

    target = _load_target(args)
    generator, config, _, path = _load_generator(args)
    case = _case(args, target)
    report = evaluate_case(generator, config, target, case, part=args.split, samples=args.samples,
                           seed=args.seed, temperature=args.temperature)
    report["generator"] = path
    label = {"both": "gamma", "phi": "phi only, gamma", "bias": "b only, gamma"}[config.fields]
    table = write_report([(f"{label} {config.gamma:g}", report)], args.json, args.markdown)
    _say(table)
    _say(f"Dice in % on {report['slices']} slices ({args.split}) of {case.name}, {args.samples} sample(s) per "
         f"slice; adversarial Dice against the warped reference; * = drop >= 30 %.")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from napari_advseg.attack.training import train_generator
    from napari_advseg.workflows import evaluate_case, sweep_rows, write_report

    target = _load_target(args)
    case = _case(args, target)
    if case.labels is None:
        raise AdvsegError("sweep needs reference labels (--labels) to evaluate")
    images, labels, _ = case.part(args.train_split)
    base = _config_from(args, target)
    out = Path(args.out)
    rows = []
    plan = sweep_rows(args.gammas, None if args.no_ablations else args.ablation_gamma)
    for label, changes in plan:
        config = base.replace(**changes)
        run_dir = out / label.replace(" ", "_").replace("(", "").replace(")", "")
        bar = _Bar(config.steps, label, args.quiet)
        start = time.perf_counter()
        trainer, _ = train_generator(config, target, images, labels, run_dir, device=args.device,
                                     progress=lambda m: bar.step(ce=m["attack_ce"], rho=m["rho"]))
        train_seconds = time.perf_counter() - start
        bar.close()
        generator = trainer.generator.eval()
        report = evaluate_case(generator, config, target, case, part=args.test_split, samples=args.samples,
                               seed=args.seed)
        report["generator"] = str(run_dir / GENERATOR_FILE)
        report["train_seconds"] = train_seconds
        report["train_slices"] = int(len(images))
        rows.append((label, report))
        write_report(rows, out / "sweep.json", out / "table.md")  # keep what is done if a later row fails
        _say(f"{label}: mean drop {100 * report['mean_drop']:.1f} %, rho {report['rho']:.3f}")
    _say(write_report(rows, out / "sweep.json", out / "table.md"))
    _say(f"wrote {out / 'table.md'} and {out / 'sweep.json'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from napari_advseg.attack.sampling import sample_volume

    target = _load_target(args)
    generator, config, _, path = _load_generator(args)
    case = _case(args, target)
    for name in ("eps_phi", "eps_b"):
        values = getattr(args, name)
        if values is not None and len(values) != config.latent_dim:
            raise AdvsegError(f"--{name.replace('_', '-')} needs {config.latent_dim} numbers, got {len(values)}")
    bar = _Bar(len(args.slices) if args.slices else case.volume.n_slices, "sample", args.quiet)
    sidecar = sample_volume(generator, config, target, case, args.out, seed=args.seed,
                            temperature=args.temperature, eps_phi=args.eps_phi, eps_b=args.eps_b,
                            slices=args.slices, batch_size=args.batch_size, overwrite=args.overwrite, generator_path=path,
                            progress=lambda n: bar.step(n), latent=args.latent,
                            z_smooth=args.z_smooth, rho=args.rho)
    bar.close()
    for organ, row in sidecar["organs"].items():
        _say(f"{organ}: Dice {100 * row['dice_clean']:.1f} -> {100 * row['dice_adv']:.1f} "
             f"({-100 * row['drop']:+.0f} %)")
    _say(f"rho {sidecar['rho']:.3f}, folds {100 * sidecar['fold_fraction']:.2f} %")
    _say(f"wrote {len(sidecar['files'])} files to {args.out}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_advseg.attack.strength import DEFAULT_RHOS, check_rhos
    from napari_advseg.evaluation.curve import volume_curve, write_curve
    from napari_advseg.io.volumes import volume_source

    target = _load_target(args)
    generator, config, _, path = _load_generator(args)
    case = _case(args, target)
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
    bar = _Bar(len(rhos) * args.samples * len(index), "dose-response", args.quiet)
    curve = volume_curve(generator, config, target, case.images[index], case.labels[index], rhos,
                         samples=args.samples, seed=args.seed, temperature=args.temperature,
                         batch_size=args.batch_size, progress=lambda n: bar.step(n))
    bar.close()
    settings = {"rhos": list(curve.rhos), "samples": args.samples, "seed": args.seed,
                "temperature": args.temperature, "split": None if args.slices else args.split,
                "batch_size": args.batch_size, "device": args.device}
    info = {"settings": settings, "generator": path, "target": target.path, "ct": case.volume.path,
            "source": volume_source(case.volume), "slices": index.tolist(), "samples": args.samples}
    paths = write_curve(args.out, curve, target.class_names, info)
    _say("| rho asked | rho reached | folds | " + " | ".join(curve.dice) + " |")
    _say("|" + " --- |" * (len(curve.dice) + 3))
    for i, rho in enumerate(curve.rhos):
        _say(f"| {rho:.3f} | {curve.achieved[i]:.3f} | {100 * curve.folds[i]:.2f} % | "
             + " | ".join(f"{100 * values[i]:.1f}" for values in curve.dice.values()) + " |")
    _say(f"Dice in % (per volume, {args.samples} sample(s) per slice, {len(index)} slices); clean: "
         + ", ".join(f"{organ} {100 * d:.1f}" for organ, d in curve.clean.items()))
    _say(f"wrote {paths['json']} and {paths['png']}")
    return 0


def cmd_make_sample(args: argparse.Namespace) -> int:
    from napari_advseg.workflows import make_sample_data

    bars: dict[str, _Bar] = {}
    totals = {"unet": args.unet_steps, "generator": args.steps}

    def progress(stage: str, record: dict) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = _Bar(totals[stage], f"train {stage}", args.quiet,
                               initial=max(int(record.get("step", 1)) - 1, 0))  # a resumed generator
        bars[stage].step()

    summary = make_sample_data(args.out, unet_steps=args.unet_steps, attack_steps=args.steps,
                               device=args.device, seed=args.seed, reuse_target=args.reuse_target,
                               resume_generator=args.resume_generator,
                               shape=args.shape, unet_subjects=range(1, args.unet_subjects + 1),
                               attack_subjects=range(1, args.attack_subjects + 1), progress=progress)
    for bar in bars.values():
        bar.close()
    _say(summary["table"])
    _say(f"U-Net training {summary['unet']['train_seconds']:.0f} s, generator training "
         f"{summary['attack_train_seconds']:.0f} s")
    return 0


def _hardening_command(name: str):
    def run(args: argparse.Namespace) -> int:
        from napari_advseg import cli_harden

        return getattr(cli_harden, f"cmd_{name}")(args)

    return run


COMMANDS = {
    "train-target": cmd_train_target,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sweep": cmd_sweep,
    "sample": cmd_sample,
    "curve": cmd_curve,
    "make-sample": cmd_make_sample,
    "harden": _hardening_command("harden"),
    "robustness": _hardening_command("robustness"),
}
"""Subcommand name -> the function that runs it (``args.func``)."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(COMMANDS)
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        try:
            return int(args.func(args) or 0)
        finally:
            from napari_advseg.attack.distributed import shutdown_distributed

            shutdown_distributed()
    except AdvsegError as exc:
        print(f"advseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, unless debugging
        if os.environ.get("ADVSEG_DEBUG"):
            raise
        print(f"advseg: unexpected error: {type(exc).__name__}: {exc} (set ADVSEG_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    status = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A rank of a torchrun job, its work done and its process group left: exit without running C++
        # static destructors, where a distributed helper thread still joinable now and then aborted a
        # finished rank ("terminate called without an active exception", SIGABRT).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
