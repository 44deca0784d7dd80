"""Apply a trained generator to a whole volume and write the results as NIfTI.

Slices are processed in batches and written into preallocated output arrays,
so memory grows with the volume's outputs, not with the networks'
activations. Files are written in the input's own orientation and affine, each
atomically; nothing is overwritten without ``overwrite=True``, and on an
error the files of this call are removed again.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_advseg.io.atomic import atomic_write, file_sha256
from napari_advseg.attack.config import AttackConfig
from napari_advseg.data.cases import Case
from napari_advseg.errors import AdvsegError
from napari_advseg.evaluation.report import OverlapCounter, attack_slices, organ_row
from napari_advseg.attack.fields import fold_count, warp_image
from napari_advseg.io.nifti_save import save_volume

OUTPUT_FILES = {
    "adversarial": "adversarial_hu.nii.gz",
    "segmentation": "adversarial_seg.nii.gz",
    "clean_segmentation": "clean_seg.nii.gz",
    "warped_reference": "warped_reference.nii.gz",
    "displacement": "displacement.nii.gz",
    "bias": "bias_field.nii.gz",
    "sidecar": "sample.json",
}


def output_paths(out_dir: str | os.PathLike, prefix: str = "") -> dict[str, Path]:
    """Where :func:`sample_volume` writes each file."""
    out = Path(out_dir)
    return {key: out / f"{prefix}{name}" for key, name in OUTPUT_FILES.items()}


def sample_volume(generator, config: AttackConfig, target, case: Case, out_dir: str | os.PathLike, *,
                  seed: int = 0, temperature: float = 1.0, eps_phi: Sequence[float] | None = None,
                  eps_b: Sequence[float] | None = None, slices: Sequence[int] | None = None,
                  batch_size: int = 4, overwrite: bool = False, prefix: str = "",
                  generator_path: str | None = None, progress: Callable[[int], None] | None = None
                  ) -> dict[str, Any]:
    """Sample adversarial slices of ``case`` and write them with a JSON sidecar.

    Parameters
    ----------
    eps_phi, eps_b : sequence of float, optional
        Fixed latent deviates (standard deviations around the encoder's mean),
        the same for every slice; otherwise they are drawn from ``seed``.
    slices : sequence of int, optional
        Axial slice indices to attack; the others are written unchanged (the
        CT) or empty (segmentations, fields). Default: every slice.
    Returns the sidecar dictionary (also written as ``sample.json``).
    """
    paths = output_paths(out_dir, prefix)
    if case.labels is None:
        paths.pop("warped_reference")
    if not overwrite:
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing:
            raise AdvsegError(f"{existing[0]}: exists already (use --overwrite to replace; "
                              f"{len(existing)} output file(s) would be overwritten)")
    n_slices = case.volume.n_slices
    index = np.arange(n_slices) if slices is None else np.asarray(sorted(set(int(s) for s in slices)))
    if index.size == 0 or index.min() < 0 or index.max() >= n_slices:
        raise AdvsegError(f"slice indices must lie in 0..{n_slices - 1}")

    shape = case.volume.shape
    adversarial_hu = case.volume.hu.astype(np.float32, copy=True)
    segmentation = np.zeros(shape, np.uint8)
    clean_segmentation = np.zeros(shape, np.uint8)
    warped_reference = None if case.labels is None else case.labels.copy()
    displacement = np.zeros(shape + (2,), np.float32)
    bias = np.zeros(shape, np.float32)
    n_classes = len(target.class_names)
    clean_counter, adv_counter = OverlapCounter(n_classes), OverlapCounter(n_classes)
    rhos: list[float] = []
    z_codes: list[list[float]] = []
    folded = checked = 0
    rng = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    images = case.images[index]
    labels = None if case.labels is None else case.labels[index]

    for result in attack_slices(generator, config, target, images, labels, batch_size=batch_size,
                                temperature=temperature, rng=rng, eps_phi=eps_phi, eps_b=eps_b):
        z = index[result.start:result.start + len(result.rho)]
        hu = torch.as_tensor(case.volume.hu[z])[:, None].to(device)
        disp, b = result.displacement.to(device), result.bias.to(device)
        # The fields act on HU directly: the same image the network saw, without clipping loss.
        warped = warp_image(hu, disp) if config.use_phi else hu
        bias_hu = b * case.scale.scale
        if config.bias_mode == "additive":
            adv = warped + (bias_hu if config.use_bias else 0.0)
        else:
            adv = warped * (torch.exp(b) if config.use_bias else 1.0)
        adversarial_hu[z] = adv[:, 0].cpu().numpy()
        segmentation[z] = result.pred_adv.numpy().astype(np.uint8)
        clean_segmentation[z] = result.pred_clean.numpy().astype(np.uint8)
        displacement[z] = result.displacement.permute(0, 2, 3, 1).numpy()
        bias[z] = (bias_hu if config.bias_mode == "additive" else torch.exp(b))[:, 0].cpu().numpy()
        if warped_reference is not None:
            warped_reference[z] = result.warped_reference.numpy().astype(np.uint8)
            clean_counter.add(result.pred_clean, torch.as_tensor(case.labels[z]))
            adv_counter.add(result.pred_adv, result.warped_reference)
        rhos.extend(result.rho.tolist())
        z_codes.extend(torch.cat((result.z_phi, result.z_b), dim=1).tolist())
        f, c = fold_count(result.displacement)
        folded, checked = folded + f, checked + c
        if progress is not None:
            progress(len(result.rho))

    organs = {}
    if warped_reference is not None:
        clean_dice, adv_dice = clean_counter.dice(), adv_counter.dice()
        for c in range(1, n_classes):
            if not math.isnan(clean_dice[c]):
                organs[target.class_names[c]] = organ_row(clean_dice[c], adv_dice[c])
    d = config.latent_dim
    sidecar: dict[str, Any] = {
        "ct": case.volume.path,
        "generator": generator_path,
        "generator_sha256": file_sha256(generator_path) if generator_path and Path(generator_path).is_file() else None,
        "target": target.path,
        "target_sha256": file_sha256(target.path) if target.path and Path(target.path).is_file() else None,
        "config": config.to_dict(),
        "seed": seed,
        "temperature": temperature,
        "fixed_deviates": {"eps_phi": None if eps_phi is None else [float(v) for v in eps_phi],
                           "eps_b": None if eps_b is None else [float(v) for v in eps_b]},
        "slices": index.tolist(),
        "latent_codes": {"z_phi": [row[:d] for row in z_codes], "z_b": [row[d:] for row in z_codes]},
        "organs": organs,
        "rho": float(np.mean(rhos)),
        "fold_fraction": folded / checked if checked else 0.0,
        "label_source": "reference" if warped_reference is not None else None,
        "intensity_scale": case.scale.to_dict(),
        "units": {
            "adversarial": "HU",
            "displacement": "pixels; component 0 along the canonical anterior->posterior axis, component 1 "
                            "along patient right->left (T(x)(p) = x(p + phi(p)))",
            "bias": "HU (additive)" if config.bias_mode == "additive" else "factor exp(b) (multiplicative)",
        },
        "files": {key: str(path.name) for key, path in paths.items()},
    }

    written: list[Path] = []
    try:
        arrays = {"adversarial": (adversarial_hu, np.float32), "segmentation": (segmentation, np.uint8),
                  "clean_segmentation": (clean_segmentation, np.uint8), "displacement": (displacement, np.float32),
                  "bias": (bias, np.float32)}
        if warped_reference is not None:
            arrays["warped_reference"] = (warped_reference, np.uint8)
        for key, (array, dtype) in arrays.items():
            written.append(save_volume(array, case.volume, paths[key], dtype=dtype, overwrite=True))
        text = json.dumps(sidecar, indent=2)
        written.append(atomic_write(paths["sidecar"], lambda tmp: tmp.write_text(text)))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return sidecar
