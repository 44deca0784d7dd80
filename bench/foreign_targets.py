"""Targets from elsewhere: the generator and its peers against networks built with MONAI and nnU-Net's code.

    .venv/bin/python bench/foreign_targets.py                      # every stage, every target
    .venv/bin/python bench/foreign_targets.py --targets monai_unet --stages probe

Needs MONAI and dynamic-network-architectures, installed beside the pinned
CPU torch without their dependencies (``bench/README.md``).

Data: the real CT (``../shared/data/abdomen_ct``, read where it lies),
prepared as ``bench/attack_benchmark.py`` does (the 46 organ slices, padded to
128 x 128); the networks and the generators train on the slices
``z % 3 != 2`` and every figure is measured on the 15 held-out ones.

Targets: ``monai_unet``, ``monai_segresnet``, ``nnunet_plain``
(``bench/foreign_nets.py`` trains and exports them) and ``own_unet``, the
project's U-Net of ``bench/attack_benchmark.py --stages target``. Each is
loaded through the product's own path (``load_target`` on the exported
TorchScript file and its sidecar), as a user's network would be.

Folder targets (``bench/folder_nets.py`` trains and writes them):
``nnunet_2d`` and ``nnunet_3d`` (nnU-Net v2 trained-model folders) and
``monai_2d`` (a MONAI bundle), loaded by ``load_target`` on the folder:

    .venv/bin/python bench/foreign_targets.py --targets nnunet_2d monai_2d --results bench/results/folders

Stages (each skipped when its result exists; ``--force`` redoes it):

``targets``    train and export the foreign networks (the own U-Net must exist).
``probe``      why: clean Dice, the masked CE and the size of its gradient at
               the input and at the fields, the softmax's confidence.
``peers``      random smooth fields, 20-step optimised fields and PGD-L2 at
               each rho of ``--rhos``: the dose-response of each method.
``generator``  ``advseg train`` with the defaults (``--steps``, ``--set`` for
               variants), then the generator at its own rho and at each rho.
``speed``      sampling one adversarial volume beside one prediction by the folder's own framework
               (folder targets; ``nnUNetPredictor``, a bundle's inferer).
``report``     the Markdown table (``--results``/foreign.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import folder_nets  # noqa: E402  (the bench's own modules)
import foreign_nets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ORGANS = ("liver", "spleen", "kidney_left", "kidney_right", "pancreas")
TARGETS = ("own_unet", "monai_unet", "monai_segresnet", "nnunet_plain")
FOLDER_TARGETS = folder_nets.NETS
"""Targets saved the frameworks' way (``bench/folder_nets.py``): nnU-Net folders and a MONAI bundle."""
NET_STEPS = {"monai_unet": 1500, "monai_segresnet": 800, "nnunet_plain": 600}


def say(text: str) -> None:
    print(text, flush=True)


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")


def data_files(work: Path) -> tuple[Path, Path]:
    from attack_benchmark import prepare_real

    return prepare_real(work / "real")


def target_path(args, name: str) -> Path:
    if name == "own_unet":
        return args.work / "real" / "unet.pt"
    if name in FOLDER_TARGETS:
        return folder_nets.folder_of(args.work, name)
    return args.work / "foreign" / name / "model.pt"


def load(args, name: str):
    """The target through the product's path, and the case normalised for it."""
    from napari_advseg.data.cases import load_case
    from napari_advseg.models.target_load import load_target

    from napari_advseg.models.folder_targets import fit_target_to_volume

    ct, labels = data_files(args.work)
    target = load_target(target_path(args, name), "cpu")
    case = load_case(ct, labels, target.normalisation, target.class_names)
    fit_target_to_volume(target, case.volume)  # a folder target: the CT's voxel size (and a 3D one's slab depth)
    return target, case


