"""A variant of the shipped sample's recipe: `advseg make-sample` with other attack options.

Copies the shipped U-Net into --out, trains a generator there exactly as
`advseg make-sample --reuse-target` does, but with the recipe's options
(``workflows.SAMPLE_ATTACK_OPTIONS``) updated by --set (JSON), and prints the
Table-1 row it writes to ``sample.json``. A variant that is kept becomes
``SAMPLE_ATTACK_OPTIONS`` itself, and `advseg make-sample` then makes it.

    .venv/bin/python bench/sample_recipe.py --out runs/sample_v6a --set '{"bias_rho_max": 0.06}' --threads 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", default="{}", help="JSON of AttackConfig fields to change in the recipe")
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: make-sample's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", type=int, default=50, help="print the training record every N steps")
    args = parser.parse_args()

    import torch

    from napari_advseg import workflows
    from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    # the U-Net only: make-sample writes the phantom volume and labels itself
    shutil.copy(sample_data_dir() / SAMPLE_FILES["target"], args.out / SAMPLE_FILES["target"])
    options = {**workflows.SAMPLE_ATTACK_OPTIONS, **json.loads(args.set)}
    print("options", options, flush=True)
    start = time.time()

    def progress(stage: str, record: dict) -> None:
        step = int(record.get("step", 0))
        if step % args.every == 0:
            values = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
            print(stage, step, f"{time.time() - start:.0f}s", values, flush=True)

    kwargs = {} if args.steps is None else {"attack_steps": args.steps}
    summary = workflows.make_sample_data(args.out, reuse_target=True, attack_options=options, progress=progress,
                                         **kwargs)
    print(summary["table"])
    print("generator training seconds", round(summary["attack_train_seconds"], 1))


if __name__ == "__main__":
    main()
