"""``advseg evaluate``: the Table-1 report of a generator (Dice per organ, success, rho, folds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import SPLITS, add_common, add_data, add_target


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="Table-1 report of a generator: Dice per organ, success, rho, folds",
                       description="Print a Markdown table shaped like the paper's Table 1 and optionally write JSON.")
    add_data(p)
    add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator)")
    p.add_argument("--split", choices=list(SPLITS), default="all", help="slices to test on (default all)")
    p.add_argument("--samples", type=int, default=4, help="adversarial samples per slice (default 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="latent temperature T (default 1)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_advseg.cli.common import load_attack, say
    from napari_advseg.workflows import evaluate_case, write_report

    target, generator, config, path, case = load_attack(args)
    report = evaluate_case(generator, config, target, case, part=args.split, samples=args.samples,
                           seed=args.seed, temperature=args.temperature)
    report["generator"] = path
    label = {"both": "gamma", "phi": "phi only, gamma", "bias": "b only, gamma"}[config.fields]
    table = write_report([(f"{label} {config.gamma:g}", report)], args.json, args.markdown)
    say(table)
    say(f"Dice in % on {report['slices']} slices ({args.split}) of {case.name}, {args.samples} sample(s) per "
        f"slice; adversarial Dice against the warped reference; * = drop >= 30 %.")
    return 0