def held_out(target, case) -> tuple:
    """The held-out slices as ``evaluate_baseline`` takes them: the slices themselves for a 2D target; for a 3D
    one the whole volume (its network's context) with the held-out slices as the scored ones."""
    from napari_advseg.attack.apply import slices_to_run
    from napari_advseg.data.slices import split_slices

    images, labels, scored = slices_to_run(target, case.images, case.labels,
                                           split_slices(case.volume.n_slices, "test"))
    return (images, labels) if scored is None else (images, labels, scored)


# ------------------------------------------------------------------------------------------- stages
def stage_targets(args, name: str) -> dict:
    if name in FOLDER_TARGETS:
        folder_nets.main(["--nets", name, "--work", str(args.work)] + (["--force"] if args.force else []))
        return json.loads((target_path(args, name) / "training.json").read_text())
    out = args.work / "foreign" / name
    record_path = out / "training.json"
    if name == "own_unet":
        from napari_advseg.models.target_load import load_target

        path = target_path(args, name)
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run bench/attack_benchmark.py --data real --stages target first")
        return {"name": name, "held_out_dice": load_target(path, "cpu").metrics.get("test_dice")}
    if record_path.is_file() and not args.force:
        return json.loads(record_path.read_text())
    from napari_advseg.data.cases import load_case

    ct, labels = data_files(args.work)
    case = load_case(ct, labels, {"mode": "none"})
    hu, lab = case.volume.hu.astype(np.float32), case.labels.astype(np.int64)
    train = np.array([z % 3 != 2 for z in range(len(hu))])
    say(f"[{name}] training {NET_STEPS[name]} steps on {train.sum()} slices")
    record = foreign_nets.train_net(name, hu[train], lab[train], hu[~train], lab[~train], out,
                                    NET_STEPS[name], seed=args.seed, log=say)
    say(f"[{name}] held-out Dice " + ", ".join(f"{k} {v:.1f}" for k, v in record["held_out_dice"].items())
        + f"; {record['train_seconds']:.0f} s")
    return record


def stage_probe(args, name: str) -> dict:
    """The attack term's signal through the target: the evidence for why a generator does or does not learn."""
    from napari_advseg.attack.baselines.registry import ATTACKS
    from napari_advseg.attack.attack_gradient import sensitivity
    from napari_advseg.attack.losses import masked_cross_entropy, organ_mask

    target, case = load(args, name)
    images, labels, _ = case.part("train")
    x = torch.from_numpy(images[:, None]).float()
    y = torch.from_numpy(labels.astype(np.int64))
    rng = torch.Generator().manual_seed(args.seed)
    rows = {}
    for kind in ("clean", "random fields 0.08"):
        if kind == "clean":
            xa, ya = x.clone(), y
        else:
            res = ATTACKS["random_fields"](x, y, target, 0.08, rng)
            xa, ya = res.adversarial.detach(), res.warped_labels
        xa.requires_grad_(True)
        logits = target(xa)
        mask = organ_mask(ya, None, 3)
        mce = masked_cross_entropy(logits, ya, mask)
        (grad,) = torch.autograd.grad(mce, xa)
        probs = logits.detach().softmax(1)
        p_true = probs.gather(1, ya[:, None].long())[:, 0]
        m = mask.bool()
        per_slice = grad.flatten(1).norm(dim=1) / xa.detach().flatten(1).norm(dim=1)
        rows[kind] = {"masked_ce": float(mce), "grad_norm_rel": float(per_slice.mean()),
                      "sensitivity": float(sensitivity(grad, xa.detach()).mean()),
                      "grad_abs_mean": float(grad.abs().mean()),
                      "p_true_median": float(p_true[m].median()), "p_true_mean": float(p_true[m].mean()),
                      "saturated_share": float((p_true[m] > 0.999).float().mean()),
                      "logit_std": float(logits.detach().std())}
    payload = {"target": name, "normalisation": target.normalisation, "x_rms": float(x.pow(2).mean().sqrt()),
               **rows}
    write_json(args.results / f"{name}_probe.json", payload)
    say(f"[{name}] probe: " + json.dumps(payload))
    return payload


