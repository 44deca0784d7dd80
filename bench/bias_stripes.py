"""Stripes and bands of the bias field: how much more it changes across (x) than down (y) a slice.

The shipped generator's bias field alternates bright and dark along x over
the kidneys and the liver, which reads as vertical stripes on an axial
slice and, with one code per volume (the fields then hardly change along z),
as vertical bands in a coronal reformat. For one volume attacked as "Apply
to whole volume" attacks it (one code per volume, the code at each
``--eps``) this prints, inside the body:

- ``x / y``: mean |db/dx| over mean |db/dy| on the axial slices (1 for a
  field without a direction; stripes along y make it > 1);
- ``x / z (coronal)``: mean |db/dx| per pixel over mean |db/dz| per slice
  in the coronal planes: the vertical bands of a coronal reformat (> 1);
- the same two ratios of the clean CT's HU, for scale;
- the largest |b| (HU) and the mean |b| inside the liver (HU).

    .venv/bin/python bench/bias_stripes.py [--generator G] [--eps 0,3] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from napari_advseg.attack.apply import attack_volume, run_attack_volume
from napari_advseg.attack.checkpoint import load_generator
from napari_advseg.data.cases import load_case
from napari_advseg.data.samples import sample_file
from napari_advseg.models.target_load import load_target
from napari_advseg.widgets._overlays import body_mask


def ratios(field: np.ndarray, body: np.ndarray) -> tuple[float, float]:
    """(x / y, x / z) of a (Z, Y, X) field inside ``body`` (mean absolute neighbour differences)."""
    dx = np.abs(np.diff(field, axis=2))[body[:, :, 1:] & body[:, :, :-1]].mean()
    dy = np.abs(np.diff(field, axis=1))[body[:, 1:] & body[:, :-1]].mean()
    dz = np.abs(np.diff(field, axis=0))[body[1:] & body[:-1]].mean()
    return float(dx / dy), float(dx / dz)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--target", type=Path)
    parser.add_argument("--generator", type=Path)
    parser.add_argument("--eps", default="0,3", help="slider positions (SD, every slider) to measure at")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    target = load_target(args.target or sample_file("target"), "cpu")
    generator, config, _ = load_generator(args.generator or sample_file("generator"), "cpu")
    case = load_case(args.ct, args.labels, target.normalisation, target.class_names)
    hu = case.volume.hu
    body = np.stack([body_mask(s) for s in hu])
    ct_xy, ct_xz = ratios(hu.astype(np.float32), body)
    print(f"{case.name}: {hu.shape}; the clean CT's x / y {ct_xy:.2f}, x / z (coronal) {ct_xz:.2f}")
    print("| sliders (SD) | x / y (axial stripes) | x / z (coronal bands) | largest abs(b) (HU) | mean abs(b) in the liver (HU) |")
    print("| --- | --- | --- | --- | --- |")
    liver = case.labels == 1 if case.labels is not None else body
    for eps in (float(e) for e in args.eps.split(",")):
        code = np.full(config.latent_dim, eps, np.float32)
        result = run_attack_volume(attack_volume(generator, config, target, case, eps_phi=code, eps_b=code,
                                                 latent="volume"))
        bias = result.bias.astype(np.float32)
        xy, xz = ratios(bias, body)
        print(f"| {eps:+.1f} | {xy:.2f} | {xz:.2f} | {np.abs(bias[body]).max():.0f} | "
              f"{np.abs(bias[liver]).mean():.1f} |", flush=True)


if __name__ == "__main__":
    main()
