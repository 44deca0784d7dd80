"""Does a trained generator's latent space hold the per-image attack? A few gradient steps on each slice's codes.

    OMP_NUM_THREADS=1 .venv/bin/python bench/latent_search.py --target monai_2d --tags v9_defaults --steps 0,5,20

For each generator (``runs/bench/foreign/TARGET/generator_TAG``) and each step count:
the generator's drop at ``--rho`` on the held-out slices when each slice's latent deviates (eps_phi, eps_b) are
searched by normalised gradient ascent on the target's per-organ capped cross-entropy, the fields scaled onto
the rho every step (0 steps: one forward pass, the generator as ``advseg sample`` uses it). The decoder and
its limits are G's own, so the fields stay in G's family; only the 2 x latent_dim numbers per slice move.
Tells a generator whose patterns hold the attack but whose codes miss it (the search closes the gap to the
20-step optimised fields) from one whose patterns lack it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import foreign_targets  # noqa: E402  (the bench's own module)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="monai_2d")
    p.add_argument("--tags", default="v9_defaults", help="comma-separated generator tags")
    p.add_argument("--steps", default="0,5,20", help="comma-separated search steps")
    p.add_argument("--rho", type=float, default=0.08)
    p.add_argument("--lr", type=float, default=0.5, help="step length in standard deviations of each code")
    p.add_argument("--cap", type=float, default=3.0, help="per-organ CE cap of the search's loss")
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--results", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.evaluation.baselines import evaluate_baseline

    work = foreign_targets.ROOT / "runs" / "bench"
    target, case = foreign_targets.load(argparse.Namespace(work=work), args.target)
    volume = foreign_targets.held_out(target, case)
    rows = []
    for tag in args.tags.split(","):
        path = work / "foreign" / args.target / f"generator_{tag}" / "generator.pt"
        generator, config, _ = load_generator(path, "cpu", target=target)
        for steps in (int(s) for s in args.steps.split(",")):
            attack = functools.partial(generator_attack, generator=generator, config=config,
                                       search_steps=steps, search_lr=args.lr, search_cap=args.cap)
            attack.__name__ = f"generator_search{steps}"  # type: ignore[attr-defined]
            report = evaluate_baseline(attack, target, [volume], args.rho, samples=args.samples, seed=0)
            organs = {k: round(100 * v["drop"], 1) for k, v in report["organs"].items()}
            passed = sum(v >= 30 for v in organs.values())
            row = {"tag": tag, "steps": steps, "mean_drop": round(100 * report["mean_drop"], 1),
                   "organ_drop": organs, "passed": passed, "seconds_per_slice": round(report["seconds_per_slice"], 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.results:
        args.results.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
