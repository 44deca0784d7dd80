"""The jobs behind the command line (and the widgets): train a target, train and evaluate attacks.

Each function takes plain arguments, reports progress through an optional
callback, and returns what it made; none prints or parses arguments.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.errors import AdvsegError
from napari_advseg.io.atomic import atomic_write
from napari_advseg.io.json_write import write_json
from napari_advseg.io.volumes import volume_source
from napari_advseg.attack.config import AttackConfig
from napari_advseg.data.cases import Case, load_case, phantom_case
from napari_advseg.data.samples import sample_data_dir, SAMPLE_FILES
from napari_advseg.evaluation.metrics import dice_per_organ, network_dice
from napari_advseg.evaluation.report import evaluate_attack, format_table, report_classes, report_organs
from napari_advseg.attack.training import train_generator
from napari_advseg.data.sample_recipe import (ATTACK_STEPS, ATTACK_SUBJECTS, PHANTOM_SHAPE, SAMPLE_ATTACK_OPTIONS,
                                         SAMPLE_RHO_MAX, SAMPLE_SEED, TRAINING_SUBJECTS, UNET_STEPS)

Progress = Callable[[dict[str, Any]], None] | None

__all__ = ["ATTACK_SUBJECTS", "PHANTOM_SHAPE", "SAMPLE_ATTACK_OPTIONS", "SAMPLE_RHO_MAX", "SAMPLE_SEED",
           "TRAINING_SUBJECTS", "clean_report", "evaluate_case", "make_sample_data", "phantom_training_data",
           "sweep_rows", "train_target", "write_outputs", "write_report"]


def train_target(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                 test_labels: np.ndarray, out: str | os.PathLike, *, normalisation: dict,
                 class_names: Sequence[str] = ORGAN_CLASSES, steps: int = 1500, batch_size: int = 16,
                 patch_size: int = 96, lr: float = 1e-3, base_channels: int = 16, seed: int = 0,
                 device: str = "auto", progress: Progress = None, data_note: str = "") -> dict[str, Any]:
    """Train the standard 2D U-Net on patches, test it on whole slices, save it with its Dice."""
    from napari_advseg.models.target_files import save_target
    from napari_advseg.models.unet_training import fit_unet

    start = time.perf_counter()
    model = fit_unet(train_images, train_labels, callback=progress, n_classes=len(class_names), steps=steps,
                     batch_size=batch_size, patch_size=patch_size, lr=lr, seed=seed, device=device,
                     base_channels=base_channels)
    seconds = time.perf_counter() - start
    metrics = {"test_dice": network_dice(model, test_images, test_labels, list(class_names)),
               "steps": steps, "batch_size": batch_size, "patch_size": patch_size, "lr": lr, "seed": seed,
               "base_channels": base_channels, "train_slices": int(len(train_images)),
               "test_slices": int(len(test_images)), "train_seconds": seconds, "data": data_note}
    save_target(out, model, class_names=list(class_names), normalisation=normalisation, metrics=metrics)
    return metrics


def phantom_training_data(normalisation: dict, subjects: Sequence[int] = TRAINING_SUBJECTS,
                          shape=PHANTOM_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Slices and labels of several phantom subjects, each normalised per volume."""
    cases = [phantom_case(seed, normalisation, shape) for seed in subjects]
    return (np.concatenate([c.images for c in cases]), np.concatenate([c.labels for c in cases]))


def evaluate_case(generator, config: AttackConfig, target, case: Case, *, part: str = "all",
                  samples: int = 1, seed: int = 0, temperature: float = 1.0,
                  organs: list[str] | None = None) -> dict[str, Any]:
    """The Table-1 report of a generator on one case (a split of its slices).

    Its rows (:func:`~napari_advseg.evaluation.report.report_organs`): ``organs``, else the organs the
    generator attacks, else the target's classes the reference labels name; the target's other classes
    are pooled as ``other``.
    """
    from napari_advseg.attack.apply import slices_to_run

    if case.labels is None:
        raise AdvsegError("evaluation needs reference labels (--labels)")
    images, labels, scored = slices_to_run(target, case.images, case.labels, case.part(part)[2])
    organs = _report_organs(target, case, organs or config.organs)
    report = evaluate_attack(generator, config, target, [(images, labels, scored)], samples=samples, seed=seed,
                             temperature=temperature, organs=organs)
    report.update(_case_record(target, case, part))
    return report


