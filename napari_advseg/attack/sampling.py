"""Apply a trained generator to a whole volume and write the results as NIfTI and/or DICOM.

Slices are processed in batches and written into preallocated output arrays,
so memory grows with the volume's outputs, not with the networks'
activations. Files are written in the input's own orientation and affine, each
atomically; nothing is overwritten without ``overwrite=True``, and on an
error the files of this call are removed again. The adversarial HU are
written in the input's own data type where it holds them
(:func:`~napari_advseg.io.nifti_save.hu_dtype`). DICOM output
(:mod:`napari_advseg.io.dicom_write`) is the adversarial CT as a derived
series and the clean and adversarial segmentations as DICOM SEG objects on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_advseg.io.atomic import sha256_if_file
from napari_advseg.models.folder_targets import weights_sha256
from napari_advseg.attack.config import AttackConfig
from napari_advseg.data.cases import Case
from napari_advseg.errors import AdvsegError
from napari_advseg.attack.apply import attack_volume, fields_z_smooth, run_attack_volume
from napari_advseg.io.json_write import write_json
from napari_advseg.io.nifti_save import hu_dtype, save_volume
from napari_advseg.io.volumes import volume_source

NIFTI_FILES = {
    "adversarial": "adversarial_hu.nii.gz",
    "segmentation": "adversarial_seg.nii.gz",
    "clean_segmentation": "clean_seg.nii.gz",
    "warped_reference": "warped_reference.nii.gz",
    "displacement": "displacement.nii.gz",
    "bias": "bias_field.nii.gz",
}
DICOM_FILES = {
    "dicom_adversarial": "adversarial_dicom",  # a folder: the derived CT series
    "dicom_segmentation": "adversarial_seg.dcm",
    "dicom_clean_segmentation": "clean_seg.dcm",
}
SIDECAR_FILE = "sample.json"
OUTPUT_FILES = {**NIFTI_FILES, **DICOM_FILES, "sidecar": SIDECAR_FILE}
"""Every output's name (after the prefix) by key."""

