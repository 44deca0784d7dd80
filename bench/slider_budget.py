"""How far a slider's end is from its field's budget, and what the deformation does at that budget.

For a generator on a volume's slices:

1. the rho (Eq. 7) of each field alone *before* its budget scales it
   (``phi_rho_max``, ``bias_rho_max``), over the budget: at the encoder's
   mean code, at random codes, and with one latent number at +-3 sd (a
   slider's end, the other numbers at the mean);
2. with the deformation alone, each deformation number at +-3 sd: the
   median drop of the slice's mean Dice over organs (points), the folded
   pixels and the largest displacement, at the generator's own strength and
   scaled to each rho of ``--rhos`` (``attack.strength.scale_to_rho``);
3. how much of the decoded deformation sits at its bound ``phi_max``
   (``phi_max * tanh(.)``): the largest ``|tanh|`` of a slice and the pixels
   past 0.9, at the mean code, a random code and one number at +3 sd.

    .venv/bin/python bench/slider_budget.py --ct runs/bench/real/real_ct.nii.gz \\
        --labels runs/bench/real/real_labels.nii.gz --target runs/bench/real/unet.pt \\
        --generator runs/bench/real/f7_defaults/generator.pt --split test
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _mean_dice(view) -> float:
    values = [v["dice_adv"] for v in view.organs.values() if np.isfinite(v["dice_adv"])]
    return 100.0 * float(np.mean(values)) if values else float("nan")


def measure(args: argparse.Namespace) -> str:
    import torch

    from napari_advseg.attack.explore import SliceExplorer
    from napari_advseg.attack.fields import apply_fields, perceptibility_per_slice
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.data.cases import load_case
    from napari_advseg.data.samples import sample_file
    from napari_advseg.models.target_load import load_target

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    target = load_target(args.target or sample_file("target"), "cpu")
    generator, config, _ = load_generator(args.generator or sample_file("generator"), "cpu")
    case = load_case(args.ct or sample_file("ct"), args.labels or sample_file("labels"), target.normalisation)
    images, labels, index = case.part(args.split)
    keep = [i for i in range(len(index)) if labels is not None and (labels[i] > 0).any()]
    lines = [f"generator `{args.generator or sample_file('generator')}` on `{case.volume.path}` ({args.split}, "
             f"{len(keep)} organ slices)", ""]
    start = time.perf_counter()
    d = config.latent_dim
    x = torch.as_tensor(np.asarray(images[keep], np.float32))[:, None]
    n = len(x)
    budgets = {"phi": config.phi_rho_max if config.use_phi else None,
               "bias": config.bias_rho_max if config.use_bias else None}
    lines += ["| field | budget | mean code | random codes (median) | random codes (90th pct) "
              "| one number at +-3 sd (median) |", "| --- | --- | --- | --- | --- | --- |"]
    with torch.no_grad():
        h, stats = generator.encode(x)
        gate = generator.displacement_gate(x)

        def rho_alone(name: str, eps_phi, eps_b) -> torch.Tensor:
            z_phi, z_b = generator.latent_codes(stats, eps_phi, eps_b)
            phi, bias = generator.decode(h, z_phi, z_b, tuple(x.shape[-2:]), gate)
            field = apply_fields(x, phi, None) if name == "phi" else apply_fields(x, None, bias)
            return perceptibility_per_slice(field, x)

        for name, budget in budgets.items():
            if budget is None:
                continue
            mean = rho_alone(name, None, None)
            random = torch.stack([rho_alone(name, torch.randn(n, d), torch.randn(n, d)) for _ in range(8)]).flatten()
            single = []
            for k in range(d):
                for sign in (-1.0, 1.0):
                    eps = torch.zeros(n, d)
                    eps[:, k] = sign * args.span
                    single.append(rho_alone(name, eps if name == "phi" else None, eps if name == "bias" else None))
            single = torch.stack(single).flatten()
            lines.append(f"| {name} | {budget:g} | {float(mean.median()) / budget:.2f} | "
                         f"{float(random.median()) / budget:.2f} | {float(random.quantile(0.9)) / budget:.2f} | "
                         f"{float(single.median()) / budget:.2f} |")
        lines += ["", "(rho of the field alone before its budget, over the budget)", ""]
        if config.use_phi:
            lines += [f"Deformation at its bound phi_max {config.phi_max:g} px (medians over slices):", "",
                      "| code | largest abs tanh | pixels with abs tanh > 0.9 |", "| --- | --- | --- |"]

            def at_bound(eps) -> tuple[float, float]:
                """Median over slices of the largest |tanh| and of the % of pixels past 0.9."""
                z_phi, _ = generator.latent_codes(stats, eps, None)
                t = torch.tanh(generator.phi_pattern(h, z_phi, tuple(x.shape[-2:]))).abs()
                return float(t.flatten(1).amax(1).median()), 100 * float((t > 0.9).float().flatten(1).mean(1).median())

            for label, eps in (("mean code", None), ("random code", torch.randn(n, d))):
                largest, past = at_bound(eps)
                lines.append(f"| {label} | {largest:.3f} | {past:.2f} % |")
            singles = [at_bound(torch.zeros(n, d).index_fill_(1, torch.tensor([k]), args.span)) for k in range(d)]
            largest, past = (statistics.median(r[i] for r in singles) for i in (0, 1))
            lines += [f"| one number at +{args.span:g} sd (median over numbers) | {largest:.3f} | {past:.2f} % |", ""]
    if config.use_phi:
        pick = keep if not args.slices or len(keep) <= args.slices else \
            [keep[int(round(k))] for k in np.linspace(0, len(keep) - 1, args.slices)]
        explorer = SliceExplorer(generator, config, target, case.scale)
        hu = case.volume.hu[index]
        levels = [None] + [float(r) for r in args.rhos.split(",") if r]
        rows = {level: ([], [], []) for level in levels}
        for i in pick:
            explorer.set_slice(images[i], labels[i], hu[i])
            clean = _mean_dice(explorer.render(use_phi=False, use_bias=False))
            for k in range(d):
                for sign in (-1.0, 1.0):
                    eps = np.zeros(d, np.float32)
                    eps[k] = sign * args.span
                    for level in levels:
                        view = explorer.render(eps, None, use_bias=False, rho=level)
                        drops, folds, largest = rows[level]
                        drops.append(clean - _mean_dice(view))
                        folds.append(view.fold_fraction)
                        largest.append(float(np.sqrt((view.displacement ** 2).sum(axis=0)).max()))
        lines += [f"Deformation alone, each of the {d} deformation numbers at +-{args.span:g} sd, {len(pick)} slices "
                  "(medians over numbers, signs and slices):", "",
                  "| rho | mean Dice drop (points) | folded pixels | folded, worst | largest displacement (px) |",
                  "| --- | --- | --- | --- | --- |"]
        for level in levels:
            drops, folds, largest = rows[level]
            lines.append(f"| {'own' if level is None else f'{level:g}'} | {statistics.median(drops):.1f} | "
                         f"{100 * statistics.median(folds):.3f} % | {100 * max(folds):.2f} % | "
                         f"{statistics.median(largest):.1f} |")
    lines += ["", f"{time.perf_counter() - start:.0f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ct"), parser.add_argument("--labels"), parser.add_argument("--target")
    parser.add_argument("--generator")
    parser.add_argument("--split", default="test", choices=["all", "train", "test"])
    parser.add_argument("--slices", type=int, default=6, help="slices for the Dice part, evenly spread (default 6)")
    parser.add_argument("--span", type=float, default=3.0)
    parser.add_argument("--rhos", default="0.05,0.06,0.08", help="rhos to scale the deformation to")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    text = measure(args)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
