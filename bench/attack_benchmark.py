"""The attack benchmark in one harness: Table 1, the peers at matched rho, speed and memory.

    .venv/bin/python bench/attack_benchmark.py            # the full run (hours of CPU)
    .venv/bin/python bench/attack_benchmark.py --quick    # tiny sizes, seconds: what CI runs

Datasets (``--data``):

``real``
    ``../shared/data/abdomen_ct`` (never copied into the repository): the
    axial slices that hold any organ, padded in-plane to 128 x 128 with air
    (-1000 HU) and written to the work folder. Slices are then split by the
    project's rule on that stack: every third slice (``z % 3 == 2``) is a test
    slice, the other two thirds train the target U-Net and the generator.
``tiny``
    A 9 x 64 x 64 phantom, the only dataset of ``--quick``.
``phantom``
    The shipped sample: phantom subject 0 and the shipped U-Net (trained on
    phantom subjects 1-8). The generator trains on the slices ``z % 3 != 2``
    of subject 0 and is tested on ``z % 3 == 2``, the same protocol as the real CT.

Stages (``--stages``, each skipped when its result file already exists, so a
stopped run picks up where it was; ``--force`` redoes them):

``target``  ``advseg train-target`` on the real CT's training slices.
``sweep``   ``advseg sweep``: Table 1 rows gamma 0.5 ... 3.0, phi only, b only.
``low_rho`` generators trained with a larger norm weight or within a hard rho budget (not on the phantom).
``peers``   the generator and the baselines at matched rho, Dice drop against rho, PNG plot.
``speed``   training steps per second, and time from scratch to the sample bar (every organ >= 30 %).
``memory``  peak memory of ``advseg sample`` on a 300 x 512 x 512 volume resampled from the phantom.

Results (JSON and Markdown, and the plot) go to ``--results`` (default
``bench/results``); checkpoints and prepared volumes to ``--work`` (default
``runs/bench``, not part of the repository).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_CT_DIR = ROOT.parent / "shared" / "data" / "abdomen_ct"
ORGANS = ("liver", "spleen", "kidney_left", "kidney_right", "pancreas")
PAPER_ROWS = """| row | pancreas | kidneys | liver | spleen | rho |
| --- | --- | --- | --- | --- | --- |
| U-Net, clean | 80.07 | 94.74 | 94.71 | 94.76 | |
| 30 % decrease | 56.05 | 66.32 | 66.30 | 66.33 | |
| gamma 0.5 | 74.77 | 93.88 | 89.81 | 81.87 | 0.061 |
| gamma 1.0 | 70.66 | 90.06 | 59.51 | 37.12 | 0.060 |
| gamma 1.5 | 64.25 | 66.97 | 26.45 | 35.81 | 0.075 |
| gamma 2.0 | 53.59 | 60.07 | 11.19 | 17.21 | 0.074 |
| gamma 2.5 | 40.57 | 45.47 | 9.16 | 17.60 | 0.084 |
| gamma 3.0 | 31.49 | 43.43 | 5.82 | 26.58 | 0.085 |
| phi only | 70.46 | 82.04 | 75.06 | 70.47 | 0.056 |
| b only | 68.15 | 88.25 | 50.05 | 46.94 | 0.061 |"""
"""Table 1 of Chen et al. 2019 as written out in the project's method notes (their U-Net, 75 subjects)."""

# Full-run and quick-run settings: (full, quick).
SETTINGS = {
    "unet_steps": (1000, 30),
    "unet_patch": (96, 32),
    "attack_steps": (300, 2),
    "gammas": ("0.5,1.0,1.5,2.0,2.5,3.0", "0.5,3.0"),
    "ablation_gamma": (3.0, 3.0),
    "sweep_samples": (4, 1),
    "rhos": ((0.02, 0.04, 0.06, 0.08), (0.02, 0.06)),
    "peer_samples": (4, 1),
    "opt_steps": ((1, 5, 20), (1, 2)),
    "pgd_steps": (20, 2),
    "low_rho_weights": ((80.0, 160.0), (80.0,)),
    "rho_budgets": ((0.05, 0.04), (0.06,)),
    "bar_budget_s": (600.0, 30.0),
    "bar_every": (25, 2),
    "bar_max_steps": (2000, 4),
    "speed_steps": (30, 3),
    "memory_shape": ((300, 512, 512), (6, 64, 64)),
}
GOAL_RHO = 0.05
"""The perceptibility (Eq. 7) at which every organ should reach the bar, on the real CT."""


