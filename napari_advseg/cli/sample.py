"""``advseg sample``: apply a generator to a whole volume and write NIfTI and/or DICOM files."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import add_common, add_data, add_target, floats, non_negative_float, slice_list
from napari_advseg.errors import AdvsegError


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="apply a generator to a whole volume and write NIfTI and/or DICOM files",
                       description="Writes the adversarial image (HU), its segmentation, the clean segmentation, "
                                   "the warped reference (with labels), the displacement (2 components, pixels), "
                                   "the bias field (HU) and a JSON sidecar, in the input's geometry; with "
                                   "--format dicom the adversarial CT as a derived DICOM series and both "
                                   "segmentations as DICOM SEG on it.")
    add_data(p)
    add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--temperature", type=float, default=1.0, help="latent temperature T (default 1)")
    p.add_argument("--eps-phi", type=floats, help="fixed latent deviates for z_phi, comma-separated (default: random)")
    p.add_argument("--eps-b", type=floats, help="fixed latent deviates for z_b, comma-separated (default: random)")
    p.add_argument("--slices", type=slice_list, help="axial slices to attack, e.g. 10-20,25 (0 = most inferior; "
                                                    "default: all); the others are written unchanged")
    p.add_argument("--rho", type=float, help="scale each slice's fields to this perceptibility rho (Eq. 7; "
                                             "default: the generator's own strength)")
    p.add_argument("--latent", choices=["volume", "slice"], default="volume",
                   help="random latent deviates: one set for the whole volume (fields change smoothly along z) "
                        "or fresh ones for each slice (default volume)")
    p.add_argument("--z-smooth", type=non_negative_float, default=0.0, metavar="SIGMA",
                   help="smooth both fields along z with a Gaussian of SIGMA slices before applying them "
                        "(default 0: off)")
    p.add_argument("--batch-size", type=int, default=4, help="slices per forward pass (default 4)")
    p.add_argument("--format", choices=["nifti", "dicom", "both"], default="nifti",
                   help="nifti: every output as NIfTI; dicom: the adversarial CT as a derived DICOM CT series "
                        "(new UIDs, ImageType DERIVED) and the clean and adversarial segmentations as DICOM SEG "
                        "on it; both: all of them (default nifti; the JSON sidecar is always written). A DICOM "
                        "input's patient and study are kept and its geometry copied; a NIfTI input gets a fresh "
                        "anonymous study")
    p.add_argument("--drop-patient-tags", action="store_true",
                   help="DICOM output: a fresh anonymous patient, study and frame of reference instead of the "
                        "input's, and no reference to the input images (the pixels are copied as they are)")
    p.add_argument("--name", metavar="RUN", help="start every output file name with RUN_ (letters, digits, . _ -), "
                                                 "so that several runs share a folder without colliding")
    p.add_argument("--count", type=int, default=1, metavar="N",
                   help="write N samples, with seeds SEED .. SEED+N-1, their file names starting with seed<K>_ "
                        "(after --name's); the clean volume is segmented once for all (default 1: one sample, "
                        "no seed in the names)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_advseg.attack.sampling import FORMATS, check_run_name, sample_prefix, sample_volume, sample_volumes
    from napari_advseg.cli.common import ProgressBar, load_attack, say
    from napari_advseg.cli.diagnostics import check_clean_dice

    prefix = f"{check_run_name(args.name)}_" if args.name else ""
    if args.drop_patient_tags and args.format == "nifti":
        raise AdvsegError("--drop-patient-tags concerns DICOM output: add --format dicom (or both)")
    target, generator, config, path, case = load_attack(args)
    check_clean_dice(target, case)
    for name in ("eps_phi", "eps_b"):
        values = getattr(args, name)
        if values is not None and len(values) != config.latent_dim:
            raise AdvsegError(f"--{name.replace('_', '-')} needs {config.latent_dim} numbers, got {len(values)}")
    if args.count < 1:
        raise AdvsegError(f"--count is the number of samples to write, at least 1, got {args.count}")
    if args.count > 1 and args.eps_phi is not None and args.eps_b is not None:
        raise AdvsegError("--count draws a latent code per sample, but --eps-phi and --eps-b fix both codes: "
                          "every sample would be the same")
    per_sample = len(args.slices) if args.slices else case.volume.n_slices
    bar = ProgressBar(per_sample * args.count, "sample", args.quiet)
    options = dict(temperature=args.temperature, eps_phi=args.eps_phi, eps_b=args.eps_b, slices=args.slices,
                   batch_size=args.batch_size, overwrite=args.overwrite, generator_path=path,
                   latent=args.latent, z_smooth=args.z_smooth, rho=args.rho, formats=FORMATS[args.format],
                   drop_patient_tags=args.drop_patient_tags)
    if args.count == 1:
        sidecars = [sample_volume(generator, config, target, case, args.out, seed=args.seed, prefix=prefix,
                                  progress=bar.step, **options)]
    else:
        sidecars = list(sample_volumes(generator, config, target, case, args.out,
                                       seeds=range(args.seed, args.seed + args.count), prefix=prefix,
                                       progress=bar.step, **options))
    bar.close()
    for seed, sidecar in zip(range(args.seed, args.seed + args.count), sidecars):
        if args.count > 1:
            say(f"seed {seed} ({sample_prefix(prefix, seed)}*):")
        report_sample(sidecar)
    say(f"wrote {sum(len(s['files']) for s in sidecars)} files to {args.out}")
    return 0


def report_sample(sidecar: dict) -> None:
    """One sample's figures and DICOM record, as lines on stdout."""
    from napari_advseg.attack.realism import SHORT_WAVELENGTH_PX
    from napari_advseg.attack.strength import MAX_FACTOR, rho_reached
    from napari_advseg.cli.common import say, warn
    from napari_advseg.evaluation.report import realism_cells

    for organ, row in sidecar["organs"].items():
        say(f"{organ}: Dice {100 * row['dice_clean']:.1f} -> {100 * row['dice_adv']:.1f} "
            f"({-100 * row['drop']:+.0f} %)")
    peak, short, jacobian = realism_cells(sidecar)
    say(f"rho {sidecar['rho']:.3f}, folds {100 * sidecar['fold_fraction']:.2f} %; bias: strongest wave {peak}, "
        f"wavelengths < {SHORT_WAVELENGTH_PX:g} px {short}; det J {jacobian}")
    asked = sidecar.get("rho_target")
    if asked and not rho_reached(sidecar["rho"], asked):
        warn(f"rho {sidecar['rho']:.4f} reached of {asked:g} asked: this generator's fields scaled up "
             f"{MAX_FACTOR:g} times do not reach it; every slice keeps the rho closest to it")
    if "dicom" in sidecar:
        series = sidecar["dicom"]["series"]
        study = "in the input's study" if series["study"] == "source" else "in a fresh anonymous study"
        say(f"DICOM: {series['files']} CT files in {series['folder']}/ {study}, SEG "
            f"{sidecar['dicom']['segmentation']['file']} and {sidecar['dicom']['clean_segmentation']['file']}"
            + (f"; HU rounded to whole numbers (up to {series['max_rounding_hu']:.2g} HU)"
               if series["max_rounding_hu"] > 0 else ""))
