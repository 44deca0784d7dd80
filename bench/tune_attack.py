"""Train the sample U-Net once, then several attack configurations, and print the Table-1 rows of each.

A development tool for choosing defaults (run it where compute is cheap, e.g.
``--device cuda``); the shipped sample is made by ``advseg make-sample``.

    python bench/tune_attack.py --device cuda --unet-steps 1500 --steps 600 \
        --configs '{}' '{"lambda_rho": 10}'
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.data.cases import phantom_case
from napari_advseg.evaluation.report import format_table
from napari_advseg.models.target_load import load_target
from napari_advseg.attack.training import train_generator
from napari_advseg.workflows import evaluate_case, phantom_training_data, train_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--unet-steps", type=int, default=1500)
    parser.add_argument("--unet-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", default="runs/tune")
    parser.add_argument("--target", default=None, help="reuse a trained target instead of training one")
    parser.add_argument("--configs", nargs="+", default=["{}"], help="JSON dicts of AttackConfig changes")
    args = parser.parse_args()
    normalisation = {"mode": "zscore"}
    test = phantom_case(0, normalisation)
    images, labels = phantom_training_data(normalisation)
    target_path = args.target
    if target_path is None:
        target_path = f"{args.out}/unet.pt"
        start = time.perf_counter()
        metrics = train_target(images, labels, test.images, test.labels, target_path, normalisation=normalisation,
                               steps=args.unet_steps, batch_size=args.unet_batch, device=args.device)
        print(f"U-Net {time.perf_counter() - start:.0f} s, test Dice", json.dumps(metrics["test_dice"]), flush=True)
    target = load_target(target_path, args.device)
    rows = []
    for i, changes in enumerate(args.configs):
        config = AttackConfig(steps=args.steps).replace(**json.loads(changes))
        start = time.perf_counter()
        trainer, _ = train_generator(config, target, images, labels, f"{args.out}/cfg{i}", device=args.device,
                                  checkpoint_every=0)
        seconds = time.perf_counter() - start
        report = evaluate_case(trainer.generator.eval(), config, target, test, samples=2)
        last = trainer.history[-1]
        print(f"cfg{i} {changes}: {seconds:.0f} s, last CE {last['attack_ce']:.2f} rho {last['rho']:.3f} "
              f"W {last['wasserstein']:.3f}", flush=True)
        rows.append((f"cfg{i}", report))
        print(format_table(rows[-1:]), flush=True)
    print(format_table(rows))


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
