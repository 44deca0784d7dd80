"""``advseg``: the command line over the core (headless and cluster use).

Every input left out defaults to the shipped sample data. Errors in the
input print one line naming the file and the problem (exit status 2), never a
traceback; set ``ADVSEG_DEBUG=1`` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from napari_advseg import __version__
from napari_advseg.attack.config import FIELD_MODES
from napari_advseg.device import DEVICE_CHOICES
from napari_advseg.errors import AdvsegError
from napari_advseg.io.nifti import DEFAULT_WINDOW, NORMALISATION_MODES

DEFAULT_GAMMAS = "0.5,1.0,1.5,2.0,2.5,3.0"


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _slice_list(text: str) -> list[int]:
    """``"3,10-12"`` -> [3, 10, 11, 12] (axial slice indices of the canonical volume)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                out.extend(range(low, high + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected slice indices like 3,10-12, got {text!r}") from None
    return out


def _window(text: str) -> tuple[float, float]:
    values = _floats(text)
    if len(values) != 2 or values[0] >= values[1]:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in HU with LOW < HIGH, got {text!r}")
    return values[0], values[1]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES),
                   help="where to compute: auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every draw (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_data(p: argparse.ArgumentParser, labels_help: str) -> None:
    p.add_argument("--ct", type=Path, help="CT volume, NIfTI (.nii or .nii.gz) in Hounsfield units "
                                           "(default: the shipped phantom)")
    p.add_argument("--labels", type=Path, help=labels_help)


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", type=Path, help="target segmentation network: a project checkpoint (.pt from "
                                               "train-target) or TorchScript (default: the shipped U-Net)")


def _add_attack_options(p: argparse.ArgumentParser) -> None:
    from napari_advseg.attack.config import AttackConfig

    d = AttackConfig()
    g = p.add_argument_group("attack (method.md)")
    g.add_argument("--gamma", type=float, default=d.gamma, help=f"attack strength, the masked CE aimed for (Eq. 4; default {d.gamma})")
    g.add_argument("--steps", type=_positive_int, default=d.steps, help=f"generator steps (default {d.steps})")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"slices per step (default {d.batch_size})")
    g.add_argument("--fields", choices=list(FIELD_MODES), default=d.fields,
                   help="fields to learn: both, or the ablations phi (b = 0) and bias (phi = 0) (default both)")
    g.add_argument("--organs", help="comma-separated organs to attack, e.g. liver,pancreas (default: all)")
    g.add_argument("--alpha", type=float, default=d.alpha, help=f"smoothness weight of phi (Eq. 2; default {d.alpha})")
    g.add_argument("--beta", type=float, default=d.beta, help=f"smoothness weight of b (Eq. 2; default {d.beta})")
    g.add_argument("--lambda-rho", type=float, default=d.lambda_rho,
                   help=f"weight of the norm term mean((x_adv - x)^2) (default {d.lambda_rho})")
    g.add_argument("--rho-max", type=float, default=d.rho_max,
                   help="hard budget on each slice's rho (Eq. 7): G scales its fields down to it (default: none)")
    g.add_argument("--lambda-atk", type=float, default=d.lambda_atk, help=f"weight of the attack loss (default {d.lambda_atk})")
    g.add_argument("--lambda-kl", type=float, default=d.lambda_kl, help=f"weight of the KL terms (default {d.lambda_kl})")
    g.add_argument("--lambda-real", type=float, default=d.lambda_real,
                   help=f"weight of the critic's realism term (default {d.lambda_real})")
    g.add_argument("--lambda-diversity", type=float, default=d.lambda_diversity,
                   help="weight of the capped mode-seeking term that makes fields change with the latent code "
                        f"(default {d.lambda_diversity:g}, on; 0 turns it off)")
    g.add_argument("--phi-max", type=float, default=d.phi_max, help=f"bound on each displacement component, pixels (default {d.phi_max})")
    g.add_argument("--b-max", type=float, default=d.b_max, help=f"bound on the bias field, normalised units (default {d.b_max})")
    g.add_argument("--bias-mode", choices=["additive", "multiplicative"], default=d.bias_mode,
                   help="T(x)+b (CT) or T(x)*exp(b) (MR-like) (default additive)")
    g.add_argument("--critic", choices=["gp", "clip"], default=d.critic,
                   help="WGAN-GP gradient penalty, or the paper's weight clipping (default gp)")
    g.add_argument("--critic-steps", type=_positive_int, default=d.critic_steps,
                   help=f"critic updates per generator update (default {d.critic_steps})")
    g.add_argument("--lr", type=float, default=d.lr_generator, help=f"generator RMSProp learning rate (default {d.lr_generator})")
    g.add_argument("--lr-critic", type=float, default=d.lr_critic, help=f"critic RMSProp learning rate (default {d.lr_critic})")
    g.add_argument("--attack-reduction", choices=["organs", "pixels"], default=d.attack_reduction,
                   help="organs: mean over organs of |gamma - masked CE of the organ|; pixels: one masked CE over "
                        "all organ pixels, Eq. 5 as written (default organs)")
    g.add_argument("--label-mode", choices=["reference", "predicted"], default=d.label_mode,
                   help="attack against the reference labels, or argmax f(x) (label-free; automatic without --labels)")


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


