"""The ``advseg`` command line's arguments: the parser, its option groups and argument types.

The commands themselves are in :mod:`napari_advseg.cli`, which passes them to
:func:`build_parser`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path

from napari_advseg import __version__
from napari_advseg.attack.config import FIELD_MODES, LATENT_DECODERS, LATENT_RESPONSES, PHI_INTEGRATIONS
from napari_advseg.device import DEVICE_CHOICES
from napari_advseg.data.intensity import DEFAULT_WINDOW, NORMALISATION_MODES

__all__ = ["DEFAULT_GAMMAS", "build_parser"]

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


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X (three integers), got {text!r}") from None
    if len(shape) != 3 or min(shape) < 4:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X (three integers >= 4), got {text!r}")
    return shape


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES),
                   help="where to compute: auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every draw (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_data(p: argparse.ArgumentParser, labels_help: str) -> None:
    p.add_argument("--ct", type=Path, help="CT volume: a NIfTI file (.nii or .nii.gz) in Hounsfield units, or a "
                                           "DICOM CT series (its folder or one of its files) "
                                           "(default: the shipped phantom)")
    p.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID to read when the --ct folder holds "
                                                   "several series (the error without it lists them)")
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
    g.add_argument("--phi-rho-max", type=float, default=d.phi_rho_max,
                   help=f"budget on the rho of the warped image alone, T(x; phi) (default {d.phi_rho_max:g}; 0: none)")
    g.add_argument("--bias-rho-max", type=float, default=d.bias_rho_max,
                   help=f"budget on the rho of x + b alone (default {d.bias_rho_max:g}; 0: none)")
    g.add_argument("--lambda-jacobian", type=float, default=d.lambda_jacobian,
                   help="weight of the penalty on local compression, mean(relu(floor - det J)^2) "
                        f"(default {d.lambda_jacobian:g}, off)")
    g.add_argument("--jacobian-floor", type=float, default=d.jacobian_floor,
                   help=f"Jacobian determinant below which compression costs (default {d.jacobian_floor:g})")
    g.add_argument("--control-spacing", type=int, default=d.control_spacing,
                   help=f"pixels between the fields' control points, a power of two (default {d.control_spacing})")
    g.add_argument("--phi-control-spacing", type=int, default=d.phi_control_spacing,
                   help="a finer control grid for the displacement alone (default: --control-spacing)")
    g.add_argument("--phi-edge-gate", type=float, default=d.phi_edge_gate,
                   help="multiply the displacement by a weight small on strong edges (body outline, bone, gas) "
                        f"of this strength, so its rho goes to soft tissue (default {d.phi_edge_gate:g}; 0: off)")
    g.add_argument("--latent-decoder", choices=list(LATENT_DECODERS), default=d.latent_decoder,
                   help="basis: each latent number scales a field pattern of its own (sum_k z_k B_k(x)); "
                        f"concat: the code concatenated with the features (default {d.latent_decoder})")
    g.add_argument("--phi-response", choices=list(LATENT_RESPONSES), default=d.phi_response,
                   help="two_sided: each deformation number has one pattern per sign, relu(z) P + relu(-z) N, so a "
                        "random code mixes attacking patterns; linear: z B "
                        f"(default {d.phi_response})")
    g.add_argument("--phi-integration", choices=list(PHI_INTEGRATIONS), default=d.phi_integration,
                   help="svf: the decoded field is a velocity whose exponential (scaling and squaring) is the "
                        "displacement, a map that does not fold; direct: the decoded field is the displacement "
                        f"(default {d.phi_integration})")
    g.add_argument("--lambda-atk", type=float, default=d.lambda_atk, help=f"weight of the attack loss (default {d.lambda_atk})")
    g.add_argument("--lambda-kl", type=float, default=d.lambda_kl, help=f"weight of the KL terms (default {d.lambda_kl})")
    g.add_argument("--lambda-kl-phi", type=float, default=d.lambda_kl_phi,
                   help="weight of z_phi's KL term alone (default: --lambda-kl)")
    g.add_argument("--lambda-real", type=float, default=d.lambda_real,
                   help=f"weight of the critic's realism term (default {d.lambda_real})")
    g.add_argument("--lambda-diversity", type=float, default=d.lambda_diversity,
                   help="weight of the capped mode-seeking term that makes fields change with the latent code "
                        f"(default {d.lambda_diversity:g}, on; 0 turns it off)")
    g.add_argument("--lambda-single", type=float, default=d.lambda_single,
                   help="weight of the single-number attack term: one latent number at +-3 sd, the rest at the "
                        f"mean, must attack too, so every slider moves the outcome (default {d.lambda_single:g}; 0 off)")
    g.add_argument("--single-probe", dest="single_alone", choices=["alone", "with-mean"],
                   default="alone" if d.single_alone else "with-mean",
                   help="with both fields, a single-number probe applies the probed number's field alone, or with "
                        "the other field at its mean code (default %(default)s)")
    g.add_argument("--single-phi-share", type=float, default=d.single_phi_share,
                   help="with both fields, the share of single-number probes that move a deformation number, e.g. "
                        "0.75 to train the deformation sliders harder (default: every number equally likely, 0.5)")
    g.add_argument("--lambda-alone", type=float, default=d.lambda_alone,
                   help="with both fields, weight of the attack loss of each field of the random code alone, so "
                        f"the deformation and the bias each attack by themselves (default {d.lambda_alone:g}; 0 off)")
    g.add_argument("--lambda-excess", type=float, default=d.lambda_excess,
                   help="weight of the penalty on fields decoded past their rho budgets, so that the mean code "
                        f"stays mild and a slider's ends reach the budget (default {d.lambda_excess:g}; 0 off)")
    g.add_argument("--lambda-mean", type=float, default=d.lambda_mean,
                   help="weight of an extra pull of the encoder's latent means to 0, so that the code the sliders "
                        f"start from is a mild change (default {d.lambda_mean:g}; 0 off)")
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


def _add_hardening(sub, commands: Mapping[str, Callable[[argparse.Namespace], int]], labels_ref: str) -> None:
    from napari_advseg.defense.config import HARDEN_METHODS, HardenConfig

    d = HardenConfig()
    p = sub.add_parser("harden", help="fine-tune a target on generated attacks (or a baseline) to make it robust",
                       description="Fine-tunes a copy of the target on the training slices (z % 3 != 2), each "
                                   "batch a mix of clean and adversarial slices, and writes it as a project "
                                   "checkpoint (with the settings and the generator's SHA-256 in its metrics) "
                                   "plus OUT-stem.resume.pt to continue from. Its held-out (z % 3 == 2) clean "
                                   "Dice is printed at the end.")
    _add_data(p, labels_ref)
    _add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint trained against the target (default: the "
                                                  "shipped generator, with the shipped target only)")
    p.add_argument("--method", choices=list(HARDEN_METHODS), default=d.method,
                   help="adversarial slices from the generator, or a baseline: clean fine-tuning only, random "
                        "smooth fields, per-image optimised fields (default generator)")
    p.add_argument("--steps", type=_positive_int, default=d.steps, help=f"fine-tuning steps (default {d.steps})")
    p.add_argument("--mix", type=float, default=d.mix, help=f"fraction of each batch made adversarial (default {d.mix:g})")
    p.add_argument("--rounds", type=_positive_int, default=d.rounds,
                   help="rounds of the adversarial game: before each round after the first the generator is "
                        f"trained --generator-steps more steps against the network being hardened (default {d.rounds})")
    p.add_argument("--generator-steps", type=int, default=d.generator_steps,
                   help=f"generator steps per extra round (default {d.generator_steps})")
    p.add_argument("--rho-range", type=_floats, default=[d.rho_low, d.rho_high], metavar="LOW,HIGH",
                   help=f"adversarial slices are scaled to a rho drawn from this range (default {d.rho_low:g},{d.rho_high:g})")
    p.add_argument("--opt-steps", type=_positive_int, default=d.opt_steps,
                   help=f"gradient steps per batch of the optimised-fields method (default {d.opt_steps})")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size, help=f"slices per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr:g})")
    p.add_argument("--out", type=Path, default=Path("hardened.pt"), help="hardened checkpoint (default hardened.pt)")
    p.add_argument("--resume", action="store_true", help="continue the run whose state is beside --out "
                                                         "(its settings are used; --steps sets the new total)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")
    _add_common(p)
    p.set_defaults(func=commands["harden"])

    p = sub.add_parser("robustness", help="robustness report of one or more networks under five attacks",
                       description="For each --target, on the held-out slices (z % 3 == 2): clean Dice per "
                                   "organ and Dice under (a) the generator it was hardened with, (b) a new "
                                   "generator trained from scratch against it, (c) random smooth fields, (d) "
                                   "20-step per-image optimised fields and (e) PGD-L2, at each --rhos. Writes "
                                   "robustness.md, .json and .png to --out.")
    _add_data(p, labels_ref)
    p.add_argument("--target", type=Path, action="append", help="a network to report (repeat the option; "
                                                                 "default: the shipped U-Net)")
    p.add_argument("--generator", type=Path, help="attack (a) for networks without a hardening record "
                                                  "(default: the shipped generator with the shipped data)")
    p.add_argument("--rhos", type=_floats, default=[0.04, 0.08], help="rho values (default 0.04,0.08)")
    p.add_argument("--new-generator-steps", type=_positive_int, default=200,
                   help="training steps of each new generator (b) (default 200)")
    p.add_argument("--samples", type=_positive_int, default=2, help="attacks per slice (default 2)")
    p.add_argument("--out", type=Path, default=Path("robustness"),
                   help="folder for the report and the new generators (default robustness/)")
    _add_common(p)
    p.set_defaults(func=commands["robustness"])


def build_parser(commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``advseg`` argument parser.

    Parameters
    ----------
    commands : mapping of str to callable
        The function run for each subcommand (``train-target``, ``train``,
        ``evaluate``, ``sweep``, ``sample``, ``curve``, ``make-sample``); the parser
        stores it as ``args.func``. Passed in so this module needs none of the
        commands' imports.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(prog="advseg", description=(
        "Attack a segmentation CNN with a learnt generator of smooth deformations and bias fields "
        "(Chen et al., MICCAI-W 2019). Inputs left out default to the shipped sample data."))
    parser.add_argument("--version", action="version", version=f"advseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    labels_ref = "reference labels, NIfTI on the CT's grid (default: the sample's labels when --ct is left out)"

    p = sub.add_parser("train-target", help="train the target 2D U-Net and print its test Dice per organ",
                       description="Train the standard 2D U-Net on patches and test it on whole slices. With "
                                   "--ct/--labels: slices z % 3 != 2 train, z % 3 == 2 test. Without: phantom "
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
    p.set_defaults(func=commands["train-target"])

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
    p.set_defaults(func=commands["train"])

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
    p.set_defaults(func=commands["evaluate"])

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
    p.set_defaults(func=commands["sweep"])

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
    p.add_argument("--rho", type=float, help="scale each slice's fields to this perceptibility rho (Eq. 7; "
                                             "default: the generator's own strength)")
    p.add_argument("--latent", choices=["volume", "slice"], default="volume",
                   help="random latent deviates: one set for the whole volume (fields change smoothly along z) "
                        "or fresh ones for each slice (default volume)")
    p.add_argument("--z-smooth", type=_non_negative_float, default=0.0, metavar="SIGMA",
                   help="smooth both fields along z with a Gaussian of SIGMA slices before applying them "
                        "(default 0: off)")
    p.add_argument("--batch-size", type=int, default=4, help="slices per forward pass (default 4)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    _add_common(p)
    p.set_defaults(func=commands["sample"])

    p = sub.add_parser("curve", help="dose-response: each organ's Dice against the attack's strength rho",
                       description="Scales every slice's fields to each rho of a grid (the same latent codes at "
                                   "every rho) and scores the per-volume Dice against the warped reference, as "
                                   "evaluate does. Writes curve.json and curve.png to --out.")
    _add_data(p, labels_ref)
    _add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--slices", type=_slice_list, help="axial slices to score, e.g. 10-20,25 (default: --split)")
    which.add_argument("--split", choices=["all", "train", "test"], default="all",
                       help="slices to score: all, train (z %% 3 != 2) or test (z %% 3 == 2) (default all)")
    p.add_argument("--rhos", type=_floats, help="rho values, comma-separated (default 0,0.01,...,0.12)")
    p.add_argument("--samples", type=int, default=2, help="latent codes per slice, averaged (default 2)")
    p.add_argument("--temperature", type=float, default=1.0, help="latent temperature T (default 1)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per forward pass (default 8)")
    p.add_argument("--out", type=Path, required=True, help="output folder for curve.json and curve.png")
    _add_common(p)
    p.set_defaults(func=commands["curve"])

    _add_hardening(sub, commands, labels_ref)

    p = sub.add_parser("make-sample", help="rebuild the shipped sample data from seeds",
                       description="Phantom subject 0 as the test volume, a U-Net trained on subjects 1-8, a "
                                   "generator trained against it on subjects 1-24, and sample.json with their "
                                   "figures on subject 0.")
    p.add_argument("--out", type=Path, default=None, help="folder (default: the package's sample_data/)")
    p.add_argument("--unet-steps", type=_positive_int, default=1500, help="U-Net training steps (default 1500)")
    p.add_argument("--steps", type=_positive_int, default=1000, help="generator training steps (default 1000)")
    p.add_argument("--reuse-target", action="store_true",
                   help="keep an existing unet.pt in the folder instead of training it again")
    p.add_argument("--resume-generator", action="store_true",
                   help="continue the folder's generator.pt (its own settings, its exact state) up to --steps in "
                        "all, instead of training a new one")
    p.add_argument("--shape", type=_shape, default=(48, 128, 128),
                   help="phantom volume size Z,Y,X in voxels (default 48,128,128; smaller for a quick check)")
    p.add_argument("--unet-subjects", type=_positive_int, default=8,
                   help="the U-Net learns from phantom subjects 1..N (default 8)")
    p.add_argument("--attack-subjects", type=_positive_int, default=24,
                   help="the generator learns from phantom subjects 1..N (default 24)")
    _add_common(p)
    p.set_defaults(func=commands["make-sample"])
    return parser