FORMATS = {"nifti": ("nifti",), "dicom": ("dicom",), "both": ("nifti", "dicom")}
"""The ``--format`` choices and the output kinds each writes (the sidecar is always written)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def output_paths(out_dir: str | os.PathLike, prefix: str = "", formats: Sequence[str] = ("nifti",)) -> dict[str, Path]:
    """Where :func:`sample_volume` writes each file of the output kinds ``formats`` ("nifti", "dicom")."""
    out = Path(out_dir)
    names = {**(NIFTI_FILES if "nifti" in formats else {}), **(DICOM_FILES if "dicom" in formats else {}),
             "sidecar": SIDECAR_FILE}
    return {key: out / f"{prefix}{name}" for key, name in names.items()}


def refuse_existing(paths: Iterable[Path]) -> None:
    """An :class:`AdvsegError` naming the first of ``paths`` that exists, and how many do (writing would
    overwrite them)."""
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise AdvsegError(f"{existing[0]}: exists already (use --overwrite to replace; "
                          f"{len(existing)} output file(s) would be overwritten)")


def check_run_name(name: str) -> str:
    """A run name for file names: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit."""
    if not _NAME.match(name or ""):
        raise AdvsegError(f"run name {name!r}: use letters, digits, '.', '_' and '-' only (it starts the "
                          "output file names)")
    return name


def export_prefix(slices: Sequence[int] | None, n_slices: int, name: str = "") -> str:
    """The start of an export's file names: the run name (if any) and the slices, e.g. ``run1_slices_010-020_``.

    ``slices`` None is ``all_slices``; one slice ``slice_042``; consecutive
    slices ``slices_010-020``; others ``slices_003-017_n5`` (first, last,
    count). Slice numbers have as many digits as the volume's last slice, so
    the names sort in slice order, and two exports of different slices never
    share a file name.
    """
    width = len(str(max(n_slices - 1, 0)))
    if slices is None:
        tag = "all_slices"
    else:
        index = sorted(set(int(z) for z in slices))
        if not index:
            raise AdvsegError("no slices chosen to export")
        first, last = index[0], index[-1]
        if len(index) == 1:
            tag = f"slice_{first:0{width}d}"
        elif last - first + 1 == len(index):
            tag = f"slices_{first:0{width}d}-{last:0{width}d}"
        else:
            tag = f"slices_{first:0{width}d}-{last:0{width}d}_n{len(index)}"
    return f"{check_run_name(name)}_{tag}_" if name else f"{tag}_"


def sample_volume(generator, config: AttackConfig, target, case: Case, out_dir: str | os.PathLike, *,
                  seed: int = 0, temperature: float = 1.0, eps_phi: Sequence[float] | None = None,
                  eps_b: Sequence[float] | None = None, slices: Sequence[int] | None = None,
                  batch_size: int = 4, overwrite: bool = False, prefix: str = "",
                  generator_path: str | None = None, progress: Callable[[int], None] | None = None,
                  latent: str = "volume", z_smooth: float = 0.0, rho: float | None = None,
                  formats: Sequence[str] = ("nifti",), drop_patient_tags: bool = False,
                  clean_segmentation: np.ndarray | None = None,
                  on_result: Callable[[Any], None] | None = None) -> dict[str, Any]:
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
        Sigma, in slices, of a Gaussian over both fields along z (0: none; a
        3D target's fields then get the ``config.z_smooth`` G was trained with).
    slices : sequence of int, optional
        Axial slice indices to attack; the others are written unchanged (the
        CT) or empty (segmentations, fields). Default: every slice.
    rho : float, optional
        Each slice's fields scaled to this perceptibility (the Explore tab's
        "Set rho"); the sidecar's ``rho_target``. Default: the generator's own.
    prefix : str
        Starts every file name (:func:`export_prefix`).
    formats : sequence of {"nifti", "dicom"}
        NIfTI: every output (:data:`NIFTI_FILES`); DICOM: the adversarial CT
        as a derived series and the clean and adversarial segmentations as
        DICOM SEG on it (:data:`DICOM_FILES`, :mod:`napari_advseg.io.dicom_write`).
    drop_patient_tags : bool
        DICOM: a fresh anonymous patient and study instead of the input's.
    clean_segmentation : ndarray, optional
        The target's segmentation of the clean volume (Z, Y, X) from an earlier
        sample of the same case and target: reused instead of predicted again
        (:func:`sample_volumes`).
    on_result : callable, optional
        Called with the :class:`~napari_advseg.attack.apply.VolumeAttack` once
        it is made, before the files are written.
    Returns the sidecar dictionary (also written as ``sample.json``, strict JSON).
    """
    unknown = set(formats) - {"nifti", "dicom"}
    if unknown or not formats:
        raise AdvsegError(f"unknown output format(s) {sorted(unknown)}: choose nifti and/or dicom")
    paths = output_paths(out_dir, prefix, formats)
    if case.labels is None:
        paths.pop("warped_reference", None)
    if not overwrite:
        refuse_existing(paths.values())
    n_slices = case.volume.n_slices
    index = np.arange(n_slices) if slices is None else np.asarray(sorted(set(int(s) for s in slices)))
    if index.size == 0 or index.min() < 0 or index.max() >= n_slices:
        raise AdvsegError(f"slice indices must lie in 0..{n_slices - 1}")

    stream = attack_volume(generator, config, target, case, slices=index, seed=seed, temperature=temperature,
                           eps_phi=eps_phi, eps_b=eps_b, batch_size=batch_size, latent=latent,
                           z_smooth=z_smooth, rho=rho, clean_segmentation=clean_segmentation)
    result = run_attack_volume(stream, progress)
    if on_result is not None:
        on_result(result)

    sidecar: dict[str, Any] = {
        "ct": case.volume.path,
        "source": volume_source(case.volume),
        "generator": generator_path,
        "generator_sha256": sha256_if_file(generator_path),
        "target": target.path,
        "target_sha256": weights_sha256(target.path),
        "config": config.to_dict(),
        "seed": seed,
        "temperature": temperature,
        "latent": latent,
        "z_smooth": fields_z_smooth(target, config, z_smooth),
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
            "realism": "bias_stripe_share: the bias field's strongest single wave (f and -f together) of "
                       "wavelength under short_wavelength_px pixels, "
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
        if "nifti" in formats:
            arrays = {"adversarial": (result.adversarial_hu, hu_dtype(case.volume, result.adversarial_hu)),
                      "segmentation": (result.segmentation, np.uint8),
                      "clean_segmentation": (result.clean_segmentation, np.uint8),
                      "displacement": (result.displacement, np.float32), "bias": (result.bias, np.float32)}
            if result.warped_reference is not None:
                arrays["warped_reference"] = (result.warped_reference, np.uint8)
            for key, (array, dtype) in arrays.items():
                written.append(save_volume(array, case.volume, paths[key], dtype=dtype, overwrite=True))
        if "dicom" in formats:
            sidecar["dicom"] = _write_dicom(result, case, target, paths, written, sidecar, drop_patient_tags)
        written.append(write_json(paths["sidecar"], sidecar))
    except BaseException:
        for path in written:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    return sidecar


def sample_prefix(prefix: str, seed: int) -> str:
    """The file-name start of one of several samples (:func:`sample_volumes`): ``<prefix>seed<seed>_``."""
    return f"{prefix}seed{int(seed)}_"


def sample_volumes(generator, config: AttackConfig, target, case: Case, out_dir: str | os.PathLike, *,
                   seeds: Sequence[int], prefix: str = "", formats: Sequence[str] = ("nifti",),
                   overwrite: bool = False, **options) -> Iterator[dict[str, Any]]:
    """Several samples of one case, one per seed, each written as :func:`sample_volume` writes one (its files
    start with :func:`sample_prefix`); yields each sidecar. The clean volume is segmented once, with the first
    sample, and reused: each further sample costs one network pass over the volume. Nothing is written when
    any output exists already (unless ``overwrite``)."""
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise AdvsegError(f"the seeds of several samples must be distinct and at least one, got {seeds}")
    if not overwrite:
        refuse_existing(path for seed in seeds
                        for path in output_paths(out_dir, sample_prefix(prefix, seed), formats).values())
    made: list = []  # the first sample's result, for its clean segmentation
    for seed in seeds:
        clean = made[0].clean_segmentation if made else None
        yield sample_volume(generator, config, target, case, out_dir, seed=seed, prefix=sample_prefix(prefix, seed),
                            formats=formats, overwrite=overwrite, clean_segmentation=clean,
                            on_result=None if made else made.append, **options)


def _write_dicom(result, case: Case, target, paths: dict[str, Path], written: list[Path], sidecar: dict,
                 drop_patient_tags: bool) -> dict[str, Any]:
    """The DICOM outputs (see :func:`sample_volume`); appends each to ``written``; their sidecar record."""
    from napari_advseg.io.dicom_write import write_ct_series, write_seg

    strength = f"rho {sidecar['rho']:.3f}" if np.isfinite(sidecar["rho"]) else "no slice attacked"
    series = write_ct_series(result.adversarial_hu, case.volume, paths["dicom_adversarial"], description=strength,
                             drop_patient_tags=drop_patient_tags, overwrite=True)
    written.append(series.folder)
    algorithm = Path(target.path).name if target.path else "target network"
    version = (sidecar["target_sha256"] or "unknown")[:16]
    record = {"series": series.record(), "patient": "the input's" if series.study == "source" else "anonymous"}
    for key, labels, description in (
            ("dicom_segmentation", result.segmentation, "ADVERSARIAL segmentation (network on the attack)"),
            ("dicom_clean_segmentation", result.clean_segmentation, "clean segmentation (network on the input)")):
        path, uid = write_seg(labels, case.volume, series, paths[key], class_names=list(target.class_names),
                              description=description, algorithm=algorithm, algorithm_version=version,
                              series_number=1002 if key == "dicom_segmentation" else 1003, overwrite=True)
        written.append(path)
        record[key.removeprefix("dicom_")] = {"file": path.name, "sop_instance_uid": uid}
    return record


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