def stage_peers(args, name: str) -> dict:
    from napari_advseg.evaluation.baselines import evaluate_baseline

    path = args.results / f"{name}_peers.json"
    every = (("random", "random fields", "random_fields", 4, {}),
             ("optimised", "optimised fields, 20 steps", "optimised_fields_20", 1, {}),
             ("pgd", "PGD-L2", "pgd_l2", 1, {"steps": 20}))
    chosen = [peer for peer in every if peer[0] in args.peers]
    kept = []  # a subset of the peers rerun: the others' entries stay
    if path.is_file():
        if not args.force and len(chosen) == len(every):
            return json.loads(path.read_text())
        if len(chosen) < len(every):
            rerun = {(peer[1], rho) for peer in chosen for rho in args.rhos}
            kept = [e for e in json.loads(path.read_text())["entries"] if (e["method"], e["rho_level"]) not in rerun]
    target, case = load(args, name)
    volumes = [held_out(target, case)]
    entries = []
    for rho in args.rhos:
        for _, label, attack, samples, options in chosen:
            start = time.perf_counter()
            report = evaluate_baseline(attack, target, volumes, rho, samples=samples, seed=args.seed,
                                       options=options)
            entries.append(entry(label, rho, report))
            say(f"[{name}] rho {rho:.2f} {label}: mean drop {100 * report['mean_drop']:.1f} %, "
                f"{entries[-1]['organs_passed']}/{entries[-1]['organs_scored']} organs "
                f"({time.perf_counter() - start:.0f} s)")
    order = {peer[1]: k for k, peer in enumerate(every)}
    entries = sorted(kept + entries, key=lambda e: (e["rho_level"], order.get(e["method"], len(order))))
    payload = {"target": name, "entries": entries}
    write_json(path, payload)
    return payload


def entry(label: str, rho, report: dict) -> dict:
    organs = {k: {"drop": v["drop"], "dice_clean": v["dice_clean"], "dice_adv": v["dice_adv"],
                  "success": v["success"]} for k, v in report["organs"].items()}
    segmented = {k: v for k, v in organs.items() if v["dice_clean"] is not None and v["dice_clean"] >= 0.5}
    return {"method": label, "rho_level": rho, "rho": report["rho"], "mean_drop": report["mean_drop"],
            "organs": organs, "organs_passed": sum(v["success"] for v in segmented.values()),
            "organs_scored": len(segmented), "realism": report.get("realism")}


def generator_entries(generator, config, target, volumes, rhos, samples: int, seed: int, label: str) -> list[dict]:
    """A generator's entries (:func:`entry`) at its own rho and at each of ``rhos``, each printed as it comes."""
    import functools

    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.evaluation.baselines import evaluate_baseline

    fn = functools.partial(generator_attack, generator=generator, config=config)
    fn.__name__ = "generator"  # type: ignore[attr-defined]
    entries = []
    for rho in [None, *rhos]:
        report = evaluate_baseline(fn, target, volumes, rho, samples=samples, seed=seed)
        entries.append(entry("generator", rho, report))
        drops = {k: round(100 * v["drop"]) for k, v in report["organs"].items() if v["drop"] is not None}
        say(f"{label} at rho {'own' if rho is None else f'{rho:.2f}'} ({report['rho']:.3f}): "
            f"mean drop {100 * report['mean_drop']:.1f} %, {entries[-1]['organs_passed']}/"
            f"{entries[-1]['organs_scored']} organs, {drops}, realism {report.get('realism')}")
    return entries


def generator_dir(args, name: str) -> Path:
    return args.work / "foreign" / name / f"generator_{args.tag}"


def run_train(command: list[str], name: str) -> tuple[float, str]:
    """Run an ``advseg train`` command line (``python -m napari_advseg.cli train ...``); its seconds and stderr."""
    say("$ advseg " + " ".join(command[3:]))
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"[{name}] advseg train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stderr


