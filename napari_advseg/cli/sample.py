"""``advseg sample``: apply a generator to a whole volume and write NIfTI files."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import add_common, add_data, add_target, floats, non_negative_float, slice_list
from napari_advseg.errors import AdvsegError


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="apply a generator to a whole volume and write NIfTI files",
                       description="Writes the adversarial image (HU), its segmentation, the clean segmentation, "
                                   "the warped reference (with labels), the displacement (2 components, pixels), "
                                   "the bias field (HU) and a JSON sidecar, in the input's geometry.")
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
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_advseg.attack.realism import SHORT_WAVELENGTH_PX
    from napari_advseg.attack.sampling import sample_volume
    from napari_advseg.cli.common import ProgressBar, load_attack, say
    from napari_advseg.cli.diagnostics import check_clean_dice
    from napari_advseg.evaluation.report import realism_cells

    target, generator, config, path, case = load_attack(args)
    check_clean_dice(target, case)
    for name in ("eps_phi", "eps_b"):
        values = getattr(args, name)
        if values is not None and len(values) != config.latent_dim:
            raise AdvsegError(f"--{name.replace('_', '-')} needs {config.latent_dim} numbers, got {len(values)}")
    bar = ProgressBar(len(args.slices) if args.slices else case.volume.n_slices, "sample", args.quiet)
    sidecar = sample_volume(generator, config, target, case, args.out, seed=args.seed,
                            temperature=args.temperature, eps_phi=args.eps_phi, eps_b=args.eps_b,
                            slices=args.slices, batch_size=args.batch_size, overwrite=args.overwrite,
                            generator_path=path, progress=lambda n: bar.step(n), latent=args.latent,
                            z_smooth=args.z_smooth, rho=args.rho)
    bar.close()
    for organ, row in sidecar["organs"].items():
        say(f"{organ}: Dice {100 * row['dice_clean']:.1f} -> {100 * row['dice_adv']:.1f} "
            f"({-100 * row['drop']:+.0f} %)")
    peak, short, jacobian = realism_cells(sidecar)
    say(f"rho {sidecar['rho']:.3f}, folds {100 * sidecar['fold_fraction']:.2f} %; bias: strongest wave {peak}, "
        f"wavelengths < {SHORT_WAVELENGTH_PX:g} px {short}; det J {jacobian}")
    say(f"wrote {len(sidecar['files'])} files to {args.out}")
    return 0
