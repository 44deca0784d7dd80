"""Apply a trained generator to a whole volume and write the results as NIfTI.

Slices are processed in batches and written into preallocated output arrays,
so memory grows with the volume's outputs, not with the networks'
activations. Files are written in the input's own orientation and affine, each
atomically; nothing is overwritten without ``overwrite=True``, and on an
error the files of this call are removed again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_advseg.io.atomic import atomic_write, sha256_if_file
from napari_advseg.attack.config import AttackConfig
from napari_advseg.data.cases import Case
from napari_advseg.errors import AdvsegError
from napari_advseg.attack.apply import attack_volume, run_attack_volume
from napari_advseg.io.nifti_save import save_volume
from napari_advseg.io.volumes import volume_source

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
                  generator_path: str | None = None, progress: Callable[[int], None] | None = None,
                  latent: str = "volume", z_smooth: float = 0.0, rho: float | None = None) -> dict[str, Any]:
    """Sample adversarial slices of ``case`` and write them with a JSON sidecar.

    Parameters
    ----------
    eps_phi, eps_b : sequence of float, optional
        Fixed latent deviates (standard deviations around the encoder's mean),
        the same for every slice; otherwise they are drawn from ``seed``.
    latent : {"volume", "slice"}
        Deviates not given are drawn once for the whole volume (the default:
        the fields change smoothly along z) or afresh for each slice.
    z_smooth : float
        Sigma, in slices, of a Gaussian over both fields along z (0: none).
    slices : sequence of int, optional
        Axial slice indices to attack; the others are written unchanged (the
        CT) or empty (segmentations, fields). Default: every slice.
    rho : float, optional
        Each slice's fields scaled to this perceptibility (the Explore tab's
        "Set rho"); the sidecar's ``rho_target``. Default: the generator's own.
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

    stream = attack_volume(generator, config, target, case, slices=index, seed=seed, temperature=temperature,
                           eps_phi=eps_phi, eps_b=eps_b, batch_size=batch_size, latent=latent,
                           z_smooth=z_smooth, rho=rho)
    result = run_attack_volume(stream, progress)

    sidecar: dict[str, Any] = {
        "ct": case.volume.path,
        "source": volume_source(case.volume),
        "generator": generator_path,
        "generator_sha256": sha256_if_file(generator_path),
        "target": target.path,
        "target_sha256": sha256_if_file(target.path),
        "config": config.to_dict(),
        "seed": seed,
        "temperature": temperature,
        "latent": latent,
        "z_smooth": z_smooth,
        "fixed_deviates": {"eps_phi": None if eps_phi is None else [float(v) for v in eps_phi],
                           "eps_b": None if eps_b is None else [float(v) for v in eps_b]},
        "slices": index.tolist(),
        "latent_codes": {"z_phi": result.z_phi, "z_b": result.z_b},
        "organs": result.organs,
        "rho": result.mean_rho,
        "rho_target": rho,
        "fold_fraction": result.fold_fraction,
        "realism": result.realism.report(),
        "label_source": "reference" if result.warped_reference is not None else None,
        "intensity_scale": case.scale.to_dict(),
        "units": {
            "adversarial": "HU",
            "displacement": "pixels; component 0 along the canonical anterior->posterior axis, component 1 "
                            "along patient right->left (T(x)(p) = x(p + phi(p)))",
            "bias": "HU (additive)" if config.bias_mode == "additive"
                    else "factor exp(b) on the normalised intensities (multiplicative)",
            "latent": "volume: one set of latent deviates drawn for all slices; slice: drawn afresh for each "
                      "slice (fixed deviates are used for every slice either way)",
            "z_smooth": "sigma in slices of a Gaussian over both fields along z, within runs of neighbouring "
                        "attacked slices, before they are applied (0: none)",
            "realism": "bias_peak_share: the bias field's strongest single wave (f and -f together), "
                       "bias_short_share: its power at wavelengths under short_wavelength_px pixels, both as "
                       "shares of its non-DC power, means over the slices with a bias; jacobian_min/max: the "
                       "range of det J of p -> p + phi(p) over the slices with a deformation "
                       "(napari_advseg.attack.realism)",
            "intensity_scale": "network input = (clip(HU, clip_low, clip_high) - offset) / scale; the "
                               "target's segmentation of adversarial_hu with this scale is adversarial_seg",
        },
        "files": {key: str(path.name) for key, path in paths.items()},
    }

    written: list[Path] = []
    try:
        arrays = {"adversarial": (result.adversarial_hu, np.float32), "segmentation": (result.segmentation, np.uint8),
                  "clean_segmentation": (result.clean_segmentation, np.uint8),
                  "displacement": (result.displacement, np.float32), "bias": (result.bias, np.float32)}
        if result.warped_reference is not None:
            arrays["warped_reference"] = (result.warped_reference, np.uint8)
        for key, (array, dtype) in arrays.items():
            written.append(save_volume(array, case.volume, paths[key], dtype=dtype, overwrite=True))
        text = json.dumps(sidecar, indent=2)
        written.append(atomic_write(paths["sidecar"], lambda tmp: tmp.write_text(text)))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return sidecar


def read_sample(out_dir: str | os.PathLike, prefix: str = "") -> dict[str, Any]:
    """What :func:`sample_volume` wrote to ``out_dir``, back in canonical ``(Z, Y, X)`` order.

    Returns a dict: ``adversarial_hu`` (Z, Y, X), ``bias`` (Z, Y, X, the
    sidecar's units), ``displacement`` (Z, Y, X, 2, pixels), ``slices`` (the
    attacked slices), ``spacing`` ((dz, dy, dx) mm) and ``sidecar``.
    """
    import nibabel
    import nibabel.orientations as nio

    from napari_advseg.io.nifti import load_ct

    paths = output_paths(out_dir, prefix)
    if not paths["sidecar"].is_file():
        raise AdvsegError(f"{paths['sidecar']}: no sidecar; is {out_dir} an `advseg sample` folder?")
    sidecar = json.loads(paths["sidecar"].read_text())
    adversarial = load_ct(paths["adversarial"])
    displacement = np.asarray(nibabel.load(paths["displacement"]).dataobj, dtype=np.float32)
    displacement = nio.apply_orientation(displacement, adversarial.source.ornt_to_canonical)
    return {"adversarial_hu": adversarial.hu, "bias": load_ct(paths["bias"]).hu,
            "displacement": np.ascontiguousarray(displacement), "slices": sidecar["slices"],
            "spacing": adversarial.spacing, "sidecar": sidecar}
