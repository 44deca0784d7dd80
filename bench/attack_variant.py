"""One generator variant, trained in-process against a bench target, and its mean Dice drop as it trains.

    .venv/bin/python bench/attack_variant.py monai_unet 80 '{"attack_sensitivity": 500}'
    .venv/bin/python bench/attack_variant.py monai_unet 1000 '{}' 200     # also evaluated every 200 steps
    .venv/bin/python bench/attack_variant.py monai_2d 1000 '{}' 200 --rhos 0.08,0.10 --samples 4 \\
        --out bench/results/folders/monai_2d_curve_defaults.json

Arguments: a target of ``bench/foreign_targets.py`` (``own_unet``,
``monai_unet``, ``monai_segresnet``, ``nnunet_plain``, or a folder target
``monai_2d``, ``nnunet_2d``; they must exist), the generator steps, a JSON
object of ``AttackConfig`` options over the defaults, and optionally K: also
evaluate every K steps during training. Trains on the real CT's training
slices (``z % 3 != 2``) as ``advseg train --split train`` does (``--train-split
all``: on every slice, as ``advseg train`` does by default), prints the attack
CE every 20 steps, then the mean Dice drop (per organ, the organs that pass
30 %, and the realism figures) on the 15 held-out slices at the generator's
own rho and at each rho of ``--rhos``.

``--out`` writes every evaluation as JSON (``bench/foreign_targets.py``'s
entries, with the step and the seconds of training so far); ``--keep DIR``
also keeps the generator's checkpoint at each evaluation
(``DIR/step_<N>.pt``), for ``advseg sample`` or ``bench/generalisation_gap.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import foreign_targets  # noqa: E402  (the bench's own module)

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=foreign_targets.TARGETS + foreign_targets.FOLDER_TARGETS)
    p.add_argument("steps", type=int)
    p.add_argument("options", nargs="?", default="{}", help="JSON of AttackConfig options over the defaults")
    p.add_argument("every", nargs="?", type=int, default=0, help="also evaluate every that many steps")
    p.add_argument("--rhos", type=lambda s: [float(v) for v in s.split(",")], default=[0.08])
    p.add_argument("--samples", type=int, default=2, help="draws per held-out slice")
    p.add_argument("--train-split", default="train", choices=["train", "all"])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    p.add_argument("--out", type=Path, help="write the evaluations here as JSON")
    p.add_argument("--keep", type=Path, help="keep the checkpoint of each evaluation in this folder")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.attack.trainer import AttackTrainer

    args = parse(argv)
    options = json.loads(args.options)
    target, case = foreign_targets.load(args, args.name)
    images, labels, _ = case.part(args.train_split)
    held_out = foreign_targets.held_out(target, case)
    config = AttackConfig(**{**AttackConfig().to_dict(), "steps": args.steps, **options})
    trainer = AttackTrainer(config, target, images, labels, "cpu")
    every = args.every or args.steps
    start, evaluating, ces, evaluations = time.time(), 0.0, [], []  # evaluating: seconds not spent training
    for metrics in trainer.run():
        ces.append(metrics["attack_ce"])
        seconds = time.time() - start - evaluating
        if metrics["step"] % 20 == 0:
            print(f"step {int(metrics['step'])}: attack CE (mean of 20) {np.mean(ces[-20:]):.3f}, "
                  f"rho {metrics['rho']:.3f}, {seconds:.0f} s", flush=True)
        if trainer.step_count % every == 0 or trainer.step_count == args.steps:
            paused = time.time()
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                trainer.save_checkpoint(args.keep / f"step_{trainer.step_count}.pt")
            label = f"{args.name} {json.dumps(options)} step {trainer.step_count}"
            entries = foreign_targets.generator_entries(trainer.generator.eval(), trainer.config, target, [held_out],
                                                        args.rhos, args.samples, 0, label)
            evaluations.append({"step": trainer.step_count, "train_seconds": round(seconds, 1), "entries": entries})
            if args.out is not None:
                foreign_targets.write_json(args.out, {
                    "target": args.name, "options": options, "train_split": args.train_split,
                    "command": "bench/attack_variant.py " + " ".join(argv), "config": trainer.config.to_dict(),
                    "evaluations": evaluations})
            trainer.generator.train()
            evaluating += time.time() - paused
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
