"""The hardening benchmark: harden the real-CT U-Net on generated attacks and against its baselines, and report.

    .venv/bin/python bench/hardening.py            # real CT (runs/bench/real from bench/attack_benchmark.py)
    .venv/bin/python bench/hardening.py --quick    # a tiny phantom and a few steps: what CI runs

Stages, each skipped when its output exists (so a stopped run picks up where it was):

1. the attacker: ``runs/bench/real/fields/both.pt`` (the both-fields generator of
   ``bench/field_rows.py``), trained with ``advseg train`` if missing;
2. ``advseg harden`` with each method at the same number of fine-tuning steps:
   ``generator`` (the adversarial game, ``--rounds``), ``clean``,
   ``random_fields``, ``optimised_fields``; wall time of each;
3. ``advseg robustness`` of the original and the four hardened networks;
4. ``summary.md``: the hardening goals checked against the report's figures.

Results go to ``--results`` (default ``bench/results/issue10``, ``_quick`` names with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from attack_benchmark import advseg, machine, prepare_real, prepare_tiny, say, write_json, write_text  # noqa: E402

METHODS = ("generator", "clean", "random_fields", "optimised_fields")
SETTINGS = {  # (full, quick)
    "unet_steps": (1000, 30),
    "attacker_steps": (250, 2),
    "harden_steps": (1200, 3),
    "rounds": (3, 2),
    "generator_steps": (100, 1),
    "new_generator_steps": (200, 2),
    "rhos": ("0.04,0.06,0.08", "0.04,0.08"),
    "samples": (2, 1),
}
GOAL_RHO = "0.06"


def setting(args: argparse.Namespace, name: str):
    return SETTINGS[name][1 if args.quick else 0]


def data_files(args: argparse.Namespace) -> dict[str, Path]:
    name = "tiny" if args.quick else "real"
    work = args.work / name
    ct, labels = prepare_tiny(work) if args.quick else prepare_real(work)
    files = {"ct": ct, "labels": labels, "target": work / "unet.pt", "attacker": work / "fields" / "both.pt",
             "work": work / "hardening"}
    common = ["--ct", str(ct), "--labels", str(labels), "--device", args.device, "--quiet"]
    if not files["target"].is_file():
        advseg("train-target", *common, "--out", str(files["target"]), "--steps", str(setting(args, "unet_steps")),
               "--patch-size", "96" if not args.quick else "32")
    if not files["attacker"].is_file():
        advseg("train", *common, "--target", str(files["target"]), "--split", "train", "--gamma", "3",
               "--steps", str(setting(args, "attacker_steps")), "--out", str(files["attacker"].parent / "both"))
        (files["attacker"].parent / "both" / "generator.pt").rename(files["attacker"])
    return files


def harden_all(args: argparse.Namespace, files: dict[str, Path]) -> dict[str, dict]:
    from napari_advseg.defense import resume_path
    from napari_advseg.models.target_load import load_target

    times_path = args.results / f"hardening_times{args.suffix}.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    for method in METHODS:
        out = files["work"] / f"hardened_{method}.pt"
        done = out.is_file() and load_target(out, "cpu").metrics["hardening"]["complete"]
        if done and method in times:
            continue
        argv = ["harden", "--ct", str(files["ct"]), "--labels", str(files["labels"]), "--target",
                str(files["target"]), "--method", method, "--steps", str(setting(args, "harden_steps")),
                "--out", str(out), "--device", args.device, "--quiet"]
        if method == "generator":
            argv += ["--generator", str(files["attacker"]), "--rounds", str(setting(args, "rounds")),
                     "--generator-steps", str(setting(args, "generator_steps"))]
        if resume_path(out).is_file():
            argv.append("--resume")
        start = time.perf_counter()
        advseg(*argv)
        metrics = load_target(out, "cpu").metrics
        times[method] = {"wall_seconds": time.perf_counter() - start,
                         "fine_tuning_seconds": metrics["hardening"]["train_seconds"],
                         "test_dice": metrics.get("test_dice"), "resumed": "--resume" in argv}
        write_json(times_path, times)
    return times


def goals(report: dict, times: dict) -> list[str]:
    """The hardening goals, each with the figures behind it."""
    nets = {net["name"]: net for net in report["networks"]}
    original = nets["unet"]
    hardened = nets["hardened_generator"]
    lines = []
    worst = max((100 * (original["clean"][o] - hardened["clean"][o]), o) for o in original["clean"])
    lines.append(f"- clean Dice within 1 point of the original on every organ: "
                 f"{'met' if worst[0] <= 1.0 else 'MISSED'} (largest loss {worst[0]:.1f} points, {worst[1]})")
    rho = GOAL_RHO if GOAL_RHO in original["attacks"]["new_generator"]["rhos"] else \
        next(iter(original["attacks"]["new_generator"]["rhos"]))
    drop_o = original["attacks"]["new_generator"]["rhos"][rho]["mean_drop"]
    drop_h = hardened["attacks"]["new_generator"]["rhos"][rho]["mean_drop"]
    lines.append(f"- (b) new generator, mean Dice drop at rho {rho}: original {100 * drop_o:.1f} %, hardened "
                 f"{100 * drop_h:.1f} %: {'met' if drop_h <= drop_o / 2 else 'MISSED'} (goal: at most half)")
    for key, label in (("new_generator", "(b)"), ("optimised_fields_20", "(d)")):
        def mean_dice(net):
            rows = net["attacks"][key]["rhos"]
            return 100 * sum(r["mean_dice"] for r in rows.values()) / len(rows)

        ours = mean_dice(hardened)
        others = {name: mean_dice(nets[f"hardened_{name}"]) for name in METHODS[1:]}
        better = all(ours > v for v in others.values())
        lines.append(f"- better than every baseline on {label} (mean Dice over the rhos): "
                     f"{'met' if better else 'MISSED'}: generator {ours:.1f}; "
                     + ", ".join(f"{k} {v:.1f}" for k, v in others.items()))
    wall = times["generator"]["wall_seconds"]
    lines.append(f"- whole hardening run within 15 minutes: {'met' if wall <= 900 else 'MISSED'} "
                 f"({wall / 60:.1f} min wall for the generator method incl. its generator rounds; "
                 + ", ".join(f"{m} {t['wall_seconds'] / 60:.1f} min" for m, t in times.items() if m != 'generator')
                 + ")")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny phantom, a few steps (the CI check)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench", help="work folder (default runs/bench)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "issue10")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    args.suffix = "_quick" if args.quick else ""
    args.results.mkdir(parents=True, exist_ok=True)
    files = data_files(args)
    times = harden_all(args, files)
    out = files["work"] / f"robustness{args.suffix}"
    targets = [files["target"]] + [files["work"] / f"hardened_{m}.pt" for m in METHODS]
    start = time.perf_counter()
    advseg("robustness", "--ct", str(files["ct"]), "--labels", str(files["labels"]),
           *[a for t in targets for a in ("--target", str(t))], "--generator", str(files["attacker"]),
           "--rhos", setting(args, "rhos"), "--new-generator-steps", str(setting(args, "new_generator_steps")),
           "--samples", str(setting(args, "samples")), "--out", str(out), "--device", args.device, "--quiet")
    report_seconds = time.perf_counter() - start
    report = json.loads((out / "robustness.json").read_text())
    for kind in ("json", "md", "png"):
        source = out / f"robustness.{kind}"
        (args.results / f"robustness{args.suffix}.{kind}").write_bytes(source.read_bytes())
    summary = ["# Hardening benchmark", "", f"Machine: {json.dumps(machine())}", "",
               "## Goals", *goals(report, times), "",
               f"Robustness report: {report_seconds / 60:.1f} min (new generators: "
               f"{setting(args, 'new_generator_steps')} steps each).", "",
               "## Report", (out / "robustness.md").read_text()]
    write_text(args.results / f"summary{args.suffix}.md", "\n".join(summary) + "\n")
    say("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
