"""Hardened folder targets: an nnU-Net trained-model folder or a MONAI bundle with the fine-tuned weights.

A hardened nnU-Net target is written as a trained-model folder of the same
layout: the original ``dataset.json`` and ``plans.json`` and, for each fold
that was hardened, ``fold_K/checkpoint_final.pth``, the original checkpoint
(trainer name, ``init_args``, mirroring axes, its training log) with its
``network_weights`` replaced by the hardened network's, in the key layout
nnU-Net saves (the plain ``state_dict`` of the network the plans describe).
nnU-Net itself reads it as it reads the original. A hardened MONAI bundle is
the original bundle's files with ``models/model.pt`` replaced by the
hardened ``state_dict`` (other files under ``models/``, e.g. a TorchScript
export of the original weights, are left out).

Both get :data:`~napari_advseg.models.folder_targets.METRICS_FILE`, the
scores and the hardening record a project checkpoint keeps in its
``metrics``; the project's loader reads it back into ``Target.metrics``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from napari_advseg.errors import AdvsegError
from napari_advseg.io.atomic import atomic_write, save_torch
from napari_advseg.io.json_write import write_json
from napari_advseg.models.folder_targets import METRICS_FILE, MonaiSlices, NnUNetSlices

__all__ = ["FOLDER_MODELS", "check_folder_output", "folder_output", "save_hardened_folder"]

FOLDER_MODELS = (NnUNetSlices, MonaiSlices)
"""Models of folder targets that hardening writes back as folders of their kind."""


def folder_output(out: str | os.PathLike) -> Path:
    """The folder a hardened folder target is written to: ``out``, without a ``.pt`` suffix."""
    out = Path(out)
    return out.with_suffix("") if out.suffix == ".pt" else out


def _source_folder(model: nn.Module) -> Path:
    return Path(model.nnunet.path if isinstance(model, NnUNetSlices) else model.bundle.path)


def check_folder_output(out: str | os.PathLike, model: nn.Module) -> Path:
    """The output folder for ``model``'s target, refused when it is the original or a folder of other files."""
    folder = folder_output(out)
    source = _source_folder(model)
    if folder.resolve() == source.resolve():
        raise AdvsegError(f"{folder}: the hardened network would replace the original target folder; give --out "
                          "another folder")
    if folder.exists() and not folder.is_dir():
        raise AdvsegError(f"{folder}: exists and is a file; a hardened {_kind(model)} is written as a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / METRICS_FILE).is_file():
        raise AdvsegError(f"{folder}: exists and holds files of something else (no {METRICS_FILE}); give --out a "
                          "new folder")
    return folder


def _kind(model: nn.Module) -> str:
    return "nnU-Net folder" if isinstance(model, NnUNetSlices) else "MONAI bundle"


def _copy(source: Path, destination: Path) -> None:
    atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))


def _weights(network: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}


def save_hardened_folder(out: str | os.PathLike, model: nn.Module, metrics: dict[str, Any]) -> Path:
    """Write the hardened ``model`` (an :class:`NnUNetSlices` or :class:`MonaiSlices`) as a folder; its path.

    Each file is written atomically; :data:`METRICS_FILE` first, so a folder
    being written is known as a hardening output.
    """
    from napari_advseg.models.nnunet_folder import read_checkpoint

    folder = check_folder_output(out, model)
    source = _source_folder(model)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / METRICS_FILE, metrics)
    if isinstance(model, NnUNetSlices):
        for name in ("dataset.json", "plans.json"):
            _copy(source / name, folder / name)
        for fold, checkpoint_path, network in zip(model.nnunet.folds, model.nnunet.checkpoints, model.networks):
            checkpoint = read_checkpoint(Path(checkpoint_path))
            checkpoint["network_weights"] = _weights(network)
            save_torch(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
        return folder
    for file in sorted(source.rglob("*")):
        relative = file.relative_to(source)
        if file.is_file() and relative.parts[0] != "models" and relative.name != METRICS_FILE:
            _copy(file, folder / relative)
    save_torch(_weights(model.network), folder / "models" / "model.pt")
    return folder