def stage_generator(args, name: str) -> dict:
    from napari_advseg.attack.checkpoint import load_generator

    path = args.results / f"{name}_generator_{args.tag}.json"
    if path.is_file() and not args.force:
        return json.loads(path.read_text())
    ct, labels = data_files(args.work)
    out = generator_dir(args, name)
    command = [sys.executable, "-m", "napari_advseg.cli", "train", "--ct", str(ct), "--labels", str(labels),
               "--target", str(target_path(args, name)), "--split", args.train_split, "--steps", str(args.steps),
               "--out", str(out), "--device", "cpu", "--quiet"]
    if args.set:
        extra = json.loads(args.set)
        for key, value in extra.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                command.append(flag if value else "--no-" + key.replace("_", "-"))
            else:
                command += [flag, str(value)]
    seconds, stderr = run_train(command, name)
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    target, case = load(args, name)
    volumes = [held_out(target, case)]
    generator, config, _ = load_generator(out / "generator.pt", "cpu", target=target)
    entries = generator_entries(generator, config, target, volumes, args.rhos, 4, args.seed, f"[{name}] generator")
    payload = {"target": name, "command": "advseg " + " ".join(command[3:]), "train_seconds": seconds,
               "warnings": warnings, "config": config.to_dict(), "entries": entries}
    write_json(path, payload)
    return payload


def framework_predictor(args, name: str, case):
    """One prediction of the clean volume by the folder's own framework, without gradients: a call, set up here.

    nnU-Net: ``nnUNetPredictor`` on the volume as SimpleITK reads it (no
    mirroring), its network and checkpoint loaded before the call. A 2D MONAI
    bundle: its preprocessing's window and its inferer on each slice, as a user
    runs a 2D bundle over a volume.
    """
    folder = target_path(args, name)
    if name.startswith("nnunet"):
        sys.path.insert(0, str(ROOT / "tests"))
        from test_nnunet_folder import nnunet_predictor

        configuration = "2d" if name == "nnunet_2d" else "3d_fullres"
        hu = np.ascontiguousarray(case.volume.hu[:, ::-1, ::-1]).astype(np.float32)
        predictor = nnunet_predictor(folder, configuration, False)
        spacing = list(case.volume.spacing)
        return lambda: predictor.predict_single_npy_array(hu[None], {"spacing": spacing})
    sys.path.insert(0, str(ROOT / "tests"))
    from folder_helpers import bundle_network

    parser, network = bundle_network(folder)
    inferer = parser.get_parsed_content("inferer")
    window = [t for t in parser.get_parsed_content("preprocessing").transforms
              if type(t).__name__ == "ScaleIntensityRanged"][0]
    hu = torch.as_tensor(case.volume.hu, dtype=torch.float32)

    def predict():
        with torch.no_grad():
            x = window({"image": hu})["image"]
            return [inferer(x[z][None, None], network).argmax(1) for z in range(x.shape[0])]
    return predict


def sampling_calls(generator, config, target, case) -> dict:
    """What sampling adversarial volumes costs, as calls to time (:func:`interleaved_seconds`).

    ``fields``: G's fields for the whole volume (one code), nothing segmented.
    ``sample``: an adversarial volume and the target's segmentation of it: G,
    the fields, one prediction (the widget's Apply to volume; every
    ``advseg sample --count N`` sample after the first). ``first sample``: the
    same with the clean volume segmented too, as the first sample of
    ``advseg sample`` is (two predictions).
    """
    from napari_advseg.attack.apply import attack_volume, fields_z_smooth, run_attack_volume, target_input_range
    from napari_advseg.attack.volume_fields import smoothed_fields

    index = np.arange(case.volume.n_slices)
    limits = target_input_range(target)
    sigma = fields_z_smooth(target, config, 0.0)
    return {
        "fields": lambda: smoothed_fields(generator, config, case.images, index, sigma, batch_size=4,
                                          limits=limits, rng=torch.Generator().manual_seed(0), latent="volume"),
        "sample": lambda: run_attack_volume(attack_volume(generator, config, target, case, seed=1,
                                                          predict_clean=False)),
        "first sample": lambda: run_attack_volume(attack_volume(generator, config, target, case, seed=0)),
    }


