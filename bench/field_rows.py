"""Table-1 rows of one gamma with both fields, phi only and b only, on the benchmark's real CT.

Trains (unless the checkpoint exists) one generator per row on the training
slices (z % 3 != 2) of the real CT prepared by ``bench/attack_benchmark.py``
(``runs/bench/real/``: CT, labels and its U-Net), with ``AttackConfig``'s
defaults and the given overrides, then evaluates each on the test slices
(z % 3 == 2, 4 samples per slice) and prints Table 1 with rho (Eq. 7) and the
folding fraction, and beside them the deformation's own figures: the mean and
99th-percentile displacement on organ pixels (px and mm) and the smallest
Jacobian determinant.

    .venv/bin/python bench/field_rows.py --out runs/bench/real/fields          # train and evaluate
    .venv/bin/python bench/field_rows.py --out DIR --set '{"lambda_rho": 0}'   # overrides for every row
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL = ROOT / "runs" / "bench" / "real"
ROWS = (("both fields", "both"), ("phi only", "phi"), ("b only", "bias"))


def train_row(path: Path, config, target, images, labels) -> float:
    from napari_advseg.attack.trainer import AttackTrainer

    trainer = AttackTrainer(config, target, images, labels, device="cpu")
    start = time.perf_counter()
    for metrics in trainer.run(checkpoint_path=path, checkpoint_every=50):
        if metrics["step"] % 50 == 0:
            print(f"  step {metrics['step']}: attack CE {metrics['attack_ce']:.2f}, rho {metrics['rho']:.3f}",
                  flush=True)
    return time.perf_counter() - start


def deformation_figures(generator, config, target, case, seed: int = 0) -> dict:
    """Displacement on organ pixels (mean, 99th percentile; px and mm) and the smallest Jacobian determinant."""
    import torch

    from napari_advseg.attack.apply import attack_slices
    from napari_advseg.attack.fields import jacobian_determinant

    images, labels, _ = case.part("test")
    rng = torch.Generator().manual_seed(seed)
    lengths, det_min = [], np.inf
    for batch in attack_slices(generator, config, target, images, labels, rng=rng):
        organ = torch.as_tensor(np.asarray(labels[batch.start:batch.start + len(batch.rho)])) > 0
        lengths.append(batch.displacement.norm(dim=1)[organ].numpy())
        det_min = min(det_min, float(jacobian_determinant(batch.displacement).min()))
    length = np.concatenate(lengths) if lengths else np.zeros(1)
    mm = float(np.mean(case.volume.spacing[1:]))
    return {"displacement_mean_px": float(length.mean()), "displacement_p99_px": float(np.percentile(length, 99)),
            "displacement_mean_mm": float(length.mean() * mm), "displacement_p99_mm":
            float(np.percentile(length, 99) * mm), "jacobian_min": det_min}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REAL / "fields", help="checkpoints and rows.json")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--gamma", type=float, default=3.0)
    parser.add_argument("--set", default="{}", help="JSON of AttackConfig overrides for every row")
    parser.add_argument("--rows", nargs="+", default=[f for _, f in ROWS], choices=[f for _, f in ROWS])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.data.cases import load_case
    from napari_advseg.evaluation.report import format_table
    from napari_advseg.models.target_load import load_target
    from napari_advseg.workflows import evaluate_case

    torch.set_num_threads(args.threads)
    if not (REAL / "unet.pt").is_file():
        raise SystemExit(f"{REAL / 'unet.pt'} is missing: run bench/attack_benchmark.py --data real --stages target")
    target = load_target(REAL / "unet.pt", "cpu")
    case = load_case(REAL / "real_ct.nii.gz", REAL / "real_labels.nii.gz", target.normalisation)
    images, labels, _ = case.part("train")
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = json.loads(args.set)
    table_rows, payload = [], []
    for label, fields in ROWS:
        if fields not in args.rows:
            continue
        path = args.out / f"{fields}.pt"
        seconds = None
        if not path.is_file():
            config = AttackConfig(**{"steps": args.steps, "gamma": args.gamma, **overrides, "fields": fields})
            print(f"[{label}] training {args.steps} steps", flush=True)
            seconds = train_row(path, config, target, images, labels)
        generator, config, _ = load_generator(path, "cpu")
        report = evaluate_case(generator, config, target, case, part="test", samples=4, seed=0)
        report.update(deformation_figures(generator, config, target, case))
        report["train_seconds"] = seconds
        table_rows.append((f"{label} (gamma {config.gamma:g})", report))
        payload.append({"row": label, "checkpoint": str(path), "config": config.to_dict(), **report})
    print(format_table(table_rows))
    print()
    print("| row | displacement on organs, mean / 99th pct (px) | (mm) | smallest det J |")
    print("| --- | --- | --- | --- |")
    for label, report in table_rows:
        print(f"| {label} | {report['displacement_mean_px']:.2f} / {report['displacement_p99_px']:.2f} | "
              f"{report['displacement_mean_mm']:.1f} / {report['displacement_p99_mm']:.1f} | "
              f"{report['jacobian_min']:.2f} |")
    (args.out / "rows.json").write_text(json.dumps(payload, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
