"""How far the per-image optimised smooth fields go with more steps: the ceiling the generator is held to.

    .venv/bin/python bench/optimised_budget.py --target monai_unet --steps 20,100 --rhos 0.08,0.10

The issue's goals compare the generator with the 20-step optimised fields
and ask that every segmented organ drop >= 30 % at rho <= 0.10. This
prints, on the held-out slices of the real CT (``bench/foreign_targets.py``'s
split), the optimised fields' mean drop and per-organ drops at each budget
of steps and each rho: whether a longer per-image search reaches the goal
the generator is asked to meet; ``--control-spacing`` and ``--seed`` try a
finer or coarser grid of control points and other random starts. Writes ``bench/results/optimised_budget_<target>_steps<N>[_<organs>][_cap<C>].json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import foreign_targets  # noqa: E402  (the bench's own module)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="monai_unet", choices=foreign_targets.TARGETS + foreign_targets.FOLDER_TARGETS)
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[20, 100])
    p.add_argument("--rhos", type=lambda s: [float(v) for v in s.split(",")], default=[0.08, 0.10])
    p.add_argument("--organs", type=lambda s: s.split(","), default=None,
                   help="attack only these organs (names, comma-separated; every organ is still scored)")
    p.add_argument("--organ-cap", type=float, default=None,
                   help="the loss organ by organ, each organ's CE capped at this (optimised_smooth_fields' "
                        "organ_cap); default: Eq. 5 pooled over the organs' pixels")
    p.add_argument("--organ-softmin", type=float, default=None, metavar="T",
                   help="with --organ-cap: each slice's soft minimum over its organs' capped CEs, temperature T "
                        "(optimised_smooth_fields' organ_temperature), instead of their mean")
    p.add_argument("--control-spacing", type=int, default=8,
                   help="pixels between the fields' control points (optimised_smooth_fields' control_spacing)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random start")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from napari_advseg.evaluation.baselines import evaluate_baseline

    target, case = foreign_targets.load(args, args.target)
    volumes = [foreign_targets.held_out(target, case)]
    organ_ids = None if args.organs is None else [target.class_names.index(name) for name in args.organs]
    entries = []
    for steps in args.steps:
        for rho in args.rhos:
            start = time.perf_counter()
            report = evaluate_baseline("optimised_fields_20", target, volumes, rho, samples=1, seed=args.seed,
                                       organ_ids=organ_ids, options={"steps": steps, "organ_cap": args.organ_cap,
                                                                   "organ_temperature": args.organ_softmin,
                                                                   "control_spacing": args.control_spacing})
            e = foreign_targets.entry(f"optimised fields, {steps} steps", rho, report)
            e["seconds"] = time.perf_counter() - start
            e["attacked"] = args.organs or "all"
            e["organ_cap"] = args.organ_cap
            e["organ_softmin"] = args.organ_softmin
            e["control_spacing"], e["seed"] = args.control_spacing, args.seed
            entries.append(e)
            print(f"[{args.target}] optimised fields, {steps} steps, attacking {args.organs or 'all'}, organ cap "
                  f"{args.organ_cap}{'' if args.organ_softmin is None else f' (soft minimum, T {args.organ_softmin:g})'}, grid {args.control_spacing} px, seed {args.seed}, rho {rho} ({e['rho']:.3f}): mean drop "
                  f"{100 * e['mean_drop']:.1f} %, {e['organs_passed']}/{e['organs_scored']} organs >= 30 %: "
                  + ", ".join(f"{k} {100 * v['drop']:.0f} %" for k, v in e["organs"].items() if v["drop"] is not None)
                  + f"; realism {json.dumps(e['realism'])} ({e['seconds']:.0f} s)", flush=True)
    suffix = "_steps" + "_".join(map(str, args.steps)) + ("_" + "_".join(args.organs) if args.organs else "") + (
        "" if args.organ_cap is None else f"_cap{args.organ_cap:g}") + (
        "" if args.organ_softmin is None else f"_softmin{args.organ_softmin:g}") + (
        "" if args.control_spacing == 8 else f"_grid{args.control_spacing}") + ("" if args.seed == 0 else f"_seed{args.seed}")
    out = args.results / f"optimised_budget_{args.target}{suffix}.json"
    out.write_text(json.dumps({"target": args.target, "entries": entries}, indent=1, default=float) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