def _report_organs(target, case: Case, organs: list[str] | None) -> list[str] | None:
    """The organs a report of ``case`` lists (:func:`~napari_advseg.evaluation.report.report_organs`)."""
    mapping = case.class_mapping
    named = None if mapping is None or not mapping.by_name else mapping.target_index
    return report_organs(target.class_names, organs, named)


def clean_report(target, case: Case, *, part: str = "all", organs: list[str] | None = None) -> dict[str, Any]:
    """The target's clean Dice per organ on one case (a split of its slices), with no attack.

    Shaped like :func:`evaluate_case`'s report where the two share keys:
    ``organs`` (``{name: {"dice_clean"}}``, None where the organ is absent; chosen and pooled as there),
    ``other_classes`` where classes are pooled, ``slices``, and the record of the case and the target;
    ``generator`` None.
    """
    from napari_advseg.attack.apply import slices_to_run
    from napari_advseg.models.unet import predict_labels

    if case.labels is None:
        raise AdvsegError("evaluation needs reference labels (--labels)")
    index = case.part(part)[2]
    images, labels, scored = slices_to_run(target, case.images, case.labels, index)
    prediction = torch.as_tensor(predict_labels(target, images)).long()
    labels = torch.as_tensor(np.asarray(labels)).long()
    if scored is not None:
        prediction, labels = prediction[scored], labels[scored]
    names, table, pooled = report_classes(target.class_names, _report_organs(target, case, organs))
    if table is not None:
        prediction, labels = table[prediction], table[labels]
    dice = dice_per_organ(prediction, labels, names)
    dice = {name: None if np.isnan(d) else float(d) for name, d in dice.items()}
    return {"organs": {name: {"dice_clean": d} for name, d in dice.items()}, "slices": int(len(index)),
            "generator": None, **({"other_classes": pooled} if pooled else {}), **_case_record(target, case, part)}


def _case_record(target, case: Case, part: str) -> dict[str, Any]:
    """What a report records of its case and target: files, split, the target's normalisation, classes and
    declared sliding window;
    ``class_mapping`` ({reference name: target index or None}) where the reference labels were mapped."""
    record = {"ct": case.volume.path, "source": volume_source(case.volume), "split": part, "target": target.path,
              "normalisation": dict(target.normalisation), "class_names": list(target.class_names)}
    if getattr(target, "sliding_window", None) is not None:
        record["sliding_window"] = dict(target.sliding_window)
    if case.class_mapping is not None and not case.class_mapping.identical:
        record["class_mapping"] = case.class_mapping.record()
    return record


def write_report(rows: list[tuple[str, dict[str, Any]]], json_path: str | os.PathLike | None,
                 markdown_path: str | os.PathLike | None = None) -> str:
    """Format the rows as the Table-1 Markdown; write JSON (one report, or a list) and Markdown."""
    table = format_table(rows)
    payload: Any = rows[0][1] if len(rows) == 1 else [{"row": label, **report} for label, report in rows]
    write_outputs(payload, table, json_path, markdown_path)
    return table


def write_outputs(payload: Any, table: str, json_path: str | os.PathLike | None,
                  markdown_path: str | os.PathLike | None) -> None:
    """Write a report as JSON and its Markdown table, each atomically, where a path is given."""
    if json_path is not None:
        write_json(json_path, payload)
    if markdown_path is not None:
        atomic_write(markdown_path, lambda tmp: tmp.write_text(table + "\n"))


def sweep_rows(gammas: Sequence[float], ablation_gamma: float | None) -> list[tuple[str, dict[str, Any]]]:
    """(label, config changes) of the Table-1 rows: one per gamma, then phi-only and b-only."""
    rows = [(f"gamma {g:g}", {"gamma": float(g), "fields": "both"}) for g in gammas]
    if ablation_gamma is not None:
        rows += [(f"phi only (gamma {ablation_gamma:g})", {"gamma": float(ablation_gamma), "fields": "phi"}),
                 (f"b only (gamma {ablation_gamma:g})", {"gamma": float(ablation_gamma), "fields": "bias"})]
    return rows


