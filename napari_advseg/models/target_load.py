"""Reading target networks: project checkpoints and TorchScript archives (folders: :mod:`~napari_advseg.models.folder_targets`).

:func:`load_target` tells the two file kinds described in
:mod:`napari_advseg.models.target_files` apart, rebuilds the network, freezes
it and checks its output with
:func:`napari_advseg.models.target.validate_target`. Every way a file can be
wrong (missing, another kind of file, pickled Python objects, weights that do
not fit, a newer version) gives an :class:`InputFileError` naming the file.

What a model file declares about its network (``class_names``,
``normalisation``, ``input_multiple``, ``sliding_window``) may also sit in a *sidecar*: a JSON
file beside it with the same stem (``net.pt`` and ``net.json``), holding the
same keys as a TorchScript archive's ``advseg.json``. Each key is taken from,
first to last: the caller (the CLI's flags), the sidecar, the file itself
(``advseg.json`` or the checkpoint), the defaults.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.device import resolve_device
from napari_advseg.errors import InputFileError, first_line
from napari_advseg.io.sidecar import read_sidecar_object
from napari_advseg.models.target import (VALIDATION_SIZE, Target, find_input_multiple, freeze, listed,
                                        load_fitting_weights, validate_target)
from napari_advseg.models.sliding_window import WindowedNetwork
from napari_advseg.models.target_meta import check_class_names, check_normalisation, check_sliding_window
from napari_advseg.models.target_files import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    TORCHSCRIPT_META_FILE,
    TORCHSCRIPT_META_FORMAT,
)
from napari_advseg.models.unet import UNet2D
from napari_advseg.seeding import seeded_build

__all__ = ["SIDECAR_KEYS", "load_target", "sidecar_path"]

_NORMALISATION_SYNTAX = "zscore, window:LO,HI[:A,B], ct:LO,HI,MEAN,STD or none"

_REQUIRED_KEYS = ("format", "version", "arch", "state_dict", "class_names", "normalisation")
SIDECAR_KEYS = ("class_names", "normalisation", "input_multiple", "sliding_window", "metrics", "format")
"""Keys a sidecar JSON may hold (those of a TorchScript archive's ``advseg.json``)."""


def sidecar_path(path: str | os.PathLike) -> Path:
    """The sidecar JSON of a model file: same folder and stem, suffix ``.json``."""
    return Path(path).with_suffix(".json")


def _read_sidecar(path: Path) -> dict:
    """The sidecar's declarations, ``{}`` when there is none; InputFileError (naming the sidecar) when it is bad."""
    sidecar = sidecar_path(path)
    if sidecar == path or not sidecar.is_file():
        return {}
    meta = read_sidecar_object(sidecar, path)
    unknown = sorted(set(meta) - set(SIDECAR_KEYS))
    if unknown:
        raise InputFileError(sidecar, f"has unknown keys {listed(unknown)}; a model's sidecar may hold "
                                      f"{', '.join(SIDECAR_KEYS[:4])}")
    if meta.get("format", TORCHSCRIPT_META_FORMAT) != TORCHSCRIPT_META_FORMAT:
        raise InputFileError(sidecar, f"has format {meta['format']!r}; expected {TORCHSCRIPT_META_FORMAT!r} or none")
    return meta


def _is_torchscript_archive(path: Path) -> bool:
    """True for a zip file laid out like ``torch.jit.save`` output (``constants.pkl`` and ``code/``)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    has_constants = any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names)
    has_code = any("/code/" in n or n.startswith("code/") for n in names)
    return has_constants and has_code


def _describe_contents(path: Path) -> str:
    """A short guess of what a file that torch cannot read is, for messages."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return ""
    if not head:
        return " (the file is empty)"
    if head[:2] == b"\x1f\x8b":
        return " (it is gzip-compressed, e.g. a .nii.gz image)"
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return " (it looks like a NIfTI image)"
    if head[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):
        return " (it looks like a NIfTI image)"
    if head[:4] == b"PK\x03\x04":
        return " (it is a zip archive of another kind)"
    if head[:6] == b"\x93NUMPY":
        return " (it is a numpy .npy array)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return " (it looks like a text file)"


def _read_checkpoint(path: Path, device: torch.device) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if match:
            raise InputFileError(
                path,
                f"holds pickled Python objects ({match.group(1)}), which are not loaded for safety; "
                "expected a napari-advseg target checkpoint or a TorchScript model",
            ) from None
        problem = _describe_contents(path)
    except Exception:  # noqa: BLE001 - torch raises many kinds of errors for foreign files
        problem = _describe_contents(path)
    raise InputFileError(
        path, f"is neither a napari-advseg target checkpoint nor a TorchScript model{problem}"
    )


def _model_from_checkpoint(path: Path, checkpoint: Any) -> tuple[UNet2D, dict]:
    """Rebuild the network from a loaded checkpoint dict; also return the metadata."""
    if not isinstance(checkpoint, dict):
        raise InputFileError(
            path, f"holds a {type(checkpoint).__name__}, not a napari-advseg target checkpoint (a dict)"
        )
    if checkpoint and "format" not in checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise InputFileError(
            path,
            "holds bare weights (a state_dict) without the network description; "
            "save it with napari_advseg.models.target_files.save_target or export it as TorchScript",
        )
    missing = [key for key in _REQUIRED_KEYS if key not in checkpoint]
    if "format" in checkpoint and checkpoint["format"] != CHECKPOINT_FORMAT:
        raise InputFileError(
            path, f"has format {checkpoint['format']!r}; expected a {CHECKPOINT_FORMAT!r} checkpoint"
        )
    if missing:
        raise InputFileError(
            path, f"is a torch file but not a napari-advseg target checkpoint (missing keys: {listed(missing)})"
        )
    version = checkpoint["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputFileError(path, f"has an invalid checkpoint version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise InputFileError(
            path,
            f"was written by a newer napari-advseg (checkpoint version {version}; "
            f"this version reads up to {CHECKPOINT_VERSION})",
        )
    arch = checkpoint["arch"]
    if not isinstance(arch, dict):
        raise InputFileError(path, f"has an invalid network description (arch = {arch!r})")
    try:
        with seeded_build(None):
            model = UNet2D(**arch)
    except (TypeError, ValueError) as error:
        raise InputFileError(path, f"has an invalid network description {arch!r}: {first_line(error)}") from None
    state = checkpoint["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputFileError(path, "has an invalid state_dict (expected a dict of tensors)")
    load_fitting_weights(model, state, path, f"the network described by {arch}")
    meta = {
        "class_names": checkpoint["class_names"],
        "normalisation": checkpoint["normalisation"],
        "metrics": checkpoint.get("metrics") or {},
    }
    return model, meta


def _read_torchscript(path: Path, device: torch.device) -> tuple[nn.Module, dict]:
    extra = {TORCHSCRIPT_META_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as error:  # noqa: BLE001
        raise InputFileError(path, f"looks like a TorchScript model but cannot be loaded: {first_line(error)}") from None
    raw = extra[TORCHSCRIPT_META_FILE]
    if not raw:
        return model, {}
    try:
        meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(path, f"has an unreadable {TORCHSCRIPT_META_FILE}: {error}") from None
    if not isinstance(meta, dict):
        raise InputFileError(path, f"has an invalid {TORCHSCRIPT_META_FILE} (expected a JSON object)")
    return model, meta


def _has_input_statistics_norm(model: nn.Module) -> bool:
    """Whether a network (TorchScript too: its modules keep their original class names) holds an instance or a
    group norm: layers whose statistics come from each input, so a whole slice and a patch differ."""
    return any(name in str(getattr(m, "original_name", type(m).__name__))
               for m in model.modules() for name in ("InstanceNorm", "GroupNorm"))


def load_target(
    path: str | os.PathLike,
    device: str | torch.device | None = "auto",
    *,
    class_names: Sequence[str] | None = None,
    normalisation: dict | None = None,
    folds: Sequence[str | int] | None = None,
    configuration: str | None = None,
    sliding_window: dict | None = None,
) -> Target:
    """Load a target network from a project checkpoint, a TorchScript archive, an nnU-Net folder or a MONAI bundle.

    A folder is read by :func:`napari_advseg.models.folder_targets.load_folder_target`
    (an nnU-Net v2 trained-model folder with a ``2d`` configuration, or a 2D
    MONAI bundle); ``folds`` and ``configuration`` apply to nnU-Net folders only.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`napari_advseg.models.target_files.save_target` or
        :func:`napari_advseg.models.target_files.export_torchscript`,
        or any TorchScript archive mapping ``(N, 1, H, W)`` to logits
        ``(N, C, H, W)``.
    device : str or torch.device or None
        Where to put the network (see
        :func:`napari_advseg.device.resolve_device`).
    class_names : sequence of str, optional
        Name of each output channel. When given, it overrides what the files
        declare; otherwise the sidecar's names are used, else the file's
        (``advseg.json`` for TorchScript), else
        :data:`napari_advseg.ORGAN_CLASSES` (and a line in :attr:`Target.notes`
        says so).
    normalisation : dict, optional
        Likewise; the fallback is ``{"mode": "zscore"}``, said in
        :attr:`Target.notes`.
    sliding_window : dict, optional
        Likewise (see :func:`~napari_advseg.models.target_meta.check_sliding_window`):
        a network trained on patches, run over each slice by a sliding window
        of its patch size; the fallback is none, the network sees whole slices.
        Not for folders, whose plans or bundle say how they are run.

    Returns
    -------
    Target
        Frozen (eval mode, no parameter requires grad), on ``device``,
        checked by :func:`validate_target` on a 64x64 input, with its :attr:`~Target.input_multiple` taken from
        ``"input_multiple"`` in the sidecar or ``advseg.json`` when declared
        there, else found by :func:`find_input_multiple`.

    Raises
    ------
    InputFileError
        Naming the file, when it is missing, is neither kind of file (text,
        image, random bytes, pickled Python objects, a dict of another format),
        its weights do not fit its network description (the keys are listed),
        its class names or normalisation are invalid (naming the sidecar when
        they come from it; an unreadable sidecar or one with unknown keys
        too), or the network's output
        does not fit (input channels, output channels vs. class names, or
        spatial size).
    AdvsegError
        For an unavailable device.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    if path.is_dir():
        from napari_advseg.models.folder_targets import load_folder_target

        if sliding_window is not None:
            raise InputFileError(path, "is a folder target, run as its plans or bundle say; a sliding window "
                                       "is declared for model files only")

        return load_folder_target(path, device, class_names=class_names, normalisation=normalisation, folds=folds,
                                  configuration=configuration)
    if folds or configuration:
        raise InputFileError(path, "is a model file; a fold or configuration applies to nnU-Net folders")
    torch_device = resolve_device(device)

    if _is_torchscript_archive(path):
        kind = "torchscript"
        model, meta = _read_torchscript(path, torch_device)
        if meta and meta.get("format", TORCHSCRIPT_META_FORMAT) != TORCHSCRIPT_META_FORMAT:
            meta = {}
    else:
        kind = "checkpoint"
        model, meta = _model_from_checkpoint(path, _read_checkpoint(path, torch_device))

    sidecar = _read_sidecar(path)
    given = {"class_names": class_names, "normalisation": normalisation, "sliding_window": sliding_window}
    chosen, notes = {}, []
    for key in ("class_names", "normalisation", "input_multiple", "sliding_window", "metrics"):
        for source, where in ((given, None), (sidecar, sidecar_path(path)), (meta, path)):
            if source.get(key) is not None:
                chosen[key] = (source[key], where)
                break
    value, where = chosen.get("class_names", (ORGAN_CLASSES, None))
    try:
        names = check_class_names(value)
    except ValueError as error:
        raise InputFileError(where or path, str(error)) from None
    value, where = chosen.get("normalisation", (None, None))
    try:
        norm = check_normalisation(value)
    except ValueError as error:
        raise InputFileError(where or path, str(error)) from None
    if "normalisation" not in chosen:
        notes.append(
            f"{path.name} declares no input normalisation; assuming per-volume z-score. If the network was "
            f"trained otherwise, give --normalisation ({_NORMALISATION_SYNTAX}) or write it into "
            f"{sidecar_path(path).name} beside the model"
        )
    if "class_names" not in chosen:
        notes.append(
            f"{path.name} declares no class names; assuming {', '.join(ORGAN_CLASSES)}, in that order "
            f"(give --class-names or write class_names into {sidecar_path(path).name})"
        )
    metrics = chosen.get("metrics", ({}, None))[0]
    if not isinstance(metrics, dict):
        metrics = {}
    declared, where = chosen.get("input_multiple", (None, path))
    if declared is not None and (isinstance(declared, bool) or not isinstance(declared, int) or declared < 1):
        raise InputFileError(where, f"has an invalid input_multiple {declared!r} (expected a positive integer)")

    window, where = chosen.get("sliding_window", (None, None))
    if window is not None:
        try:
            window = check_sliding_window(window)
        except ValueError as error:
            raise InputFileError(where or path, str(error)) from None
    elif _has_input_statistics_norm(model):
        notes.append(
            f"{path.name} normalises with instance or group norm, whose statistics depend on the size of what it "
            f"is given, and declares no sliding window: it is run on whole slices. If it was trained on patches, give "
            f"--sliding-window H,W[:OVERLAP[:MODE]] or write sliding_window into {sidecar_path(path).name} "
            f"(\"none\" to say whole slices)"
        )

    model = freeze(model.to(torch_device))
    if window is not None:  # the network only ever sees windows of its patch size
        model = freeze(WindowedNetwork(model, window).to(torch_device))
    target = Target(model, names, norm, kind, str(path), torch_device, metrics, notes=notes, sliding_window=window)
    validate_target(target, VALIDATION_SIZE, VALIDATION_SIZE)
    if window is not None:
        target.input_multiple = 1  # every window is roi_size; smaller slices are padded to it
    else:
        target.input_multiple = declared if declared is not None else find_input_multiple(target)
    return target
