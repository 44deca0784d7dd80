"""One generator variant, trained briefly in-process against a bench target, and its mean Dice drop.

    .venv/bin/python bench/attack_variant.py monai_unet 80 '{"attack_sensitivity": 500}'
    .venv/bin/python bench/attack_variant.py monai_unet 1000 '{}' 200     # also evaluated every 200 steps

Arguments: a target of ``bench/foreign_targets.py`` (``own_unet``,
``monai_unet``, ``monai_segresnet``, ``nnunet_plain``; they must exist), the
generator steps, and a JSON object of ``AttackConfig`` options over the
defaults. Trains on the real CT's training slices (``z % 3 != 2``) as
``advseg train --split train`` does, prints the attack CE every 20 steps, then
the mean Dice drop (and per organ, and the realism figures) on the 15 held-out
slices, 2 samples each, at the generator's own rho and at rho 0.08 (with a
fourth argument K, also every K steps during training). Nothing is
written: a quick comparison of options (the figures of the CHANGELOG's
"the attack breaks networks trained elsewhere").
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.attack.trainer import AttackTrainer
    from napari_advseg.data.cases import load_case
    from napari_advseg.models.target_load import load_target

    name, steps, options = argv[0], int(argv[1]), json.loads(argv[2] if len(argv) > 2 else "{}")
    every = int(argv[3]) if len(argv) > 3 else steps
    work = ROOT / "runs" / "bench"
    path = work / "real" / "unet.pt" if name == "own_unet" else work / "foreign" / name / "model.pt"
    target = load_target(path, "cpu")
    case = load_case(work / "real" / "real_ct.nii.gz", work / "real" / "real_labels.nii.gz", target.normalisation,
                     target.class_names)
    images, labels, _ = case.part("train")
    test_images, test_labels, _ = case.part("test")
    config = AttackConfig(**{**AttackConfig().to_dict(), "steps": steps, **options})
    trainer = AttackTrainer(config, target, images, labels, "cpu")
    start, ces = time.time(), []
    for metrics in trainer.run():
        ces.append(metrics["attack_ce"])
        if metrics["step"] % 20 == 0:
            print(f"step {int(metrics['step'])}: attack CE (mean of 20) {np.mean(ces[-20:]):.3f}, "
                  f"rho {metrics['rho']:.3f}, {time.time() - start:.0f} s", flush=True)
        if metrics["step"] % every == 0 or metrics["step"] == steps:
            label = f"{name} {json.dumps(options)} step {trainer.step_count}"
            evaluate(trainer, target, test_images, test_labels, label)
            trainer.generator.train()
    return 0


def evaluate(trainer, target, images, labels, label: str) -> None:
    """The mean Dice drop (per organ, and the realism figures) at the generator's own rho and at rho 0.08."""
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.evaluation.baselines import evaluate_baseline

    attack = functools.partial(generator_attack, generator=trainer.generator.eval(), config=trainer.config)
    attack.__name__ = "generator"  # type: ignore[attr-defined]
    for rho in (None, 0.08):
        report = evaluate_baseline(attack, target, [(images, labels)], rho, samples=2, seed=0)
        drops = {k: round(100 * v["drop"]) for k, v in report["organs"].items() if v["drop"] is not None}
        print(f"{label} at rho {'own' if rho is None else rho} ({report['rho']:.3f}): "
              f"mean drop {100 * report['mean_drop']:.1f} %, {drops}, realism {report.get('realism')}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