def setting(args: argparse.Namespace, name: str):
    return SETTINGS[name][1 if args.quick else 0]


def say(text: str) -> None:
    print(text, flush=True)


def write_json(path: Path, payload) -> None:
    from napari_advseg.io.atomic import atomic_write

    text = json.dumps(payload, indent=2, default=float)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text(path: Path, text: str) -> None:
    from napari_advseg.io.atomic import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(text))


def advseg(*argv: str) -> None:
    """Run one ``advseg`` command in this process (the same code path as the console script)."""
    from napari_advseg.cli import main

    say("$ advseg " + " ".join(argv))
    code = main(list(argv))
    if code != 0:
        raise SystemExit(f"advseg {argv[0]} failed with exit status {code}")


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


# --------------------------------------------------------------------------------------------- data
def prepare_real(work: Path, size: int = 128) -> tuple[Path, Path]:
    """The real CT's organ slices, padded in-plane to ``size`` x ``size`` with air, as NIfTI in ``work``."""
    from napari_advseg.organs import ORGAN_CLASSES
    from napari_advseg.data.slices import organ_slices
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.io.nifti import load_ct, load_labels
    from napari_advseg.io.nifti_save import save_volume

    ct_path, labels_path = work / "real_ct.nii.gz", work / "real_labels.nii.gz"
    if ct_path.is_file() and labels_path.is_file():
        return ct_path, labels_path
    volume = load_ct(REAL_CT_DIR / "ct.nii.gz")
    labels = load_labels(REAL_CT_DIR / "labels.nii.gz", volume, ORGAN_CLASSES)
    keep = organ_slices(labels)
    _, height, width = volume.shape
    if height > size or width > size:
        raise SystemExit(f"the real CT's slices ({height} x {width}) are larger than {size} x {size}")
    pad = ((0, 0), ((size - height) // 2, size - height - (size - height) // 2),
           ((size - width) // 2, size - width - (size - width) // 2))
    hu = np.pad(volume.hu[keep], pad, constant_values=-1000.0)
    lab = np.pad(labels[keep], pad, constant_values=0)
    padded = volume_from_array(hu, volume.spacing)
    work.mkdir(parents=True, exist_ok=True)
    save_volume(np.round(hu).astype(np.int16), padded, ct_path, dtype=np.int16, overwrite=True)
    save_volume(lab.astype(np.uint8), padded, labels_path, dtype=np.uint8, overwrite=True)
    say(f"prepared {ct_path}: slices {int(keep[0])}-{int(keep[-1])} of the real CT ({len(keep)}), "
        f"{height} x {width} padded to {size} x {size}")
    return ct_path, labels_path


def prepare_tiny(work: Path) -> tuple[Path, Path]:
    """A tiny phantom (9 x 64 x 64), the dataset of ``--quick``."""
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.io.nifti_save import save_volume

    ct_path, labels_path = work / "tiny_ct.nii.gz", work / "tiny_labels.nii.gz"
    if not ct_path.is_file():
        phantom = make_phantom(3, (9, 64, 64))
        volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
        work.mkdir(parents=True, exist_ok=True)
        save_volume(phantom.hu, volume, ct_path, dtype=np.int16, overwrite=True)
        save_volume(phantom.labels, volume, labels_path, dtype=np.uint8, overwrite=True)
    return ct_path, labels_path


def dataset_files(args: argparse.Namespace, name: str) -> dict:
    """CT, labels and target of a dataset (the target may not exist yet: the ``target`` stage makes it)."""
    from napari_advseg.data.samples import sample_file

    work = args.work / name
    if name in ("real", "tiny"):
        ct, labels = prepare_real(work) if name == "real" else prepare_tiny(work)
        return {"ct": ct, "labels": labels, "target": work / "unet.pt", "train_target": True}
    return {"ct": sample_file("ct"), "labels": sample_file("labels"), "target": sample_file("target"),
            "train_target": False}


# ------------------------------------------------------------------------------------------- stages
def stage_target(args: argparse.Namespace, name: str, files: dict) -> dict:
    """Train the target U-Net on the training slices (real CT), or describe the shipped one (phantom)."""
    from napari_advseg.models.target_load import load_target

    result_path = args.results / f"{name}_target.json"
    if files["train_target"] and (args.force or not files["target"].is_file()):
        advseg("train-target", "--ct", str(files["ct"]), "--labels", str(files["labels"]), "--out",
               str(files["target"]), "--steps", str(setting(args, "unet_steps")), "--patch-size",
               str(setting(args, "unet_patch")), "--seed", str(args.seed), "--device", args.device, "--quiet")
    target = load_target(files["target"], "cpu")
    metrics = dict(target.metrics)
    metrics["target"] = str(files["target"])
    write_json(result_path, metrics)
    dice = metrics.get("test_dice", {})
    say(f"[{name}] target test Dice: " + ", ".join(
        f"{k} {'absent' if v is None else f'{100 * v:.1f}'}" for k, v in dice.items()))
    return metrics


def sweep_dir(args: argparse.Namespace, name: str) -> Path:
    return args.work / name / "sweep"


def stage_sweep(args: argparse.Namespace, name: str, files: dict) -> list[dict]:
    """``advseg sweep`` on the training slices, tested on the held-out ones; Table 1 beside the paper's."""
    from napari_advseg.evaluation.report import format_table

    result_path = args.results / f"{name}_sweep.json"
    out = sweep_dir(args, name)
    if args.force or not result_path.is_file():
        steps = setting(args, "attack_steps")
        command = ["sweep", "--ct", str(files["ct"]), "--labels", str(files["labels"]), "--target",
                   str(files["target"]), "--train-split", "train", "--test-split", "test", "--steps", str(steps),
                   "--gammas", setting(args, "gammas"), "--ablation-gamma", str(setting(args, "ablation_gamma")),
                   "--samples", str(setting(args, "sweep_samples")), "--out", str(out), "--seed", str(args.seed),
                   "--device", args.device, "--quiet"]
        advseg(*command)
        rows = json.loads((out / "sweep.json").read_text())
        rows = rows if isinstance(rows, list) else [rows]
        write_json(result_path, {"command": "advseg " + " ".join(command), "rows": rows})
    payload = json.loads(result_path.read_text())
    rows = [(row["row"], row) for row in payload["rows"]]
    table = format_table(rows, ORGANS)
    seconds = [row.get("train_seconds", math.nan) for _, row in rows]
    lines = [f"# Table 1 on `{name}`", "", f"Command: `{payload['command']}`", "",
             "Dice in % on the test slices (z % 3 == 2), relative drop in brackets, `*` = drop >= 30 %.", "",
             table, "", "Generator training time per row (s): "
             + ", ".join(f"{label} {sec:.0f}" for (label, _), sec in zip(rows, seconds)), "",
             "The paper's Table 1 (its U-Net, 75 test subjects; kidneys together):", "", PAPER_ROWS, ""]
    write_text(args.results / f"{name}_table1.md", "\n".join(lines))
    say(f"[{name}] Table 1\n{table}")
    return [row for _, row in rows]


def peer_methods(args: argparse.Namespace, generator_fn) -> list[tuple[str, object, int, dict]]:
    """(label, attack, samples per slice, options) of every method in the comparison."""
    samples = setting(args, "peer_samples")
    methods: list[tuple[str, object, int, dict]] = [("generator", generator_fn, samples, {}),
                                                    ("random fields", "random_fields", samples, {})]
    methods += [(f"optimised fields, {k} step{'s' if k > 1 else ''}", "optimised_fields_1", 1, {"steps": k})
                for k in setting(args, "opt_steps")]
    methods += [("PGD-L2", "pgd_l2", 1, {"steps": setting(args, "pgd_steps")}),
                ("SegPGD", "segpgd", 1, {"steps": setting(args, "pgd_steps")})]
    return methods


def peer_entry(label: str, rho_level, report: dict) -> dict:
    organs = {k: {"drop": v["drop"], "dice_clean": v["dice_clean"], "dice_adv": v["dice_adv"],
                  "success": v["success"]} for k, v in report["organs"].items()}
    return {"method": label, "rho_level": rho_level, "rho": report["rho"], "mean_drop": report["mean_drop"],
            "organs": organs, "organs_passed": sum(v["success"] for v in organs.values()),
            "organs_scored": len(organs), "slice_success_rate": report["slice_success_rate"],
            "seconds_per_slice": report["seconds_per_slice"], "fold_fraction": report["fold_fraction"],
            "realism": report.get("realism"), "samples": report["samples"], "slices": report["slices"],
            "config": report["config"]}


def target_and_case(args: argparse.Namespace, files: dict):
    """The dataset's target, and its volume normalised for that target (``case.part`` gives the splits)."""
    from napari_advseg.data.cases import load_case
    from napari_advseg.models.target_load import load_target

    target = load_target(files["target"], args.device)
    return target, load_case(files["ct"], files["labels"], target.normalisation, target.class_names)


def generator_peer(args: argparse.Namespace, path: Path):
    """A trained generator as an attack with the baselines' signature, named "generator" in reports."""
    import functools

    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.checkpoint import load_generator

    generator, config, _ = load_generator(path, args.device)
    fn = functools.partial(generator_attack, generator=generator, config=config)
    fn.__name__ = "generator"  # type: ignore[attr-defined]
    return fn


def set_time_ratios(entry: dict, entries: list[dict]) -> None:
    """Time over the generator's at the same rho level (its own rho where none), and over its plain forward pass."""
    same = [e for e in entries if e["method"] == "generator" and e["rho_level"] == entry["rho_level"]]
    reference = same[0] if same else entries[0]
    entry["time_ratio_to_generator"] = entry["seconds_per_slice"] / reference["seconds_per_slice"]
    entry["time_ratio_to_generator_forward"] = entry["seconds_per_slice"] / entries[0]["seconds_per_slice"]


def stage_peers(args: argparse.Namespace, name: str, files: dict) -> dict:
    """The generator and the baselines on the same target and test slices, at matched rho levels."""
    from napari_advseg.evaluation.baselines import evaluate_baseline

    result_path = args.results / f"{name}_peers.json"
    if args.force or not result_path.is_file():
        target, case = target_and_case(args, files)
        images, labels, index = case.part("test")
        volumes = [(images, labels)]
        generator_path = sweep_dir(args, name) / f"gamma_{setting(args, 'ablation_gamma'):g}" / "generator.pt"
        generator_fn = generator_peer(args, generator_path)
        entries = []
        say(f"[{name}] peers on {len(index)} test slices, generator {generator_path}")
        for _, attack, _, options in peer_methods(args, generator_fn):  # warm-up, so no timing holds the first call
            evaluate_baseline(attack, target, [(images[:1], labels[:1])], 0.01, options=options)
        native = evaluate_baseline(generator_fn, target, volumes, None, samples=setting(args, "peer_samples"),
                                   seed=args.seed)
        entries.append(peer_entry("generator (its own rho)", None, native))
        for rho in setting(args, "rhos"):
            for label, attack, samples, options in peer_methods(args, generator_fn):
                report = evaluate_baseline(attack, target, volumes, rho, samples=samples, seed=args.seed,
                                           options=options)
                entries.append(peer_entry(label, rho, report))
                say(f"[{name}] rho {rho:.2f} {label}: mean drop {100 * report['mean_drop']:.1f} %, "
                    f"{entries[-1]['organs_passed']}/{entries[-1]['organs_scored']} organs, "
                    f"{1000 * report['seconds_per_slice']:.1f} ms/slice")
        for entry in entries:
            set_time_ratios(entry, entries)
        write_json(result_path, {"generator": str(generator_path), "test_slices": [int(i) for i in index],
                                 "machine": machine(), "entries": entries})
    payload = json.loads(result_path.read_text())
    if add_budget_generators(args, name, files, payload):
        write_json(result_path, payload)
    write_text(args.results / f"{name}_peers.md", peers_markdown(name, payload))
    return payload


def add_budget_generators(args: argparse.Namespace, name: str, files: dict, payload: dict) -> bool:
    """Entries for the generators trained within a budget (``low_rho`` stage) at the rho level of their budget.

    Added to the peers' results once those generators exist; the fields are
    scaled to exactly the level, as the sweep generator's are. Returns whether
    anything was added.
    """
    from napari_advseg.evaluation.baselines import evaluate_baseline

    pending = []
    for budget in setting(args, "rho_budgets"):
        label = f"generator trained at rho_max {budget:g}"
        path = args.work / name / "low_rho" / f"rho_max_{budget:g}" / "generator.pt"
        levels = [r for r in setting(args, "rhos") if abs(r - budget) < 1e-9]
        if levels and path.is_file() and not any(e["method"] == label for e in payload["entries"]):
            pending.append((label, path, levels[0]))
    if not pending:
        return False
    target, case = target_and_case(args, files)
    images, labels, _ = case.part("test")
    for label, path, level in pending:
        fn = generator_peer(args, path)
        evaluate_baseline(fn, target, [(images[:1], labels[:1])], level)  # warm-up
        report = evaluate_baseline(fn, target, [(images, labels)], level, samples=setting(args, "peer_samples"),
                                   seed=args.seed)
        entry = peer_entry(label, level, report)
        entry["generator"] = str(path)
        set_time_ratios(entry, payload["entries"])
        payload["entries"].append(entry)
        say(f"[{name}] rho {level:.2f} {label}: mean drop {100 * report['mean_drop']:.1f} %, "
            f"{entry['organs_passed']}/{entry['organs_scored']} organs")
    return True


def _pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}"


def peers_markdown(name: str, payload: dict) -> str:
    entries = payload["entries"]
    head = ("| rho level | method | rho | " + " | ".join(ORGANS) + " | mean drop | organs >= 30 % "
            "| slice success | s / slice | x generator | x generator forward |")
    lines = [f"# Peers at matched rho on `{name}`", "",
             f"Generator: `{payload['generator']}`; {len(payload['test_slices'])} test slices. Dice drop per "
             "organ in % of the clean Dice; slice success: (slice, organ) pairs whose Dice drops >= 30 %; "
             "time per adversarial slice; `x generator`: time over the generator's at the same rho (forward "
             "pass + scaling to the rho); `x generator forward`: time over the generator's plain forward pass.",
             "", head, "|" + " --- |" * (head.count("|") - 1)]
    for e in entries:
        level = "own" if e["rho_level"] is None else f"{e['rho_level']:.2f}"
        cells = [_pct(e["organs"][o]["drop"]) if o in e["organs"] else "n/a" for o in ORGANS]
        lines.append(f"| {level} | {e['method']} | {e['rho']:.3f} | " + " | ".join(cells)
                     + f" | {_pct(e['mean_drop'])} | {e['organs_passed']}/{e['organs_scored']} "
                     f"| {_pct(e['slice_success_rate'])} % | {e['seconds_per_slice']:.4f} "
                     f"| {e['time_ratio_to_generator']:.1f} | {e['time_ratio_to_generator_forward']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_peers(args: argparse.Namespace, payloads: dict[str, dict]) -> Path:
    """Mean Dice drop against rho, one curve per method, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(payloads), figsize=(6.5 * len(payloads), 4.8), squeeze=False)
    for ax, (name, payload) in zip(axes[0], payloads.items()):
        methods = [e["method"] for e in payload["entries"] if e["rho_level"] is not None]
        for method in dict.fromkeys(methods):
            points = sorted((e["rho"], 100 * e["mean_drop"]) for e in payload["entries"]
                            if e["method"] == method and e["rho_level"] is not None)
            style = {"linewidth": 3, "color": "black"} if method == "generator" else {}
            if len(points) == 1:
                style = {"markersize": 11, "marker": "D", "linestyle": "none", "color": "crimson"}
            ax.plot([p[0] for p in points], [p[1] for p in points], **{"marker": "o", **style}, label=method)
        own = payload["entries"][0]
        ax.plot([own["rho"]], [100 * own["mean_drop"]], marker="*", markersize=14, color="black",
                linestyle="none", label="generator, its own rho")
        ax.axhline(30, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("rho (perceptibility, Eq. 7)")
        ax.set_ylabel("mean Dice drop over organs (%)")
        ax.set_title(f"{name}: {len(payload['test_slices'])} test slices")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = args.results / ("peers_quick.png" if args.quick else "peers.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    say(f"wrote {path}")
    return path


def stage_low_rho(args: argparse.Namespace, name: str, files: dict) -> list[dict]:
    """Generators trained for a smaller rho, on the real CT: a larger ``lambda_rho``, or a hard budget ``rho_max``.

    The sweep's generators settle at rho 0.05-0.07; this stage asks what a
    stronger norm penalty, or training within a budget, gives at rho <= 0.05.
    Gamma as the ablations; trained and tested like the sweep rows. Each row
    is kept in its own folder and reused when done (``--force`` redoes).
    """
    from napari_advseg.evaluation.report import format_table

    if name == "phantom":
        return []
    gamma = setting(args, "ablation_gamma")
    plans = [(f"gamma {gamma:g}, lambda_rho {w:g}", f"lambda_rho_{w:g}", ["--lambda-rho", f"{w:g}"])
             for w in setting(args, "low_rho_weights")]
    plans += [(f"gamma {gamma:g}, rho_max {r:g}", f"rho_max_{r:g}", ["--rho-max", f"{r:g}"])
              for r in setting(args, "rho_budgets")]
    rows, commands = [], []
    data = ["--ct", str(files["ct"]), "--labels", str(files["labels"]), "--target", str(files["target"])]
    for label, folder, extra in plans:
        out = args.work / name / "low_rho" / folder
        train = ["train", *data, "--split", "train", "--gamma", f"{gamma:g}", *extra,
                 "--steps", str(setting(args, "attack_steps")), "--out", str(out), "--seed", str(args.seed),
                 "--device", args.device, "--quiet"]
        evaluate = ["evaluate", *data, "--generator", str(out / "generator.pt"), "--split", "test",
                    "--samples", str(setting(args, "sweep_samples")), "--json", str(out / "report.json"),
                    "--seed", str(args.seed), "--device", args.device, "--quiet"]
        commands += ["advseg " + " ".join(train), "advseg " + " ".join(evaluate)]
        if args.force or not (out / "report.json").is_file():
            start = time.perf_counter()
            advseg(*train)
            seconds = time.perf_counter() - start
            advseg(*evaluate)
            report = json.loads((out / "report.json").read_text())
            report["train_seconds"] = seconds
            write_json(out / "report.json", report)
        report = json.loads((out / "report.json").read_text())
        report["row"] = label
        rows.append(report)
    write_json(args.results / f"{name}_low_rho.json", {"commands": commands, "rows": rows})
    table = format_table([(row["row"], row) for row in rows], ORGANS)
    write_text(args.results / f"{name}_low_rho.md", "\n".join(
        [f"# Smaller rho on `{name}`: a larger norm weight, or a hard budget", "",
         "Trained on the training slices, tested on the test slices (as the sweep). Commands:", "",
         *[f"    {c}" for c in commands], "", table, "",
         "Generator training time per row (s): " + ", ".join(
             f"{row['row']} {row.get('train_seconds', math.nan):.0f}" for row in rows), ""]))
    say(f"[{name}] smaller rho\n{table}")
    return rows


def stage_speed(args: argparse.Namespace, name: str, files: dict) -> dict:
    """Training steps per second; on the real CT (tiny in --quick) also the time from scratch to the bar.

    The bar is the sample bar: every organ's Dice drops by >= 30 % on the test
    slices. The generator is evaluated every ``bar_every`` steps (2 samples per
    slice); training time excludes those evaluations, wall time includes them.
    Two runs from scratch: the defaults, and the defaults within the budget
    ``rho_max = GOAL_RHO`` (the benchmark's rho goal); each stops at the bar or
    when its time budget is spent.
    """
    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.attack.trainer import AttackTrainer

    result_path = args.results / f"{name}_speed.json"
    if not args.force and result_path.is_file():
        return json.loads(result_path.read_text())
    target, case = target_and_case(args, files)
    images, labels, _ = case.part("train")
    test_images, test_labels, _ = case.part("test")
    config = AttackConfig(seed=args.seed, steps=setting(args, "bar_max_steps"))
    result: dict = {"machine": machine(), "config": config.to_dict(), "slice_size": list(images.shape[1:]),
                    "batch_size": config.batch_size, "critic_steps": config.critic_steps,
                    "train_slices": int(len(images)), "test_slices": int(len(test_images))}

    trainer = AttackTrainer(config, target, images, labels, args.device)
    for _ in trainer.run(steps=2):  # warm-up
        pass
    n = setting(args, "speed_steps")
    start = time.perf_counter()
    for _ in trainer.run(steps=n):
        pass
    seconds = time.perf_counter() - start
    result["steps_per_second"] = n / seconds
    say(f"[{name}] {n / seconds:.2f} generator steps/s (batch {config.batch_size}, "
        f"{images.shape[1]} x {images.shape[2]}, {config.critic_steps} critic steps each, {args.device})")

    if name in ("real", "tiny"):
        every, budget = setting(args, "bar_every"), setting(args, "bar_budget_s")
        result.update({"bar": "every organ's Dice drops >= 30 % on the test slices (2 samples per slice)",
                       "evaluate_every": every, "budget_seconds": budget, "goal_rho": GOAL_RHO})
        for key, run_config in (("", config), ("_at_goal_rho", config.replace(rho_max=GOAL_RHO))):
            curve, reached = time_to_bar(args, name, run_config, target, (images, labels),
                                         (test_images, test_labels), every, budget)
            result.update({f"curve{key}": curve, f"reached{key}": reached})
    write_json(result_path, result)
    return result


def time_to_bar(args, name, config, target, train, test, every: int, budget: float):
    """Train from scratch, evaluating every ``every`` steps, until every organ is past the 30 % line."""
    from napari_advseg.evaluation.report import evaluate_attack
    from napari_advseg.attack.trainer import AttackTrainer

    trainer = AttackTrainer(config, target, *train, args.device)
    curve, reached = [], None
    train_seconds = 0.0
    wall_start = time.perf_counter()
    while trainer.step_count < config.steps and train_seconds < budget:
        start = time.perf_counter()
        for _ in trainer.run(steps=every):
            pass
        train_seconds += time.perf_counter() - start
        report = evaluate_attack(trainer.generator.eval(), config, target, [test], samples=2, seed=args.seed)
        trainer.generator.train()
        point = {"step": trainer.step_count, "train_seconds": train_seconds,
                 "wall_seconds": time.perf_counter() - wall_start, "rho": report["rho"],
                 "mean_drop": report["mean_drop"], "drops": {k: v["drop"] for k, v in report["organs"].items()},
                 "organs_passed": sum(v["success"] for v in report["organs"].values()),
                 "all_succeed": report["all_succeed"], "rho_max": config.rho_max}
        curve.append(point)
        say(f"[{name}] rho_max {config.rho_max}, step {point['step']}: {train_seconds:.0f} s training, mean drop "
            f"{100 * point['mean_drop']:.0f} %, {point['organs_passed']} organs >= 30 %, rho {point['rho']:.3f}")
        if report["all_succeed"]:
            reached = point
            break
    return curve, reached


def stage_memory(args: argparse.Namespace) -> dict:
    """Peak memory of ``advseg sample`` (child process) on a volume resampled from the shipped phantom."""
    result_path = args.results / ("memory_quick.json" if args.quick else "memory.json")
    if not args.force and result_path.is_file():
        return json.loads(result_path.read_text())
    shape = setting(args, "memory_shape")
    command = [sys.executable, str(ROOT / "bench" / "sample_memory.py"), "--shape", *map(str, shape),
               "--scratch", str(args.work / "memory"), "--json", str(result_path)]
    say("$ " + " ".join(command))
    subprocess.run(command, check=True)
    return json.loads(result_path.read_text())


STAGES = {"target": stage_target, "sweep": stage_sweep, "low_rho": stage_low_rho, "peers": stage_peers,
          "speed": stage_speed, "memory": stage_memory}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and a few steps (seconds): the CI check")
    parser.add_argument("--data", nargs="+", choices=["real", "phantom", "tiny"],
                        help="datasets (default: real and phantom; tiny with --quick)")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES), help="stages to run")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="where the figures go")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench", help="checkpoints, prepared volumes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="redo stages whose results exist")
    args = parser.parse_args(argv)
    datasets = args.data or (["tiny"] if args.quick else ["real", "phantom"])
    if "real" in datasets and not (REAL_CT_DIR / "ct.nii.gz").is_file():
        say(f"skipping the real CT: {REAL_CT_DIR} is absent")
        datasets = [d for d in datasets if d != "real"]
    args.results.mkdir(parents=True, exist_ok=True)
    write_json(args.results / ("machine_quick.json" if args.quick else "machine.json"), machine())
    for name in datasets:
        files = dataset_files(args, name)
        for stage in args.stages:
            if stage in DATASET_FREE:
                continue
            STAGES[stage](args, name, files)
    payloads = {}
    for stage in args.stages:
        if stage in DATASET_FREE:
            STAGES[stage](args)
    if "peers" in args.stages:
        payloads = {name: json.loads((args.results / f"{name}_peers.json").read_text()) for name in datasets}
        plot_peers(args, payloads)
    write_summary(args, datasets)
    return 0


def write_summary(args: argparse.Namespace, datasets: list[str]) -> Path:
    """Every figure the results folder holds, in one Markdown file (``summary.md``, or ``summary_quick.md``)."""
    parts = [f"# Benchmark figures ({'quick' if args.quick else 'full'} run)", "",
             "Written by `bench/attack_benchmark.py" + (" --quick" if args.quick else "") + "` from the JSON "
             "files beside this one; machine: `" + json.dumps(machine()) + "`.", ""]
    for name in datasets:
        target = args.results / f"{name}_target.json"
        if target.is_file():
            metrics = json.loads(target.read_text())
            dice = ", ".join(f"{k} {'absent' if v is None else f'{100 * v:.2f}'}"
                             for k, v in metrics.get("test_dice", {}).items())
            parts += [f"## `{name}`: target U-Net", "", f"Test Dice (%): {dice}. {metrics.get('data', '')}; "
                      f"{metrics.get('steps')} steps of batch {metrics.get('batch_size')}, "
                      f"patch {metrics.get('patch_size')}, {metrics.get('train_seconds', math.nan):.0f} s.", ""]
        for suffix in ("table1", "peers", "low_rho"):
            path = args.results / f"{name}_{suffix}.md"
            if path.is_file():
                parts += ["#" + path.read_text().strip(), ""]
        speed = args.results / f"{name}_speed.json"
        if speed.is_file():
            figures = json.loads(speed.read_text())
            size = " x ".join(map(str, figures["slice_size"]))
            parts += [f"## `{name}`: training speed", "",
                      f"{figures['steps_per_second']:.2f} generator steps/s (batch {figures['batch_size']}, "
                      f"{size} slices, {figures['critic_steps']} critic steps per step, "
                      f"device {args.device})."]
            for key, what in (("", "defaults"), ("_at_goal_rho", f"within rho_max {figures.get('goal_rho')}")):
                if f"curve{key}" not in figures:  # results of a run before this figure was measured
                    continue
                parts += ["", f"From scratch ({what}), evaluated every {figures['evaluate_every']} steps on "
                          f"{figures['test_slices']} test slices (bar: {figures['bar']}):", "",
                          "| step | training s | wall s | organs >= 30 % | mean drop | rho |",
                          "| --- | --- | --- | --- | --- | --- |"]
                parts += [f"| {p['step']} | {p['train_seconds']:.0f} | {p['wall_seconds']:.0f} | "
                          f"{p['organs_passed']}/5 | {100 * p['mean_drop']:.0f} % | {p['rho']:.3f} |"
                          for p in figures[f"curve{key}"]]
                point = figures.get(f"reached{key}")
                parts += ["", "bar met: " + (f"not within the budget of {figures['budget_seconds']:.0f} s"
                                             if point is None else
                                             f"step {point['step']}, {point['train_seconds']:.0f} s of training "
                                             f"({point['wall_seconds']:.0f} s with evaluations)")]
            parts.append("")
    memory = args.results / ("memory_quick.json" if args.quick else "memory.json")
    if memory.is_file():
        figures = json.loads(memory.read_text())
        parts += ["## `advseg sample` memory", "",
                  f"`{figures['command']}` on {' x '.join(map(str, figures['shape']))} (resampled from "
                  f"{' x '.join(map(str, figures['source_shape']))}): exit {figures['exit_status']}, "
                  f"{figures['seconds']:.0f} s, peak resident memory {figures['peak_rss_gib']:.2f} GiB.", ""]
    path = args.results / ("summary_quick.md" if args.quick else "summary.md")
    write_text(path, "\n".join(parts))
    say(f"wrote {path}")
    return path


DATASET_FREE = ("memory",)

if __name__ == "__main__":
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    sys.exit(main())
