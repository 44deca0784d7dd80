"""``advseg evaluate``: the Table-1 report of a generator (Dice per organ, success, rho, folds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_advseg.cli.arguments import SPLITS, add_common, add_data, add_target, organ_names


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="Table-1 report of a generator: Dice per organ, success, rho, folds",
                       description="Print a Markdown table shaped like the paper's Table 1 and optionally write JSON.")
    add_data(p)
    add_target(p)
    p.add_argument("--generator", type=Path, help="generator checkpoint (default: the shipped generator with the "
                                                  "shipped target and data; otherwise none: clean Dice only)")
    p.add_argument("--split", choices=list(SPLITS), default="all", help="slices to test on (default all)")
    p.add_argument("--samples", type=int, default=4, help="adversarial samples per slice (default 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="latent temperature T (default 1)")
    p.add_argument("--organs", type=organ_names, metavar="NAMES",
                   help="the target's classes to report, comma-separated, e.g. liver,spleen; its other classes "
                        "are pooled as 'other' (default: the organs the generator attacks, else the classes the "
                        "reference labels name)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_advseg.cli.common import default_generator, load_case, load_generator, load_target, say
    from napari_advseg.cli.diagnostics import check_clean_dice

    target = load_target(args)
    generator_path = default_generator(args)
    shipped = args.generator is None
    if generator_path is not None:
        args.generator = generator_path
        generator, config, _, path = load_generator(args, target)
    case = load_case(args, target)
    check_clean_dice(target, case)
    if generator_path is None:
        return _run_clean(args, target, case)
    # the first line of the report says which generator attacks (printed once the inputs are known to load)
    if shipped:
        say(f"generator: the shipped sample generator ({generator_path}), trained against the shipped target")
    else:
        say(f"generator: {generator_path}")
    return _run_attack(args, target, generator, config, path, case)


def _run_attack(args, target, generator, config, path: str, case) -> int:
    from napari_advseg.cli.common import say
    from napari_advseg.workflows import evaluate_case, write_report

    report = evaluate_case(generator, config, target, case, part=args.split, samples=args.samples,
                           seed=args.seed, temperature=args.temperature, organs=args.organs)
    report["generator"] = path
    label = {"both": "gamma", "phi": "phi only, gamma", "bias": "b only, gamma"}[config.fields]
    table = write_report([(f"{label} {config.gamma:g}", report)], args.json, args.markdown)
    say(table)
    say(f"Dice in % on {report['slices']} slices ({args.split}) of {case.name}, {args.samples} sample(s) per "
        f"slice; adversarial Dice against the warped reference; * = drop >= 30 %.")
    return 0


def _run_clean(args, target, case) -> int:
    """No generator for this target and data: the target's clean Dice only, written as the report."""
    from napari_advseg.cli.common import say
    from napari_advseg.models.target_meta import window_words
    from napari_advseg.workflows import clean_report, write_outputs

    say("no --generator: clean Dice only (the shipped generator attacks only the shipped target on the shipped "
        "data; train one with advseg train --target ...)")
    report = clean_report(target, case, part=args.split, organs=args.organs)
    rows = ["| organ | clean Dice (%) |", "| --- | --- |"]
    for organ, row in report["organs"].items():
        dice = row["dice_clean"]
        rows.append(f"| {organ} | {'absent' if dice is None else f'{100 * dice:.1f}'} |")
    table = "\n".join(rows)
    write_outputs(report, table, args.json, args.markdown)
    say(table)
    window = report.get("sliding_window")
    run_by = "" if window is None else f", run {window_words(window)} ({window['mode']}, overlap {window['overlap']:g})"
    say(f"Dice in % on {report['slices']} slices ({args.split}) of {case.name}; target normalisation "
        f"{report['normalisation']}{run_by}.")
    return 0
