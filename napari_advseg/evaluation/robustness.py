"""The robustness report: how far each network's Dice falls under five kinds of attack at set strengths.

For each network, on held-out slices: the clean Dice per organ, and the Dice
under

(a) ``hardening_generator``: the generator it was hardened with (the last
    round's, for the adversarial game), or the ``attacker`` given for a
    network that was not hardened;
(b) ``new_generator``: a generator trained from scratch against it (kept in
    ``work_dir`` and resumed/reused by the network's SHA-256, so a stopped
    report loses nothing);
(c) ``random_fields``: random smooth deformation and bias fields;
(d) ``optimised_fields_20``: smooth fields optimised per image (20 steps);
(e) ``pgd_l2``: PGD on the intensities, L2 ball,

each at every rho of ``rhos`` (Eq. 7, every slice scaled to exactly that rho).
:func:`write_robustness` writes ``robustness.json``, ``robustness.md`` and
``robustness.png`` (mean Dice against rho, one panel per network).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_advseg.errors import AdvsegError
from napari_advseg.io.atomic import atomic_write, file_sha256
from napari_advseg.io.json_write import write_json
from napari_advseg.models.folder_targets import weights_sha256

ROBUSTNESS_ATTACKS = {
    "hardening_generator": "(a) generator it was hardened with",
    "new_generator": "(b) new generator trained against it",
    "random_fields": "(c) random smooth fields",
    "optimised_fields_20": "(d) per-image optimised fields, 20 steps",
    "pgd_l2": "(e) PGD-L2, 20 steps",
}
"""Key -> description of the attacks of the report, in its order."""
ROBUSTNESS_FILES = {"json": "robustness.json", "markdown": "robustness.md", "png": "robustness.png"}


def hardening_generator_of(target, attacker: str | os.PathLike | None) -> tuple[str | None, str]:
    """(generator path or None, where it comes from) for attack (a).

    A network hardened with a generator is attacked by the last one it met
    (the last round's with the adversarial game); a network hardened without
    one (a baseline) or not hardened at all, by ``attacker``.
    """
    record = (target.metrics or {}).get("hardening") or {}
    if record.get("generator"):
        key = "final_generator" if record.get("final_generator") else "generator"
        entry = record[key]
        path = entry.get("path")
        if not path or not Path(path).is_file():
            return None, f"the file of the generator it was hardened with is missing ({path})"
        if entry.get("sha256") and file_sha256(path) != entry["sha256"]:
            return None, f"{path} changed since hardening (SHA-256 differs)"
        return path, f"hardening record ({key})"
    if attacker is not None:
        why = "hardened without a generator" if record else "not hardened"
        return str(attacker), f"the attacker given ({why})"
    return None, "no hardening generator and no attacker given"


def network_name(target, taken: set[str]) -> str:
    name = Path(target.path).stem if target.path else "network"
    unique, k = name, 2
    while unique in taken:
        unique, k = f"{name}-{k}", k + 1
    taken.add(unique)
    return unique


def new_generator(target, name: str, train: tuple[Any, Any], work_dir: str | os.PathLike, *, steps: int,
                  seed: int, device: str, sha256: str | None, config=None,
                  progress: Callable[[dict], None] | None = None) -> str:
    """Train (or resume, or reuse) a generator from scratch against ``target``; its checkpoint path.

    ``sha256``: the target file's (None for an in-memory network); it keys the folder the generator is kept in.
    """
    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.attack.checkpoint import load_checkpoint
    from napari_advseg.attack.training import train_generator

    folder = Path(work_dir) / f"{name}-{sha256[:12] if sha256 else 'memory'}"
    checkpoint = folder / "generator.pt"
    resume = None
    if checkpoint.is_file():
        done = int(load_checkpoint(checkpoint)["step"])
        if done >= steps:
            return str(checkpoint)
        resume = checkpoint
    config = (config or AttackConfig()).replace(steps=steps, seed=seed)
    train_generator(config, target, train[0], train[1], folder, device=device, resume=resume, steps=steps,
                    checkpoint_every=25, progress=progress, scored=_scored(train))
    return str(checkpoint)


def _scored(part: tuple) -> Any:
    """The slices to score of a ``(images, labels[, scored])`` part (None: all; see
    :func:`~napari_advseg.attack.apply.slices_to_run`)."""
    return part[2] if len(part) > 2 else None


def _attack_row(report: dict[str, Any]) -> dict[str, Any]:
    dice = {organ: row["dice_adv"] for organ, row in report["organs"].items()}
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values()))) if dice else math.nan,
            "mean_drop": report["mean_drop"], "rho_measured": report["rho"],
            "fold_fraction": report["fold_fraction"]}


def network_robustness(target, test: tuple[Any, Any], *, rhos: Sequence[float], generators: dict[str, str | None],
                       samples: int = 2, seed: int = 0, progress: Callable[[str], None] | None = None
                       ) -> dict[str, Any]:
    """One network's entry: clean Dice and every attack at every rho (``generators``: (a)/(b) paths)."""
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.evaluation.baselines import evaluate_baseline

    volumes = [(np.asarray(test[0], dtype=np.float32), np.asarray(test[1]), _scored(test))]
    attacks: dict[str, Any] = {}
    clean: dict[str, float] | None = None
    for key in ROBUSTNESS_ATTACKS:
        if key in generators:
            path = generators[key]
            if path is None:
                attacks[key] = {"skipped": "no generator"}
                continue
            generator, config, _ = load_generator(path, target.device, target=target)
            attack: Any = functools.partial(generator_attack, generator=generator, config=config)
            entry: dict[str, Any] = {"generator": path, "rhos": {}}
        else:
            attack, entry = key, {"rhos": {}}
        for rho in rhos:
            if progress is not None:
                progress(f"{key} at rho {rho:g}")
            report = evaluate_baseline(attack, target, volumes, rho, samples=samples, seed=seed)
            entry["rhos"][f"{rho:g}"] = _attack_row(report)
            if clean is None:
                clean = {organ: row["dice_clean"] for organ, row in report["organs"].items()}
        attacks[key] = entry
    clean = clean or {}
    return {"clean": clean, "clean_mean": float(np.mean(list(clean.values()))) if clean else math.nan,
            "attacks": attacks}


def robustness_report(targets: Sequence[Any], train: tuple[Any, Any], test: tuple[Any, Any], *,
                      rhos: Sequence[float] = (0.04, 0.08), attacker: str | os.PathLike | None = None,
                      new_generator_steps: int = 200, samples: int = 2, seed: int = 0,
                      work_dir: str | os.PathLike = "robustness-work", device: str = "auto",
                      progress: Callable[[str, dict | None], None] | None = None) -> dict[str, Any]:
    """The report of every network (see the module docstring); ``progress(message, generator_metrics)``."""
    rhos = [float(r) for r in rhos]
    if not rhos or min(rhos) <= 0:
        raise AdvsegError(f"rhos must be positive numbers, got {rhos}")
    if not targets:
        raise AdvsegError("the robustness report needs at least one --target")
    names: set[str] = set()
    networks = []
    say = (lambda message, metrics=None: progress(message, metrics)) if progress else (lambda *a: None)
    for target in targets:
        name = network_name(target, names)
        sha256 = weights_sha256(target.path)
        path_a, source_a = hardening_generator_of(target, attacker)
        path_b = None
        if new_generator_steps > 0:  # 0: attack (b) is left out, not run with an untrained generator
            say(f"{name}: training a new generator ({new_generator_steps} steps)")
            path_b = new_generator(target, name, train, work_dir, steps=new_generator_steps, seed=seed,
                                   device=device, sha256=sha256,
                                   progress=lambda m: say(f"{name}: new generator", m))
        entry = network_robustness(target, test, rhos=rhos, samples=samples, seed=seed,
                                   generators={"hardening_generator": path_a, "new_generator": path_b},
                                   progress=lambda message: say(f"{name}: {message}"))
        if path_b is None:
            entry["attacks"]["new_generator"] = {"skipped": "not trained (new generator steps 0)"}
        entry["attacks"]["hardening_generator"]["source"] = source_a
        hardening = (target.metrics or {}).get("hardening") or {}
        networks.append({"name": name, "path": target.path,
                         "sha256": sha256,
                         "hardening": ({"method": hardening["config"]["method"], "steps": hardening["step"],
                                        "rounds": hardening["config"]["rounds"],
                                        "seconds": hardening.get("train_seconds")} if hardening else None),
                         **entry})
    scored = _scored(test)
    return {"rhos": rhos, "samples": samples, "seed": seed,
            "slices": int(len(test[0]) if scored is None else len(scored)),
            "new_generator_steps": new_generator_steps, "attacks": dict(ROBUSTNESS_ATTACKS), "networks": networks}


def _percent(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def format_robustness(report: dict[str, Any]) -> str:
    """The report as Markdown: a summary of mean Dice, then one per-organ table per network."""
    rhos = [f"{r:g}" for r in report["rhos"]]
    head = ["network", "hardening", "clean"] + [f"{label.split(' ')[0]} rho {r}"
                                                for label in ROBUSTNESS_ATTACKS.values() for r in rhos]
    lines = [f"Mean Dice over organs (%), {report['slices']} held-out slices, {report['samples']} sample(s) per "
             "slice; attacks: " + "; ".join(ROBUSTNESS_ATTACKS.values()) + ".", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for net in report["networks"]:
        hardening = net["hardening"]
        how = f"{hardening['method']}, {hardening['steps']} steps" if hardening else "original"
        cells = [net["name"], how, _percent(net["clean_mean"])]
        for key in ROBUSTNESS_ATTACKS:
            rows = net["attacks"][key].get("rhos", {})
            cells += [_percent(rows[r]["mean_dice"]) if r in rows else "-" for r in rhos]
        lines.append("| " + " | ".join(cells) + " |")
    for net in report["networks"]:
        organs = list(net["clean"])
        lines += ["", f"### {net['name']} ({net['path']})", "",
                  "| attack | rho | " + " | ".join(organs) + " | mean | mean drop |",
                  "|" + " --- |" * (len(organs) + 4),
                  "| clean | 0 | " + " | ".join(_percent(net["clean"][o]) for o in organs)
                  + f" | {_percent(net['clean_mean'])} | |"]
        for key, label in ROBUSTNESS_ATTACKS.items():
            attack = net["attacks"][key]
            if "skipped" in attack:
                lines.append(f"| {label} | - | skipped: {attack['skipped']} |")
                continue
            for r, row in attack["rhos"].items():
                lines.append(f"| {label} | {r} | " + " | ".join(_percent(row["dice"].get(o)) for o in organs)
                             + f" | {_percent(row['mean_dice'])} | {_percent(row['mean_drop'])} % |")
    return "\n".join(lines)


def draw_robustness(report: dict[str, Any]):
    """A matplotlib Figure: mean Dice against rho, one panel per network, one line per attack."""
    from matplotlib.figure import Figure

    networks = report["networks"]
    figure = Figure(figsize=(max(6.0, 3.6 * len(networks)), 4.2), layout="constrained")
    axes = figure.subplots(1, len(networks), sharey=True, squeeze=False)[0]
    for ax, net in zip(axes, networks):
        for key, label in ROBUSTNESS_ATTACKS.items():
            rows = net["attacks"][key].get("rhos")
            if not rows:
                continue
            xs = [0.0] + [float(r) for r in rows]
            ys = [100 * net["clean_mean"]] + [100 * row["mean_dice"] for row in rows.values()]
            ax.plot(xs, ys, marker="o", label=label)
        ax.set_title(net["name"], fontsize=10)
        ax.set_xlabel("rho (Eq. 7)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean Dice over organs (%)")
    axes[0].set_ylim(0, 100)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)) or 1, fontsize=8)
    return figure


def write_robustness(out_dir: str | os.PathLike, report: dict[str, Any]) -> dict[str, Path]:
    """Write ``robustness.json``, ``.md`` and ``.png`` (atomically) into ``out_dir``; their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / name for kind, name in ROBUSTNESS_FILES.items()}
    write_json(paths["json"], report)
    markdown = format_robustness(report)
    atomic_write(paths["markdown"], lambda tmp: tmp.write_text(markdown + "\n"))
    figure = draw_robustness(report)
    atomic_write(paths["png"], lambda tmp: figure.savefig(tmp, format="png", dpi=110))
    return paths