def interleaved_seconds(calls: dict, rounds: int = 3) -> dict:
    """Each call timed ``rounds`` times, the calls taking turns (a busy machine slows them alike); one untimed
    warm-up each first. ``{name: {"median": s, "seconds": [...]}}``."""
    for call in calls.values():
        call()
    seconds = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # a different call first in each round
            start = time.perf_counter()
            calls[name]()
            seconds[name].append(time.perf_counter() - start)
    return {name: {"median": float(np.median(values)), "seconds": values} for name, values in seconds.items()}


def speed_report(generator, config, target, case, framework, rounds: int = 3) -> dict:
    """Sampling beside one framework prediction (``framework``: a call), timed in turns; figures and ratios."""
    calls = {"framework": framework, **sampling_calls(generator, config, target, case)}
    timed = interleaved_seconds(calls, rounds)
    base = timed["framework"]["median"]
    return {"rounds": rounds, "threads": torch.get_num_threads(), "volume": list(case.volume.shape),
            "seconds": timed, "ratios": {name: timed[name]["median"] / base for name in timed if name != "framework"}}


def speed_line(payload: dict, framework_name: str) -> str:
    seconds, ratios = payload["seconds"], payload["ratios"]
    return (f"{framework_name} {seconds['framework']['median']:.2f} s (median of {payload['rounds']}, in turns with "
            f"the rest); G's fields alone {seconds['fields']['median']:.2f} s ({ratios['fields']:.2f}x); an "
            f"adversarial volume and its segmentation {seconds['sample']['median']:.2f} s ({ratios['sample']:.2f}x); "
            f"the first sample, the clean volume segmented too, {seconds['first sample']['median']:.2f} s "
            f"({ratios['first sample']:.2f}x)")


def stage_speed(args, name: str) -> dict:
    """Sampling adversarial volumes (G, the fields, the target's prediction) beside one framework prediction."""
    from napari_advseg.attack.checkpoint import load_generator

    if name not in FOLDER_TARGETS:
        raise SystemExit(f"the speed stage compares with a folder's own framework: {name} is not a folder target")
    target, case = load(args, name)
    path = generator_dir(args, name) / "generator.pt"
    generator, config, _ = load_generator(path, "cpu", target=target)
    payload = {"target": name, "generator": str(path),
               **speed_report(generator, config, target, case, framework_predictor(args, name, case), args.rounds)}
    write_json(args.results / f"{name}_speed.json", payload)
    say(f"[{name}] " + speed_line(payload, "nnUNetPredictor" if name.startswith("nnunet") else "the bundle's inferer"))
    return payload


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}"


def first_rho_passing(entries: list[dict]) -> float | None:
    """The smallest rho level at which every organ the target segments (clean Dice >= 50) drops >= 30 %."""
    levels = sorted(e["rho_level"] for e in entries if e["rho_level"] is not None
                    and e["organs_scored"] and e["organs_passed"] == e["organs_scored"])
    return levels[0] if levels else None


