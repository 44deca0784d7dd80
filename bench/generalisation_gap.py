"""A generator variant's mean Dice drop on the slices it was trained on beside the held-out ones (rho 0.08).

    OMP_NUM_THREADS=1 .venv/bin/python bench/generalisation_gap.py default noslider teacher100_free

Each argument is a tag of ``bench/foreign_targets.py --targets monai_2d --stages generator --tag TAG``
(``runs/bench/foreign/monai_2d/generator_TAG``) or a checkpoint's path (one kept by ``bench/attack_variant.py
--keep``). Two draws per slice, seed 0. Tells an attack that does not
learn (weak on both) from one that learns the training slices and does not carry over (the gap).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import foreign_targets  # noqa: E402  (the bench's own module)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tags", nargs="+", help="tags of foreign_targets.py's generators, or checkpoints (.pt)")
    p.add_argument("--target", default="monai_2d", choices=["monai_2d", "nnunet_2d", "monai_unet", "own_unet"])
    p.add_argument("--rho", type=float, default=0.08)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from napari_advseg.attack.apply import slices_to_run
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.data.slices import split_slices
    from napari_advseg.evaluation.baselines import evaluate_baseline

    work = foreign_targets.ROOT / "runs" / "bench"
    target, case = foreign_targets.load(argparse.Namespace(work=work), args.target)
    for tag in args.tags:
        path = Path(tag) if tag.endswith(".pt") else (
            foreign_targets.generator_dir(argparse.Namespace(work=work, tag=tag), args.target) / "generator.pt")
        generator, config, _ = load_generator(path, "cpu", target=target)
        attack = functools.partial(generator_attack, generator=generator, config=config)
        attack.__name__ = "generator"  # type: ignore[attr-defined]
        drops = {}
        for split in ("train", "test"):
            images, labels, _ = slices_to_run(target, case.images, case.labels,
                                              split_slices(case.volume.n_slices, split))
            report = evaluate_baseline(attack, target, [(images, labels)], args.rho, samples=2, seed=0)
            drops[split] = f"{100 * report['mean_drop']:.1f} %"
        print(f"{tag}: mean drop on the training slices {drops['train']}, on the held-out slices {drops['test']}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
