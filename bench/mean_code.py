"""Does the code the sliders start from already attack? The mean code's Dice against the clean Dice.

For each test slice of the real CT (every other organ slice): the mean Dice
over organs of the clean slice, of the adversarial slice at the encoder's
mean code (every slider at 0 sd), and of that code with the bias off or the
deformation off, with the mean |mu| of each latent code. A generator whose
mean code already attacks in full leaves the sliders little to move
(results: docs/results.md).

    .venv/bin/python bench/mean_code.py --generator runs/bench/real/f5_e3/both.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = ROOT / "runs" / "bench" / "real"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", type=Path, required=True)
    parser.add_argument("--ct", type=Path, default=REAL / "real_ct.nii.gz")
    parser.add_argument("--labels", type=Path, default=REAL / "real_labels.nii.gz")
    parser.add_argument("--target", type=Path, default=REAL / "unet.pt")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from napari_advseg.attack.explore import SliceExplorer
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.data.cases import load_case
    from napari_advseg.models.target_load import load_target

    torch.set_num_threads(args.threads)
    target = load_target(args.target, "cpu")
    generator, config, _ = load_generator(args.generator, "cpu")
    case = load_case(args.ct, args.labels, target.normalisation)
    images, labels, index = case.part("test")
    keep = [i for i in range(len(index)) if (labels[i] > 0).any()][::2]
    explorer = SliceExplorer(generator, config, target, case.scale)
    organs = list(target.class_names)[1:]

    def mean_dice(view) -> float:
        return 100.0 * float(np.mean([view.organs[o]["dice_adv"] for o in view.organs]))

    print(f"generator `{args.generator}`, test slices {keep}\n")
    print("| slice | clean | mean code | bias off | deformation off | mean abs mu_phi | mean abs mu_b |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for i in keep:
        explorer.set_slice(images[i], labels[i])
        stats = explorer.latent_mean_and_sigma()
        at_mean = explorer.render()
        clean = 100.0 * float(np.nanmean([at_mean.dice_clean[o] for o in organs]))
        row = (clean, mean_dice(at_mean), mean_dice(explorer.render(use_bias=False)),
               mean_dice(explorer.render(use_phi=False)), float(np.abs(stats["mu_phi"]).mean()),
               float(np.abs(stats["mu_b"]).mean()))
        rows.append(row)
        print(f"| {i} | " + " | ".join(f"{v:.1f}" for v in row[:4]) + f" | {row[4]:.2f} | {row[5]:.2f} |")
    med = np.median(np.array(rows), axis=0)
    print("| median | " + " | ".join(f"{v:.1f}" for v in med[:4]) + f" | {med[4]:.2f} | {med[5]:.2f} |")


if __name__ == "__main__":
    main()