def make_sample_data(out_dir: str | os.PathLike | None = None, *, unet_steps: int = UNET_STEPS,
                     attack_steps: int = ATTACK_STEPS, device: str = "auto", seed: int = 0, reuse_target: bool = False,
                     shape: Sequence[int] = PHANTOM_SHAPE, unet_subjects: Sequence[int] = TRAINING_SUBJECTS,
                     attack_subjects: Sequence[int] = ATTACK_SUBJECTS, unet_patch: int = 96,
                     resume_generator: bool = False, attack_options: dict[str, Any] | None = None,
                     progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Build the shipped sample data from seeds: phantom volume, target U-Net, generator.

    - ``phantom_ct.nii.gz`` / ``phantom_labels.nii.gz``: phantom subject 0, the test volume;
    - ``unet.pt``: a U-Net trained on phantom subjects ``unet_subjects`` (1-8), tested on subject 0;
    - ``generator.pt``: a generator trained against it on subjects ``attack_subjects`` (1-24);
    - ``sample.json``: the figures of both on subject 0.

    ``shape`` (Z, Y, X), the subjects, steps and ``unet_patch`` default to
    the shipped sample's; smaller ones make a quick check of the whole recipe.
    ``resume_generator``: continue ``out/generator.pt`` (its settings and exact
    training state) up to ``attack_steps`` in all; ``sample.json`` then counts
    the training seconds of the earlier runs too. ``attack_options``: the
    ``AttackConfig`` fields of the recipe (default :data:`SAMPLE_ATTACK_OPTIONS`;
    others for studies of the recipe, ``bench/sample_recipe.py``).
    """
    shape = tuple(int(v) for v in shape)
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.models.target_load import load_target
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.io.nifti_save import save_volume

    out = Path(out_dir) if out_dir is not None else sample_data_dir()
    out.mkdir(parents=True, exist_ok=True)
    normalisation = {"mode": "zscore"}
    phantom = make_phantom(SAMPLE_SEED, shape)
    volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
    save_volume(phantom.hu, volume, out / SAMPLE_FILES["ct"], dtype=np.int16, overwrite=True)
    save_volume(phantom.labels, volume, out / SAMPLE_FILES["labels"], dtype=np.uint8, overwrite=True)
    test = load_case(out / SAMPLE_FILES["ct"], out / SAMPLE_FILES["labels"], normalisation)

    train_images, train_labels = phantom_training_data(normalisation, unet_subjects, shape)
    report_step = (lambda stage: (lambda record: progress(stage, record))) if progress else (lambda stage: None)
    if reuse_target and (out / SAMPLE_FILES["target"]).is_file():
        unet_metrics = load_target(out / SAMPLE_FILES["target"], device).metrics
    else:
        unet_metrics = train_target(train_images, train_labels, test.images, test.labels,
                                    out / SAMPLE_FILES["target"], normalisation=normalisation, steps=unet_steps,
                                    seed=seed, device=device, patch_size=min(unet_patch, *shape[1:]),
                                    progress=report_step("unet"),
                                    data_note=f"trained on phantom subjects {list(unet_subjects)}, "
                                              f"tested on subject {SAMPLE_SEED}")
    target = load_target(out / SAMPLE_FILES["target"], device)
    options = SAMPLE_ATTACK_OPTIONS if attack_options is None else attack_options
    config = AttackConfig(steps=attack_steps, seed=seed, rho_max=SAMPLE_RHO_MAX, **options)
    resume = out / SAMPLE_FILES["generator"] if resume_generator else None
    earlier_seconds = 0.0
    if resume is not None:
        if not resume.is_file():
            raise AdvsegError(f"no generator to resume in {out}: run make-sample without --resume-generator first")
        earlier = out / "sample.json"
        if earlier.is_file():
            earlier_seconds = float(json.loads(earlier.read_text()).get("attack_train_seconds", 0.0))
        config = None  # the checkpoint's own
    start = time.perf_counter()
    with_progress = report_step("generator")
    attack_images, attack_labels = phantom_training_data(normalisation, attack_subjects, shape)
    train_generator(config, target, attack_images, attack_labels, out, device=device, checkpoint_every=100,
                    progress=with_progress, resume=resume, steps=attack_steps)
    attack_seconds = earlier_seconds + time.perf_counter() - start
    generator, config, _ = load_generator(out / SAMPLE_FILES["generator"], device)
    report = evaluate_case(generator, config, target, test, part="all", samples=4, seed=seed)
    summary = {"unet": unet_metrics, "attack_train_seconds": attack_seconds, "report": report,
               "table": format_table([(f"gamma {config.gamma:g}", report)])}
    write_json(out / "sample.json", summary)
    return summary
