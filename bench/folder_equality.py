"""Folder targets against their frameworks on the real CT: nnU-Net's predictor and a MONAI bundle's own inference.

    .venv/bin/python bench/folder_equality.py

Writes tiny nnU-Net v2 folders (``3d_fullres`` and ``2d``; seeded random
networks of the tests' layout, the CT scheme fitted on the CT's labelled
voxels, target spacings that make both resample) and a tiny MONAI bundle
(``Orientationd`` RAS, ``Spacingd``, ``ScaleIntensityRanged``, Gaussian
sliding window) under ``runs/bench/folder_equality/``, then predicts the real
CT (``../shared/data/abdomen_ct/ct.nii.gz``, the slices that hold organs)
twice each:

- the framework's own way: ``nnUNetPredictor.predict_single_npy_array`` on the
  file as SimpleITK reads it (nnU-Net's own reader), and the bundle's
  ``preprocessing``, ``inferer`` and ``postprocessing`` on the slices written
  as a NIfTI file;
- the project's way: :func:`napari_advseg.models.folder_targets.load_volume_target`
  on the canonical volume of :func:`napari_advseg.io.nifti.load_ct`, with
  gradients on.

Prints and writes (``bench/results/folder_equality.json``) the Dice per class
between the two segmentations and the share of voxels that agree. Needs
nnunetv2, dynamic-network-architectures and MONAI (``scripts/setup.sh``
installs them).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import folder_helpers  # noqa: E402  (the tests' fixture writers)

CT = ROOT.parent / "shared" / "data" / "abdomen_ct" / "ct.nii.gz"
LABELS = CT.with_name("labels.nii.gz")
OUT = ROOT / "runs" / "bench" / "folder_equality"
RESULTS = ROOT / "bench" / "results" / "folder_equality.json"


def dice(a: np.ndarray, b: np.ndarray, c: int) -> float | None:
    both = int((a == c).sum() + (b == c).sum())
    return None if both == 0 else float(2 * ((a == c) & (b == c)).sum() / both)


def compare(ours: np.ndarray, theirs: np.ndarray, names) -> dict:
    return {"agreement": float((ours == theirs).mean()),
            "voxels_per_class": [int((theirs == c).sum()) for c in range(len(names))],
            "dice": {name: dice(ours, theirs, c) for c, name in enumerate(names)}}


def ct_intensities(hu: np.ndarray, labels: np.ndarray) -> dict:
    """nnU-Net's foreground intensity properties, from the labelled voxels."""
    fg = hu[labels > 0].astype(np.float64)
    return {"max": float(fg.max()), "mean": float(fg.mean()), "median": float(np.median(fg)), "min": float(fg.min()),
            "percentile_00_5": float(np.percentile(fg, 0.5)), "percentile_99_5": float(np.percentile(fg, 99.5)),
            "std": float(fg.std())}


def main() -> int:
    if not CT.is_file():
        print(f"skipped: {CT} is absent")
        return 0
    import SimpleITK as sitk
    import nibabel

    from napari_advseg.io.nifti import load_ct, load_labels
    from napari_advseg.models.folder_targets import load_volume_target
    from test_nnunet_folder import nnunet_reference

    torch.set_num_threads(2)
    from dataclasses import replace

    full = load_ct(CT)
    labels = load_labels(LABELS, full)
    organ_slices = np.flatnonzero(labels.any(axis=(1, 2)))
    z0, z1 = int(organ_slices[0]), int(organ_slices[-1]) + 1  # the slices with organs: the CPU time stays short
    shift = np.eye(4)
    shift[0, 3] = z0
    volume = replace(full, hu=np.ascontiguousarray(full.hu[z0:z1]), affine=full.affine @ shift)
    labels = labels[z0:z1]
    image = sitk.ReadImage(str(CT))
    sitk_array = sitk.GetArrayFromImage(image).astype(np.float32)[z0:z1]  # SimpleITK's axis 0 is the canonical Z
    sitk_spacing = list(image.GetSpacing())[::-1]
    cropped = OUT / "ct_organ_slices.nii.gz"
    cropped.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(volume.hu, volume.affine), str(cropped))
    results = {"ct": str(CT.relative_to(ROOT.parent)), "slices": [z0, z1], "shape": list(volume.hu.shape),
               "spacing": list(volume.spacing)}

    plans = folder_helpers.nnunet_plans(spacing_2d=(2.2, 2.2), spacing_3d=(3.5, 2.6, 2.6), patch_2d=(64, 64),
                                        patch_3d=(32, 64, 64))
    plans["foreground_intensity_properties_per_channel"]["0"] = ct_intensities(volume.hu, labels)
    names = folder_helpers.CLASS_NAMES
    for configuration, mirror in (("3d_fullres", False), ("2d", False)):
        folder = folder_helpers.write_nnunet_folder(OUT / configuration, configuration, plans=plans)
        start = time.perf_counter()
        theirs = nnunet_reference(folder, configuration, sitk_array, sitk_spacing, mirror)
        seconds_theirs = time.perf_counter() - start
        target = load_volume_target(folder, "cpu")
        target.mirror = mirror
        hu = torch.tensor(volume.hu, requires_grad=True)
        start = time.perf_counter()
        logits = target(hu, volume)
        seconds_ours = time.perf_counter() - start
        logits[1:].sum().backward()
        ours = torch.flip(logits.detach().argmax(0), (1, 2)).numpy()  # canonical -> SimpleITK's (S, A, R)
        row = compare(ours, theirs, names)
        row.update(mirror=mirror, seconds_nnunet=round(seconds_theirs, 1), seconds_ours=round(seconds_ours, 1),
                   gradient_nonzero=bool(hu.grad.abs().sum() > 0))
        results[f"nnunet_{configuration}"] = row
        print(f"nnU-Net {configuration} (mirroring {'on' if mirror else 'off'}): {json.dumps(row)}", flush=True)

    config = folder_helpers.bundle_config(roi=(48, 48, 32), pixdim=(2.0, 2.0, 2.5))
    folder = folder_helpers.write_monai_bundle(OUT / "monai", config=config)
    start = time.perf_counter()
    theirs = folder_helpers.monai_reference(folder, cropped)  # stored in the canonical order
    seconds_theirs = time.perf_counter() - start
    target = load_volume_target(folder, "cpu")
    hu = torch.tensor(volume.hu, requires_grad=True)
    start = time.perf_counter()
    logits = target(hu, volume)
    seconds_ours = time.perf_counter() - start
    logits[1:].sum().backward()
    row = compare(logits.detach().argmax(0).numpy(), theirs, names)
    row.update(seconds_monai=round(seconds_theirs, 1), seconds_ours=round(seconds_ours, 1),
               gradient_nonzero=bool(hu.grad.abs().sum() > 0))
    results["monai_bundle"] = row
    print(f"MONAI bundle: {json.dumps(row)}", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
