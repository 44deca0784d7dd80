"""The attack against a 3D network on the real CT: a generator trained against an nnU-Net ``3d_fullres`` folder.

    .venv/bin/python bench/slab_attack.py --steps 30
    .venv/bin/python bench/discontinuity.py --ct runs/bench/real/real_ct.nii.gz \\
        --labels runs/bench/real/real_labels.nii.gz --target <the folder> \\
        --generator runs/bench/folders/nnunet_3d/generator/generator.pt --seeds 0 --picture docs/coronal_3d.png

The folder is ``bench/folder_nets.py``'s ``nnunet_3d`` (trained on the real
CT's slices ``z % 3 != 2``). ``advseg train --split train --steps N`` trains
the generator (slabs of the patch depth, one code per slab, fields smoothed
along z; the held-out slices are input only). Then, on the 15 held-out
slices scored within the whole volume (the 3D network's context): clean
Dice, the generator at its own rho and at each ``--rhos``, random smooth
fields at the same rho (``--samples`` draws each) and with ``--optimised``
the 20-step per-image optimised fields (both smoothed along z as the
generator's are: ``AttackConfig.z_smooth``), with rho, the realism
figures and folds; and the time to sample adversarial volumes
(``foreign_targets.speed_report``: G's fields alone, an adversarial volume
and its segmentation, and the first sample, which segments the clean volume
too) beside one prediction of the clean volume by ``nnUNetPredictor``
(nnU-Net's own inference, no mirroring, set up before the clock starts),
the calls timed in turns, three times each. ``--steps`` beyond an existing generator's
continue its training (``--resume``). Writes
``bench/results/slab_attack.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import folder_nets  # noqa: E402  (the bench's own modules)
import foreign_targets  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30, help="generator training steps")
    p.add_argument("--rhos", type=lambda s: [float(v) for v in s.split(",")], default=[0.08])
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "slab_attack.json")
    p.add_argument("--optimised", action="store_true",
                   help="also the 20-step optimised smooth fields (one draw; about 20 forward and backward passes "
                        "of the 3D network over the whole volume per rho)")
    p.add_argument("--force", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.evaluation.baselines import evaluate_baseline

    folder = folder_nets.folder_of(args.work, "nnunet_3d")
    if not (folder / "training.json").is_file():
        raise SystemExit(f"{folder} is not trained: run bench/folder_nets.py --nets nnunet_3d")
    ct, labels = foreign_targets.data_files(args.work)
    out = folder.parents[1] / "generator"
    command = [sys.executable, "-m", "napari_advseg.cli", "train", "--ct", str(ct), "--labels", str(labels),
               "--target", str(folder), "--split", "train", "--steps", str(args.steps), "--out", str(out),
               "--device", "cpu", "--threads", "1", "--quiet"]
    train_seconds = None
    trained = json.loads((out / "config.json").read_text()).get("steps", 0) if (out / "config.json").is_file() else 0
    if args.force or not (out / "generator.pt").is_file():
        train_seconds, _ = foreign_targets.run_train(command, "nnunet_3d")
    elif trained < args.steps:  # continue the generator there to --steps in all
        train_seconds, _ = foreign_targets.run_train(command + ["--resume", str(out / "generator.pt")], "nnunet_3d")
    fargs = argparse.Namespace(work=args.work)
    target, case = foreign_targets.load(fargs, "nnunet_3d")
    generator, config, _ = load_generator(out / "generator.pt", "cpu", target=target)
    volumes = [foreign_targets.held_out(target, case)]
    fn = functools.partial(generator_attack, generator=generator, config=config)
    fn.__name__ = "generator"  # type: ignore[attr-defined]
    entries = []
    peers = [("generator", fn, [None, *args.rhos], args.samples),
             ("random fields", "random_fields", args.rhos, args.samples),
             ("optimised fields, 20 steps", "optimised_fields_20", args.rhos, 1)]
    for label, attack, rhos, samples in peers[:3 if args.optimised else 2]:
        for rho in rhos:
            start = time.perf_counter()
            report = evaluate_baseline(attack, target, volumes, rho, samples=samples, seed=0)
            entries.append(foreign_targets.entry(label, rho, report))
            e = entries[-1]
            say(f"{label} at rho {'own' if rho is None else rho} ({e['rho']:.3f}): mean drop "
                f"{100 * e['mean_drop']:.1f} %, {e['organs_passed']}/{e['organs_scored']} organs >= 30 %, "
                + ", ".join(f"{k} {100 * v['drop']:.0f} %" for k, v in e["organs"].items() if v["drop"] is not None)
                + f"; realism {json.dumps(e['realism'])} ({time.perf_counter() - start:.0f} s)")
    timing = foreign_targets.speed_report(generator, config, target, case,
                                          foreign_targets.framework_predictor(fargs, "nnunet_3d", case))
    say(foreign_targets.speed_line(timing, "nnUNetPredictor on the clean volume"))
    payload = {"folder": str(folder), "command": "advseg " + " ".join(command[3:]),
               "train_seconds": train_seconds, "config": config.to_dict(), "entries": entries, "speed": timing,
               "threads": 1, "volume": list(case.volume.shape)}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    say(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
