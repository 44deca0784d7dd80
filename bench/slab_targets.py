"""3D networks as slab targets: agreement with the volume prediction, and a few training steps.

    .venv/bin/python bench/slab_targets.py [--steps 30] [--real FOLDER]

1. Agreement: the tests' tiny nnU-Net ``3d_fullres`` folder and 3D MONAI
   bundles (window before ``Orientationd``/``Spacingd``, and the model zoo's
   order with ``Spacingd`` first, which the loader refuses) on the tests'
   synthetic volume: the share of voxels where the slab target's argmax on
   the whole volume as one slab equals :func:`load_volume_target`'s.
2. Training: ``AttackTrainer`` against a tiny ``3d_fullres`` folder (plans at
   the phantom's 5 x 3 x 3 mm, a 4-slice patch) on a phantom volume, ``--split
   train`` as the CLI does it (held-out slices input only); the attack CE and
   rho every few steps.
3. ``--real FOLDER``: the same agreement for a trained ``3d_fullres`` folder on
   the real CT (``runs/bench/real/real_ct.nii.gz``).

Prints the figures and writes ``bench/results/slab_targets.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from folder_helpers import bundle_config, nnunet_plans, synthetic_ct, write_monai_bundle, write_nnunet_folder  # noqa: E402

from napari_advseg.data.intensity import scale_for  # noqa: E402
from napari_advseg.errors import AdvsegError  # noqa: E402
from napari_advseg.io.geometry import volume_from_array  # noqa: E402
from napari_advseg.models.folder_targets import fit_target_to_volume, load_volume_target  # noqa: E402
from napari_advseg.models.target_load import load_target  # noqa: E402

WINDOW = {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -175, "a_max": 250, "b_min": 0.0,
          "b_max": 1.0, "clip": True}
GEOMETRY = [{"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"}]
LOAD = [{"_target_": "LoadImaged", "keys": "image"}]


def agreement(folder: Path, hu: np.ndarray, volume) -> dict:
    """Share of voxels (%) where the slab target on the whole volume agrees with the volume prediction."""
    volume_target = load_volume_target(folder, "cpu")
    with torch.no_grad():
        reference = volume_target(torch.tensor(hu), volume).argmax(0).numpy()
    try:
        target = load_target(folder, "cpu")
    except AdvsegError as error:
        return {"refused": str(error).split(": ", 1)[-1][:120]}
    fit_target_to_volume(target, volume)
    x = torch.tensor(scale_for(hu, target.normalisation).apply(hu))[:, None]
    start = time.perf_counter()
    with torch.no_grad():
        ours = target(x).argmax(1).numpy()
    return {"agreement_percent": float(100 * (ours == reference).mean()), "slab_depth": target.slab_depth,
            "classes_predicted": int(len(np.unique(reference))), "seconds": time.perf_counter() - start}


def bundle_order_agreement(root: Path, transforms: list, hu, volume, roi) -> dict:
    """:func:`agreement` of a bundle that runs the window-first preprocessing ``transforms``, or its refusal."""
    folder = write_monai_bundle(root, config=bundle_config(roi=roi, transforms=LOAD + transforms))
    out = agreement(folder, hu, volume)
    if "refused" in out:  # the volume prediction alone, for the figure the loader refuses on
        from napari_advseg.models.folder_targets import MonaiSlab

        volume_target = load_volume_target(folder, "cpu")
        slab = MonaiSlab(volume_target.source)
        slab.set_affine(volume.affine)
        x = torch.tensor(scale_for(hu, {"mode": "window", "window": [-175.0, 250.0], "range": [0.0, 1.0]})
                         .apply(hu))[:, None]
        with torch.no_grad():
            ours = slab(x).argmax(1).numpy()
            reference = volume_target(torch.tensor(hu), volume).argmax(0).numpy()
        out["agreement_percent_if_windowed_first"] = float(100 * (ours == reference).mean())
    return out


def training(root: Path, steps: int) -> list[dict]:
    from napari_advseg.attack.apply import slices_to_run
    from napari_advseg.attack.config import AttackConfig
    from napari_advseg.attack.trainer import AttackTrainer
    from napari_advseg.data.cases import make_case
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.data.slices import split_slices

    phantom = make_phantom(3, (18, 64, 64))
    volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
    folder = write_nnunet_folder(root, "3d_fullres", plans=nnunet_plans(spacing_3d=(5.0, 3.0, 3.0),
                                                                        patch_3d=(4, 32, 32)))
    target = load_target(folder, "cpu")
    case = make_case(volume, None, target.normalisation)
    fit_target_to_volume(target, volume)
    images, _, scored = slices_to_run(target, case.images, None, split_slices(volume.n_slices, "train"))
    config = AttackConfig(steps=steps, critic_steps=2, base_channels=8, critic_channels=8, seed=0)
    trainer = AttackTrainer(config, target, images, None, "cpu", scored)
    rows = []
    for metrics in trainer.run():
        if metrics["step"] == 1 or metrics["step"] % 5 == 0:
            rows.append({k: float(metrics[k]) for k in ("step", "attack_ce", "rho", "seconds")})
            print(f"  step {int(metrics['step'])}: attack CE {metrics['attack_ce']:.3f}, rho {metrics['rho']:.3f}, "
                  f"{metrics['seconds']:.2f} s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--real", type=Path, help="a trained 3d_fullres folder to check on the real CT")
    parser.add_argument("--real-ct", type=Path, default=ROOT / "runs" / "bench" / "real" / "real_ct.nii.gz",
                        help="the real CT (default runs/bench/real/real_ct.nii.gz)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="slab_targets_"))
    hu = synthetic_ct()
    volume = volume_from_array(hu, (2.5, 1.2, 1.1))
    results: dict = {"agreement": {}}
    results["agreement"]["nnunet_3d_fullres"] = agreement(write_nnunet_folder(root / "n", "3d_fullres"), hu, volume)
    results["agreement"]["monai_window_first"] = bundle_order_agreement(root / "w", [WINDOW, *GEOMETRY], hu, volume,
                                                                        (32, 32, 16))
    results["agreement"]["monai_spacing_first"] = bundle_order_agreement(root / "s", [*GEOMETRY, WINDOW], hu, volume,
                                                                         (32, 32, 16))
    for name, row in results["agreement"].items():
        print(f"{name}: {row}", flush=True)
    if args.real is not None:
        from napari_advseg.io.nifti import load_ct

        real = load_ct(args.real_ct)
        results["agreement"]["real_ct"] = agreement(args.real, real.hu, real)
        print(f"real CT ({args.real}): {results['agreement']['real_ct']}", flush=True)
    print(f"training, {args.steps} steps:", flush=True)
    results["training"] = training(root / "t", args.steps)
    out = ROOT / "bench" / "results" / "slab_targets.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