def stage_report(args, name: str) -> str:
    """One target's section of ``foreign.md``: clean Dice, the generator's rows, the peers by rho."""
    training = {}
    record = args.work / "foreign" / name / "training.json"
    if name in FOLDER_TARGETS:
        record = target_path(args, name) / "training.json"
    if record.is_file():
        training = json.loads(record.read_text())
        training = training.get("training", training)
    peers = json.loads((args.results / f"{name}_peers.json").read_text())["entries"]
    lines = [f"## `{name}`", ""]
    if training:
        normalisation = training.get("normalisation")
        lines.append(f"Trained by `bench/{'folder_nets' if name in FOLDER_TARGETS else 'foreign_nets'}.py`: "
                     f"{training['steps']} steps, {training['train_seconds']:.0f} s, {training['parameters']:,} "
                     f"parameters" + (f"; normalisation `{json.dumps(normalisation)}`" if normalisation else "")
                     + f"; loaded from `{target_path(args, name).relative_to(args.work)}`.")
        lines.append("")
    clean = peers[0]["organs"]
    lines += ["Clean Dice on the held-out slices: " + ", ".join(
        f"{k} {100 * v['dice_clean']:.1f}" for k, v in clean.items() if v["dice_clean"] is not None), ""]
    tags = sorted(p.name[len(f"{name}_generator_"):-5] for p in args.results.glob(f"{name}_generator_*.json"))
    generators = {tag: json.loads((args.results / f"{name}_generator_{tag}.json").read_text()) for tag in tags}
    from napari_advseg.evaluation.report import REALISM_COLUMNS, realism_cells

    header = ("| rho level | method | rho | " + " | ".join(ORGANS) + " | mean drop | organs >= 30 % | "
              + " | ".join(REALISM_COLUMNS) + " |")
    lines += [header, "|" + " --- |" * (header.count("|") - 1)]
    rows = []
    for tag, payload in generators.items():
        rows += [(e, f"generator `{tag}`") for e in payload["entries"]]
    rows += [(e, e["method"]) for e in peers]
    rows.sort(key=lambda r: (-1 if r[0]["rho_level"] is None else r[0]["rho_level"]))
    for e, label in rows:
        level = "own" if e["rho_level"] is None else f"{e['rho_level']:.2f}"
        drops = " | ".join(_pct(e["organs"].get(k, {}).get("drop")) for k in ORGANS)
        lines.append(f"| {level} | {label} | {e['rho']:.3f} | {drops} | {_pct(e['mean_drop'])} | "
                     f"{e['organs_passed']}/{e['organs_scored']} | " + " | ".join(realism_cells(e)) + " |")
    lines.append("")
    for tag, payload in generators.items():
        by_level = {e["rho_level"]: e for e in payload["entries"]}
        ratios = []
        for e in peers:
            if e["method"].startswith("optimised") and e["rho_level"] in by_level and e["mean_drop"] > 0:
                ratios.append(f"{e['rho_level']:.2f}: {by_level[e['rho_level']]['mean_drop'] / e['mean_drop']:.2f}")
        first = first_rho_passing(payload["entries"])
        lines.append(f"- generator `{tag}` (`{payload['command']}`, {payload['train_seconds']:.0f} s): mean drop over "
                     f"the 20-step optimised fields' at equal rho {', '.join(ratios)}; every segmented organ >= 30 % "
                     f"first at rho {'-' if first is None else f'{first:.2f}'}"
                     + (f"; warnings: {'; '.join(payload['warnings'])}" if payload["warnings"] else ""))
    lines.append("")
    return "\n".join(lines)


