"""A saved generator's realism figures beside random smooth fields, on the real CT's held-out slices.

    .venv/bin/python bench/generator_realism.py own_unet runs/bench/foreign/own_unet/generator_cap/generator.pt

Arguments: a target of ``bench/foreign_targets.py`` and a generator
checkpoint trained against it. At ``--rho`` (default 0.08) on the 15
held-out slices, through the Table-1 counting loop (``evaluate_baseline``):
the generator (random codes, ``--samples`` each) and random smooth fields on
its control grid; prints the mean drop and the realism figures of each
(``b stripe``, ``b < 32 px``, det J), and the random fields' per-slice
range of the bias figures.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import foreign_targets  # noqa: E402  (the bench's own module)

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("target", choices=foreign_targets.TARGETS + foreign_targets.FOLDER_TARGETS)
    p.add_argument("generator", type=Path)
    p.add_argument("--rho", type=float, default=0.08)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.attack.realism import RealismTally
    from napari_advseg.evaluation.baselines import evaluate_baseline

    target, case = foreign_targets.load(args, args.target)
    generator, config, _ = load_generator(args.generator, "cpu", target=target)
    volumes = [foreign_targets.held_out(target, case)]
    fn = functools.partial(generator_attack, generator=generator, config=config)
    fn.__name__ = "generator"  # type: ignore[attr-defined]
    tally = RealismTally()
    random = functools.partial(foreign_targets_random, tally=tally, spacing=config.control_spacing)
    random.__name__ = "random smooth fields"  # type: ignore[attr-defined]
    for label, attack in (("generator", fn), ("random smooth fields", random)):
        report = evaluate_baseline(attack, target, volumes, args.rho, samples=args.samples, seed=0)
        r = report["realism"]
        print(f"{args.target} {label} at rho {report['rho']:.3f}: mean drop {100 * report['mean_drop']:.1f} %, "
              f"b stripe {100 * r['bias_stripe_share']:.1f} %, b < 32 px {100 * r['bias_short_share']:.1f} %, "
              f"det J {r['jacobian_min']:.2f}..{r['jacobian_max']:.2f}", flush=True)
    print(f"random smooth fields per slice: b stripe {100 * min(tally.stripe_shares):.1f}.."
          f"{100 * max(tally.stripe_shares):.1f} %, b < 32 px {100 * min(tally.short_shares):.1f}.."
          f"{100 * max(tally.short_shares):.1f} % ({len(tally.stripe_shares)} slices x draws); generator "
          f"{args.generator} ({config.to_dict()['lambda_spectrum']:g} lambda_spectrum)")
    return 0


def foreign_targets_random(x, y, target, rho, rng, *, tally, spacing, **options):
    """Random smooth fields on the generator's grid, their per-slice realism kept in ``tally``."""
    from napari_advseg.attack.baselines.registry import ATTACKS

    result = ATTACKS["random_fields"](x, y, target, rho, rng, control_spacing=spacing, **options)
    tally.add(result.displacement, result.bias)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