def _load_target(args: argparse.Namespace):
    """The target of ``--target`` (or the shipped U-Net); checks the data arguments first."""
    if getattr(args, "ct", None) is None and getattr(args, "labels", None) is not None:
        raise AdvsegError("--labels was given without --ct")
    from napari_advseg.data.cases import sample_file
    from napari_advseg.models.target_load import load_target

    return load_target(args.target or sample_file("target"), args.device)


def _load_generator(args: argparse.Namespace):
    from napari_advseg.data.cases import sample_file
    from napari_advseg.attack.trainer import load_generator

    path = args.generator or sample_file("generator")
    generator, config, meta = load_generator(path, args.device)
    return generator, config, meta, str(path)


def _case(args: argparse.Namespace, target):
    from napari_advseg.data.cases import load_case

    return load_case(args.ct, args.labels, target.normalisation, target.class_names)


# ---------------------------------------------------------------------------------------------- commands
def cmd_train_target(args: argparse.Namespace) -> int:
    from napari_advseg.data.organs import ORGAN_CLASSES
    from napari_advseg.data.cases import load_case, phantom_case, sample_data_dir, SAMPLE_FILES
    from napari_advseg.workflows import phantom_training_data, train_target

    normalisation = {"mode": args.normalisation}
    if args.normalisation == "window":
        normalisation["window"] = list(args.window)
    if args.ct is not None:
        if args.labels is None:
            raise AdvsegError("train-target needs --labels with --ct")
        case = load_case(args.ct, args.labels, normalisation)
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
    from napari_advseg.workflows import train_attack

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
        trainer, out = train_attack(config, target, images, labels, args.out, device=args.device,
                                    resume=args.resume, checkpoint_every=args.checkpoint_every,
                                    progress=lambda m: bar.step(ce=m["attack_ce"], rho=m["rho"]))
    except KeyboardInterrupt:
        bar.close()
        _say(f"interrupted: checkpoint saved to {Path(args.out) / 'generator.pt'}")
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
    from napari_advseg.workflows import evaluate_case, sweep_rows, train_attack, write_report

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
        trainer, _ = train_attack(config, target, images, labels, run_dir, device=args.device,
                                  progress=lambda m: bar.step(ce=m["attack_ce"], rho=m["rho"]))
        train_seconds = time.perf_counter() - start
        bar.close()
        generator = trainer.generator.eval()
        report = evaluate_case(generator, config, target, case, part=args.test_split, samples=args.samples,
                               seed=args.seed)
        report["generator"] = str(run_dir / "generator.pt")
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
                            progress=lambda n: bar.step(n))
    bar.close()
    for organ, row in sidecar["organs"].items():
        _say(f"{organ}: Dice {100 * row['dice_clean']:.1f} -> {100 * row['dice_adv']:.1f} "
             f"({-100 * row['drop']:+.0f} %)")
    _say(f"rho {sidecar['rho']:.3f}, folds {100 * sidecar['fold_fraction']:.2f} %")
    _say(f"wrote {len(sidecar['files'])} files to {args.out}")
    return 0


def cmd_make_sample(args: argparse.Namespace) -> int:
    from napari_advseg.workflows import make_sample_data

    bars: dict[str, _Bar] = {}
    totals = {"unet": args.unet_steps, "generator": args.steps}

    def progress(stage: str, record: dict) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = _Bar(totals[stage], f"train {stage}", args.quiet)
        bars[stage].step()

    summary = make_sample_data(args.out, unet_steps=args.unet_steps, attack_steps=args.steps,
                               device=args.device, seed=args.seed, reuse_target=args.reuse_target,
                               progress=progress)
    for bar in bars.values():
        bar.close()
    _say(summary["table"])
    _say(f"U-Net training {summary['unet']['train_seconds']:.0f} s, generator training "
         f"{summary['attack_train_seconds']:.0f} s")
    return 0


# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advseg", description=(
        "Attack a segmentation CNN with a learnt generator of smooth deformations and bias fields "
        "(Chen et al., MICCAI-W 2019). Inputs left out default to the shipped sample data."))
    parser.add_argument("--version", action="version", version=f"advseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    labels_ref = "reference labels, NIfTI on the CT's grid (default: the sample's labels when --ct is left out)"

    p = sub.add_parser("train-target", help="train the target 2D U-Net and print its test Dice per organ",
                       description="Train the standard 2D U-Net on patches and test it on whole slices. With "
                                   "--ct/--labels: slices z %% 3 != 2 train, z %% 3 == 2 test. Without: phantom "
                                   "subjects 1-8 train, the sample phantom tests.")
    _add_data(p, "reference labels, NIfTI on the CT's grid (needed with --ct)")
    p.add_argument("--out", type=Path, default=Path("unet.pt"), help="checkpoint to write (default unet.pt)")
    p.add_argument("--steps", type=_positive_int, default=1500, help="training steps (default 1500)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per step (default 16)")
    p.add_argument("--patch-size", type=int, default=96, help="patch side in pixels (default 96)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--base-channels", type=int, default=16, help="channels of the first U-Net level (default 16)")
    p.add_argument("--normalisation", choices=list(NORMALISATION_MODES), default="zscore",
                   help="input normalisation: per-volume z-score, or an HU window mapped to [-1, 1] (default zscore)")
    p.add_argument("--window", type=_window, default=DEFAULT_WINDOW,
                   help="HU window LOW,HIGH, mapped to [-1, 1] (default %g,%g)" % DEFAULT_WINDOW)
    _add_common(p)
    p.set_defaults(func=cmd_train_target)

    p = sub.add_parser("train", help="train (or resume) a generator against a target",
                       description="Train the attack generator. Without --labels the attack is label-free "
                                   "(argmax of the target on the clean slice is the reference).")
    _add_data(p, labels_ref)
    _add_target(p)
    _add_attack_options(p)
    p.add_argument("--split", choices=["all", "train", "test"], default="all",
                   help="slices to train on: all, train (z %% 3 != 2) or test (z %% 3 == 2) (default all)")
    p.add_argument("--out", type=Path, default=Path("runs/attack"),
                   help="folder for generator.pt (default runs/attack)")
    p.add_argument("--resume", type=Path, help="checkpoint to continue from, exactly (its config is used; "
                                               "--steps sets the new total)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="Table-1 report of a generator: Dice per organ, success, rho, folds",
                       description="Print a Markdown table shaped like the paper's Table 1 and optionally write JSON.")
    _add_data(p, labels_ref)
    _add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator)")
    p.add_argument("--split", choices=["all", "train", "test"], default="all", help="slices to test on (default all)")
    p.add_argument("--samples", type=int, default=4, help="adversarial samples per slice (default 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="latent temperature T (default 1)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="train and evaluate one generator per gamma plus the phi-only and b-only ablations",
                       description="Table 1: one row per gamma, then the ablations phi only and b only.")
    _add_data(p, labels_ref)
    _add_target(p)
    _add_attack_options(p)
    p.add_argument("--gammas", type=_floats, default=_floats(DEFAULT_GAMMAS), help=f"gammas (default {DEFAULT_GAMMAS})")
    p.add_argument("--ablation-gamma", type=float, default=2.0, help="gamma of the ablation rows (default 2.0)")
    p.add_argument("--no-ablations", action="store_true", help="skip the phi-only and b-only rows")
    p.add_argument("--train-split", choices=["all", "train", "test"], default="all", help="slices to train on (default all)")
    p.add_argument("--test-split", choices=["all", "train", "test"], default="all", help="slices to test on (default all)")
    p.add_argument("--samples", type=int, default=2, help="adversarial samples per slice (default 2)")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"), help="folder for the runs and table (default runs/sweep)")
    _add_common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("sample", help="apply a generator to a whole volume and write NIfTI files",
                       description="Writes the adversarial image (HU), its segmentation, the clean segmentation, "
                                   "the warped reference (with labels), the displacement (2 components, pixels), "
                                   "the bias field (HU) and a JSON sidecar, in the input's geometry.")
    _add_data(p, labels_ref)
    _add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--temperature", type=float, default=1.0, help="latent temperature T (default 1)")
    p.add_argument("--eps-phi", type=_floats, help="fixed latent deviates for z_phi, comma-separated (default: random)")
    p.add_argument("--eps-b", type=_floats, help="fixed latent deviates for z_b, comma-separated (default: random)")
    p.add_argument("--slices", type=_slice_list, help="axial slices to attack, e.g. 10-20,25 (0 = most inferior; "
                                                     "default: all); the others are written unchanged")
    p.add_argument("--batch-size", type=int, default=4, help="slices per forward pass (default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    _add_common(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("make-sample", help="rebuild the shipped sample data from seeds",
                       description="Phantom subject 0 as the test volume, a U-Net trained on subjects 1-8, a "
                                   "generator trained against it on subjects 1-24, and sample.json with their "
                                   "figures on subject 0.")
    p.add_argument("--out", type=Path, default=None, help="folder (default: the package's sample_data/)")
    p.add_argument("--unet-steps", type=_positive_int, default=1500, help="U-Net training steps (default 1500)")
    p.add_argument("--steps", type=_positive_int, default=600, help="generator training steps (default 600)")
    p.add_argument("--reuse-target", action="store_true",
                   help="keep an existing unet.pt in the folder instead of training it again")
    _add_common(p)
    p.set_defaults(func=cmd_make_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        return int(args.func(args) or 0)
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
    sys.exit(main())