def summary_table(args, level: float = 0.08) -> str:
    """One line per target at one rho level: the generators (raw and default), the peers, realism, time."""
    header = ("| target | clean mean Dice | generator, raw | generator, default | random fields | optimised fields, 20 "
              "steps | PGD-L2 | default / optimised | all segmented organs >= 30 % from rho | det J, default | "
              "det J, random | b < 32 px, default / random | generator training |")
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for name in args.targets:
        peers_path = args.results / f"{name}_peers.json"
        if not peers_path.is_file():
            continue
        peers = {(e["method"], e["rho_level"]): e for e in json.loads(peers_path.read_text())["entries"]}
        gens = {}
        for tag in ("raw", "default"):
            path = args.results / f"{name}_generator_{tag}.json"
            if path.is_file():
                gens[tag] = json.loads(path.read_text())
        at = {tag: {e["rho_level"]: e for e in g["entries"]} for tag, g in gens.items()}
        random, optimised, pgd = (peers.get((m, level)) for m in ("random fields", "optimised fields, 20 steps",
                                                                  "PGD-L2"))
        clean = [v["dice_clean"] for v in random["organs"].values() if v["dice_clean"] is not None]
        default = at.get("default", {}).get(level)
        raw = at.get("raw", {}).get(level)

        def drop(e):
            return "-" if e is None else f"{100 * e['mean_drop']:.1f} %"

        def jac(e):
            r = (e or {}).get("realism") or {}
            return "-" if r.get("jacobian_min") is None else f"{r['jacobian_min']:.2f}..{r['jacobian_max']:.2f}"

        def short(e):
            r = (e or {}).get("realism") or {}
            return "-" if r.get("bias_short_share") is None else f"{100 * r['bias_short_share']:.0f} %"

        ratio = "-" if default is None else f"{default['mean_drop'] / optimised['mean_drop']:.2f}"
        first = first_rho_passing(gens["default"]["entries"]) if "default" in gens else None
        seconds = "-" if "default" not in gens else f"{gens['default']['train_seconds']:.0f} s"
        lines.append(f"| `{name}` | {100 * np.mean(clean):.1f} | {drop(raw)} | {drop(default)} | {drop(random)} | "
                     f"{drop(optimised)} | {drop(pgd)} | {ratio} | {'-' if first is None else f'{first:.2f}'} | "
                     f"{jac(default)} | {jac(random)} | {short(default)} / {short(random)} | {seconds} |")
    return "\n".join(lines)


def write_report(args) -> None:
    sections = [f"## Summary at rho 0.08", "", summary_table(args), ""]
    for name in args.targets:
        if (args.results / f"{name}_peers.json").is_file():
            sections.append(stage_report(args, name))
    text = ["# Targets from elsewhere", "", "Printed by `bench/foreign_targets.py --stages report` from the JSON beside "
            "it. Dice drop per organ in % of the clean Dice on the 15 held-out slices of the real CT; "
            "organs >= 30 %: of the organs the target segments (clean Dice >= 50).", "", *sections]
    (args.results / "foreign.md").write_text("\n".join(text) + "\n")
    say("\n".join(text))


STAGES = {"targets": stage_targets, "probe": stage_probe, "peers": stage_peers, "generator": stage_generator,
          "speed": stage_speed}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", nargs="+", choices=TARGETS + FOLDER_TARGETS, default=list(TARGETS),
                   help=f"default: {' '.join(TARGETS)}; the folder targets {' '.join(FOLDER_TARGETS)} are "
                        "best given --results bench/results/folders")
    p.add_argument("--stages", nargs="+", choices=[*STAGES, "report"],
                   default=["targets", "probe", "peers", "generator", "report"],
                   help="default: every stage but speed (folder targets only)")
    p.add_argument("--rhos", type=lambda s: [float(v) for v in s.split(",")], default=[0.04, 0.06, 0.08, 0.10])
    p.add_argument("--steps", type=int, default=300, help="generator training steps")
    p.add_argument("--set", help="JSON of attack options for the generator stage (variants)")
    p.add_argument("--tag", default="default", help="name of the generator variant")
    p.add_argument("--train-split", default="train", choices=["train", "all"],
                   help="slices the generator trains on: the training ones (default), or every slice of the "
                        "case, as a user attacks a volume (with --set '{\"label_mode\": \"predicted\"}' the "
                        "held-out slices' reference labels then stay unseen; they only score)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "foreign")
    p.add_argument("--peers", nargs="+", choices=["random", "optimised", "pgd"],
                   default=["random", "optimised", "pgd"],
                   help="the peers stage's attacks; a subset reruns those (at --rhos) and keeps the others' entries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3,
                   help="speed stage: times each call is timed, the calls taking turns (the median is reported)")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    for name in args.targets:
        for stage in args.stages:
            if stage in STAGES:
                STAGES[stage](args, name)
    if "report" in args.stages:
        write_report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
