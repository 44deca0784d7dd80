"""Time from a latent-slider change to updated layer data, at 128, 256 and 512 pixels.

Measures what the Explore tab does per slider change (the slice is encoded
once beforehand): decoding both fields from the new codes, warping and the
bias (``fields``), and the same plus the U-Net's segmentation of the
adversarial slice and the per-organ Dice table (``with segmentation``).
Uses the shipped U-Net and generator when present (timings do not depend
on the weights). Prints medians over repeated changes.

    .venv/bin/python bench/explore_speed.py [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir
from napari_advseg.attack.explore import SliceExplorer, displacement_vectors
from napari_advseg.data.phantom import make_phantom
from napari_advseg.models.target_load import load_target
from napari_advseg.attack.checkpoint import load_generator
from napari_advseg.data.intensity import fit_intensity_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="128,256,512")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    target = load_target(sample_data_dir() / SAMPLE_FILES["target"], "cpu")
    generator, config, _ = load_generator(sample_data_dir() / SAMPLE_FILES["generator"], "cpu")
    explorer = SliceExplorer(generator, config, target)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} slider changes per cell")
    print("| size | fields + adversarial image (median ms) | with U-Net segmentation + Dice (median ms) |")
    print("| --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        phantom = make_phantom(0, (12, size, size))
        z = int(np.argmax((phantom.labels > 0).sum(axis=(1, 2))))
        scale = fit_intensity_scale(phantom.hu.astype(np.float32))
        explorer.set_slice(scale.apply(phantom.hu[z].astype(np.float32)), phantom.labels[z])
        timings = {False: [], True: []}
        for segment in (False, True):
            for i in range(args.repeats + 2):
                eps_phi = rng.normal(size=config.latent_dim)
                eps_b = rng.normal(size=config.latent_dim)
                start = time.perf_counter()
                view = explorer.render(eps_phi, eps_b, segment=segment)
                scale.to_hu(view.adversarial)
                displacement_vectors(view.displacement)
                if i >= 2:  # first calls warm up allocators
                    timings[segment].append(1000 * (time.perf_counter() - start))
        print(f"| {size}x{size} | {statistics.median(timings[False]):.1f} | {statistics.median(timings[True]):.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
