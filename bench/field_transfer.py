"""Do per-image attacks carry over to the next slice? The optimised fields of a training slice on its held-out neighbour.

    OMP_NUM_THREADS=1 .venv/bin/python bench/field_transfer.py --target monai_2d --rho 0.08

Each held-out slice z (``z % 3 == 2``) is attacked three ways at ``--rho``: by its own 20-step optimised smooth
fields (the per-image peer of every table), and by the optimised fields made for its neighbours z - 1 and z + 1
(training slices, 3 mm away), applied unchanged to slice z and scaled onto the rho. A generator trained on the
training slices can at most learn what carries over between such neighbours; if the neighbours' fields lose
most of the drop, the per-image attack is specific to each image and no amortised attack of the training slices
reaches it on the held-out ones. Random smooth fields at the same rho are the floor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import foreign_targets  # noqa: E402  (the bench's own module)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="monai_2d")
    p.add_argument("--rho", type=float, default=0.08)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--organ-cap", type=float, default=None)
    p.add_argument("--results", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from napari_advseg.attack.apply import target_input_range
    from napari_advseg.attack.baselines.common import AttackResult
    from napari_advseg.attack.baselines.smooth_fields import optimised_smooth_fields
    from napari_advseg.attack.fields import apply_fields, warp_labels
    from napari_advseg.attack.strength import scale_to_rho
    from napari_advseg.data.slices import split_slices
    from napari_advseg.evaluation.baselines import evaluate_baseline

    work = foreign_targets.ROOT / "runs" / "bench"
    target, case = foreign_targets.load(argparse.Namespace(work=work), args.target)
    n = case.volume.n_slices
    test = split_slices(n, "test")
    limits = target_input_range(target)
    images = torch.as_tensor(np.asarray(case.images), dtype=torch.float32)[:, None]
    labels = torch.as_tensor(np.asarray(case.labels)).long()
    rng = torch.Generator().manual_seed(0)
    neighbours = sorted({int(z + d) for z in test for d in (-1, 1) if 0 <= z + d < n})
    made = {}
    for start in range(0, len(neighbours), 8):
        idx = neighbours[start:start + 8]
        res = optimised_smooth_fields(images[idx], labels[idx], target, args.rho, args.steps, rng,
                                      input_range=limits, organ_cap=args.organ_cap)
        for k, z in enumerate(idx):
            made[z] = (res.displacement[k:k + 1], res.bias[k:k + 1])
    print(f"optimised fields made for {len(made)} neighbouring training slices", flush=True)

    def borrowed(offset: int):
        state = {"cursor": 0}

        def attack(x, y, target, rho, rng, **options):
            m = x.shape[0]
            rows = [int(test[(state["cursor"] + k) % len(test)]) for k in range(m)]
            state["cursor"] += m
            fields = [made.get(z + offset) or made.get(z - offset) for z in rows]
            phi = torch.cat([f[0] for f in fields])
            bias = torch.cat([f[1] for f in fields])
            s = scale_to_rho(x, phi, bias, rho, input_range=limits)
            adv = apply_fields(x, s.displacement, s.bias, input_range=limits)
            return AttackResult(adv, s.displacement, s.bias, warp_labels(y, s.displacement), 0.0)

        attack.__name__ = f"neighbour_{offset:+d}"
        return attack

    volume = foreign_targets.held_out(target, case)
    rows = []
    for name, attack in (("own", "optimised_fields_20" if args.steps == 20 else None),
                         ("neighbour z-1", borrowed(-1)), ("neighbour z+1", borrowed(1)),
                         ("random", "random_fields")):
        if attack is None:
            continue
        options = {"organ_cap": args.organ_cap} if name == "own" and args.organ_cap else None
        report = evaluate_baseline(attack, target, [volume], args.rho, samples=1, seed=0, options=options)
        organs = {k: round(100 * v["drop"], 1) for k, v in report["organs"].items()}
        row = {"attack": name, "mean_drop": round(100 * report["mean_drop"], 1), "organ_drop": organs,
               "passed": sum(v >= 30 for v in organs.values())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.results:
        args.results.write_text(json.dumps({"target": args.target, "rho": args.rho, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
