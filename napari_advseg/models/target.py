"""The target network: load it, freeze it, and check that its output fits.

The attack of Chen et al. needs gradients of a *frozen* segmentation network's
output with respect to its input image. A :class:`Target` wraps such a network
with what the attack needs to know about it: the name of each output channel
and how its input intensities were normalised.

Two file kinds are read by :func:`load_target`:

``"checkpoint"``
    A project checkpoint written by :func:`save_target`: a plain dictionary
    (``format = "napari-advseg-target"``) holding the :class:`UNet2D`
    description, its weights, the class names, the normalisation and optional
    metrics. It is read with ``torch.load(weights_only=True)``, so loading it
    cannot run code.
``"torchscript"``
    Any TorchScript archive (for instance one written by
    :func:`export_torchscript`, or a network from another project). Class
    names and normalisation come from its ``advseg.json`` extra file when
    present. Note that a TorchScript archive holds code; load only files from
    trusted sources.

Every loaded network is put in eval mode with ``requires_grad=False`` on all
parameters and checked by :func:`validate_target`: one forward pass must give
a 4D logits tensor with one channel per class and the input's height and width.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_advseg.data.organs import ORGAN_CLASSES
from napari_advseg.io.atomic import atomic_write
from napari_advseg.device import resolve_device
from napari_advseg.data.intensity import NORMALISATION_MODES
from napari_advseg.errors import AdvsegError, InputFileError, first_line
from napari_advseg.models.unet import UNet2D

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "TORCHSCRIPT_META_FILE",
    "NORMALISATION_MODES",
    "Target",
    "check_normalisation",
    "freeze",
    "make_target",
    "save_target",
    "export_torchscript",
    "load_target",
    "validate_target",
]

CHECKPOINT_FORMAT = "napari-advseg-target"
"""Value of the ``"format"`` key of a project checkpoint."""
CHECKPOINT_VERSION = 1
"""Newest checkpoint version this code writes and reads."""
TORCHSCRIPT_META_FILE = "advseg.json"
"""Name of the extra file holding class names and normalisation in a TorchScript archive."""
TORCHSCRIPT_META_FORMAT = "napari-advseg-torchscript"
DEFAULT_NORMALISATION: dict = {"mode": "zscore"}
"""A target's input normalisation when its file names none. The others: ``{"mode": "window",
"window": [lo, hi]}`` (HU clipped to ``[lo, hi]`` and mapped linearly to ``[-1, 1]``)."""
VALIDATION_SIZE = 64
"""Height and width (pixels) of the test input :func:`load_target` uses."""

_REQUIRED_KEYS = ("format", "version", "arch", "state_dict", "class_names", "normalisation")
_MAX_LISTED = 5


# --------------------------------------------------------------------------
# the Target
# --------------------------------------------------------------------------


@dataclass
class Target:
    """A frozen segmentation network and what the attack needs to know about it.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode, with ``requires_grad=False`` on every
        parameter, on :attr:`device`. Maps ``(N, 1, H, W)`` normalised images
        to logits ``(N, C, H, W)``.
    class_names : tuple of str
        Name of each output channel; ``len(class_names) == C``.
    normalisation : dict
        How the network's input was normalised: ``{"mode": "zscore"}`` or
        ``{"mode": "window", "window": [lo, hi]}`` (HU).
    kind : str
        ``"checkpoint"``, ``"torchscript"``, or ``"memory"`` for a network
        that was not loaded from a file (see :func:`make_target`).
    path : str or None
        The file it was loaded from.
    device : torch.device
        Where the network lives; inputs are moved there.
    metrics : dict
        Scores stored with a checkpoint (e.g. validation Dice), else empty.
    """

    model: nn.Module
    class_names: tuple[str, ...]
    normalisation: dict
    kind: str
    path: str | None
    device: torch.device
    metrics: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the frozen network.

        Parameters
        ----------
        x : torch.Tensor
            Normalised images, shape ``(N, 1, H, W)``; moved to
            :attr:`device` as float32 (differentiably).

        Returns
        -------
        torch.Tensor
            Logits, shape ``(N, n_classes, H, W)``. Gradients flow back to
            ``x``; the weights receive none.
        """
        return self.model(x.to(self.device, torch.float32))

    @property
    def n_classes(self) -> int:
        """Number of output channels (classes, background included)."""
        return len(self.class_names)

    @property
    def name(self) -> str:
        """The file name, or ``"<in-memory model>"``."""
        return self.path if self.path else "<in-memory model>"


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and turn off ``requires_grad`` on all its parameters (in place).

    Returns
    -------
    torch.nn.Module
        The same module.
    """
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _target_error(path: str | None, problem: str) -> AdvsegError:
    return InputFileError(path, problem) if path else AdvsegError(f"target model: {problem}")


def check_normalisation(normalisation: Any) -> dict:
    """Check a normalisation description and return a clean copy.

    Parameters
    ----------
    normalisation : dict or None
        ``{"mode": "zscore"}`` or ``{"mode": "window", "window": [lo, hi]}``
        with ``lo < hi`` in HU; ``None`` means z-score. Other keys are kept if
        they hold plain values.

    Returns
    -------
    dict
        A new dict; ``"window"`` becomes a list of two floats.

    Raises
    ------
    ValueError
        For an unknown mode or a bad window.
    """
    if normalisation is None:
        return dict(DEFAULT_NORMALISATION)
    if not isinstance(normalisation, dict):
        raise ValueError(f"normalisation must be a dict like {{'mode': 'zscore'}}, got {normalisation!r}")
    mode = normalisation.get("mode")
    if mode not in NORMALISATION_MODES:
        raise ValueError(
            f"unknown normalisation mode {mode!r}: expected one of {', '.join(map(repr, NORMALISATION_MODES))}"
        )
    clean = _plain(normalisation, "normalisation")
    if mode == "window":
        window = normalisation.get("window")
        try:
            lo, hi = (float(v) for v in window)
        except (TypeError, ValueError):
            raise ValueError(f"normalisation mode 'window' needs 'window': [lo, hi] in HU, got {window!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"normalisation window must be two finite numbers lo < hi, got {window!r}")
        clean["window"] = [lo, hi]
    return clean


def _check_class_names(class_names: Any) -> tuple[str, ...]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or len(class_names) == 0:
        raise ValueError(f"class names must be a non-empty list of strings, got {class_names!r}")
    names = tuple(class_names)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"class names must be strings, got {list(names)!r}")
    return names


def _plain(value: Any, where: str) -> Any:
    """A copy of ``value`` made of dict/list/str/int/float/bool/None only.

    numpy scalars and arrays and torch tensors become Python numbers and
    lists; tuples become lists. Such data loads with ``weights_only=True``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return array.tolist()
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, (str, int)):
                key = str(key)
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ValueError(
        f"{where} holds a {type(value).__name__}; only numbers, strings, lists and dicts can be stored"
    )


def make_target(
    model: nn.Module,
    *,
    class_names: Sequence[str] = ORGAN_CLASSES,
    normalisation: dict | None = None,
    device: str | torch.device | None = None,
    validate: bool = True,
) -> Target:
    """Wrap an in-memory network (e.g. one just trained) as a :class:`Target`.

    Parameters
    ----------
    model : torch.nn.Module
        The network; moved to ``device`` and frozen **in place** (eval mode,
        ``requires_grad=False``). :func:`napari_advseg.models.unet.train_unet` turns
        gradients back on if it is trained further.
    class_names : sequence of str
        Name of each output channel.
    normalisation : dict, optional
        See :func:`check_normalisation`; default z-score.
    device : str or torch.device, optional
        Default: where the model's parameters are (CPU for a parameterless model).
    validate : bool
        Run :func:`validate_target` on a 64x64 input.

    Returns
    -------
    Target
        With ``kind="memory"`` and ``path=None``.
    """
    try:
        names = _check_class_names(class_names)
        norm = check_normalisation(normalisation)
    except ValueError as error:
        raise AdvsegError(f"target model: {error}") from None
    if device is None:
        parameter = next(iter(model.parameters()), None)
        torch_device = parameter.device if parameter is not None else torch.device("cpu")
    else:
        torch_device = resolve_device(device)
    model.to(torch_device)
    target = Target(freeze(model), names, norm, "memory", None, torch_device)
    if validate:
        validate_target(target, VALIDATION_SIZE, VALIDATION_SIZE)
    return target


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def validate_target(target: Target, height: int = 64, width: int = 64) -> None:
    """Check that the network's output fits the class names and the input size.

    Runs one forward pass (no gradients) on a zero tensor of shape
    ``(1, 1, height, width)``.

    Parameters
    ----------
    target : Target
        The network to check.
    height, width : int
        Size of the test input in pixels.

    Raises
    ------
    AdvsegError
        (an :class:`InputFileError` naming ``target.path`` when there is one)
        when the forward pass fails, or the output is not a 4D floating point
        tensor ``(1, len(class_names), height, width)``.
    """
    x = torch.zeros(1, 1, height, width, device=target.device)
    try:
        with torch.no_grad():
            out = target.model(x)
    except Exception as error:  # noqa: BLE001 - any failure of a foreign model is reported
        raise _target_error(
            target.path,
            f"the model fails on a single-channel (1, 1, {height}, {width}) test image: {first_line(error)}",
        ) from None
    if not isinstance(out, torch.Tensor):
        raise _target_error(
            target.path, f"the model returns a {type(out).__name__}, expected one logits tensor (N, C, H, W)"
        )
    if out.ndim != 4:
        raise _target_error(
            target.path,
            f"the model output has shape {tuple(out.shape)} for a (1, 1, {height}, {width}) input; "
            "expected 4D logits (N, C, H, W)",
        )
    n_channels = int(out.shape[1])
    if n_channels != len(target.class_names):
        names = ", ".join(target.class_names)
        raise _target_error(
            target.path,
            f"the model outputs {n_channels} channels but {len(target.class_names)} classes are expected "
            f"({names}); give the right class names",
        )
    if tuple(out.shape[2:]) != (height, width) or out.shape[0] != 1:
        raise _target_error(
            target.path,
            f"the model output is {out.shape[2]}x{out.shape[3]} pixels (batch {out.shape[0]}) for a "
            f"{height}x{width} input (batch 1); the logits must have the input's size",
        )
    if not out.is_floating_point():
        raise _target_error(
            target.path, f"the model outputs {out.dtype} values; expected floating point logits, not labels"
        )


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_name)`` beside ``path``, then move the result onto ``path``."""
    return atomic_write(path, lambda tmp: write(str(tmp)))


def save_target(
    path: str | os.PathLike,
    model: UNet2D | Target,
    *,
    class_names: Sequence[str] | None = None,
    normalisation: dict | None = None,
    metrics: dict | None = None,
) -> Path:
    """Save a :class:`UNet2D` as a project checkpoint, atomically.

    Parameters
    ----------
    path : str or path-like
        Destination file (``.pt``); parent folders are created. The file is
        written to a temporary name in the same folder and renamed, so an error
        never leaves a partial file.
    model : UNet2D or Target
        The network (a :class:`Target` wrapping a :class:`UNet2D` also works;
        its class names, normalisation and metrics are then the defaults).
    class_names : sequence of str, optional
        Name of each output channel; default
        :data:`napari_advseg.ORGAN_CLASSES`. Must match ``model.arch["n_classes"]``.
    normalisation : dict, optional
        How the training images were normalised (see
        :func:`check_normalisation`); default ``{"mode": "zscore"}``.
    metrics : dict, optional
        Plain scores to keep with the weights (numpy/torch numbers are
        converted).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    AdvsegError
        For a model that is not a :class:`UNet2D`, class names that do not match
        its output, a bad normalisation or metrics that are not plain data.

    Notes
    -----
    The file is ``torch.save`` of ``{"format": "napari-advseg-target",
    "version": 1, "arch": ..., "state_dict": ... (CPU tensors),
    "class_names": [...], "normalisation": {...}, "metrics": {...}}``,
    readable with ``torch.load(path, weights_only=True)``.
    """
    if isinstance(model, Target):
        class_names = model.class_names if class_names is None else class_names
        normalisation = model.normalisation if normalisation is None else normalisation
        metrics = model.metrics if metrics is None else metrics
        model = model.model
    if not isinstance(model, UNet2D):
        raise AdvsegError(
            f"only a UNet2D can be saved as a napari-advseg checkpoint, got {type(model).__name__}; "
            "use export_torchscript for other networks"
        )
    class_names = ORGAN_CLASSES if class_names is None else class_names
    try:
        names = _check_class_names(class_names)
        norm = check_normalisation(normalisation)
        plain_metrics = _plain(metrics or {}, "metrics")
    except ValueError as error:
        raise AdvsegError(f"cannot save {path}: {error}") from None
    if len(names) != model.arch["n_classes"]:
        raise AdvsegError(
            f"cannot save {path}: the network has {model.arch['n_classes']} output classes "
            f"but {len(names)} class names were given"
        )
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": {key: int(value) for key, value in model.arch.items()},
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "class_names": list(names),
        "normalisation": norm,
        "metrics": plain_metrics,
    }
    return _atomic_write(Path(path), lambda name: torch.save(checkpoint, name))


def export_torchscript(
    target_or_model: Target | nn.Module,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    normalisation: dict | None = None,
) -> Path:
    """Save a network as a TorchScript archive with its class names, atomically.

    The network is copied to the CPU in eval mode and compiled with
    :func:`torch.jit.script` (falling back to :func:`torch.jit.trace` on a
    ``(1, in_channels, 64, 64)`` input when scripting fails; a traced network
    may only work for inputs like that one). Class names and normalisation are
    stored as the extra file ``advseg.json``.

    Parameters
    ----------
    target_or_model : Target or torch.nn.Module
        What to export; the original is not modified.
    path : str or path-like
        Destination file; parent folders are created.
    class_names : sequence of str, optional
        Default: the target's, else :data:`napari_advseg.ORGAN_CLASSES`.
    normalisation : dict, optional
        Default: the target's, else ``{"mode": "zscore"}``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    AdvsegError
        When the network cannot be compiled, or its output does not fit the
        class names or the input size (checked before writing).
    """
    metrics: dict = {}
    if isinstance(target_or_model, Target):
        model = target_or_model.model
        class_names = target_or_model.class_names if class_names is None else class_names
        normalisation = target_or_model.normalisation if normalisation is None else normalisation
        metrics = target_or_model.metrics
    elif isinstance(target_or_model, nn.Module):
        model = target_or_model
    else:
        raise AdvsegError(f"cannot export a {type(target_or_model).__name__}: expected a Target or a torch module")
    class_names = ORGAN_CLASSES if class_names is None else class_names
    try:
        names = _check_class_names(class_names)
        norm = check_normalisation(normalisation)
        plain_metrics = _plain(metrics, "metrics")
    except ValueError as error:
        raise AdvsegError(f"cannot export {path}: {error}") from None

    cpu_model = freeze(copy.deepcopy(model).cpu())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if isinstance(cpu_model, torch.jit.ScriptModule):
            compiled = cpu_model
        else:
            try:
                compiled = torch.jit.script(cpu_model)
            except Exception:  # noqa: BLE001 - scripting fails for much valid Python; try tracing
                in_channels = getattr(cpu_model, "arch", {}).get("in_channels", 1)
                example = torch.zeros(1, in_channels, VALIDATION_SIZE, VALIDATION_SIZE)
                try:
                    compiled = torch.jit.trace(cpu_model, example, check_trace=False)
                except Exception as error:  # noqa: BLE001
                    raise AdvsegError(
                        f"cannot export {path}: the network can be neither scripted nor traced: {first_line(error)}"
                    ) from None
    compiled = freeze(compiled)
    validate_target(
        Target(compiled, names, norm, "torchscript", str(path), torch.device("cpu")), VALIDATION_SIZE, VALIDATION_SIZE
    )
    meta = {
        "format": TORCHSCRIPT_META_FORMAT,
        "version": CHECKPOINT_VERSION,
        "class_names": list(names),
        "normalisation": norm,
        "metrics": plain_metrics,
    }
    extra = {TORCHSCRIPT_META_FILE: json.dumps(meta, allow_nan=True)}

    def write(name: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(compiled, name, _extra_files=extra)

    return _atomic_write(Path(path), write)


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


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


def _listed(keys: Sequence[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else "")


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
            "save it with napari_advseg.models.target.save_target or export it as TorchScript",
        )
    missing = [key for key in _REQUIRED_KEYS if key not in checkpoint]
    if "format" in checkpoint and checkpoint["format"] != CHECKPOINT_FORMAT:
        raise InputFileError(
            path, f"has format {checkpoint['format']!r}; expected a {CHECKPOINT_FORMAT!r} checkpoint"
        )
    if missing:
        raise InputFileError(
            path, f"is a torch file but not a napari-advseg target checkpoint (missing keys: {_listed(missing)})"
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
        with torch.random.fork_rng(devices=[]):
            model = UNet2D(**arch)
    except (TypeError, ValueError) as error:
        raise InputFileError(path, f"has an invalid network description {arch!r}: {first_line(error)}") from None
    state = checkpoint["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputFileError(path, "has an invalid state_dict (expected a dict of tensors)")
    expected = model.state_dict()
    absent = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} (file {tuple(state[key].shape)}, network {tuple(expected[key].shape)})"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    if absent or unexpected or wrong_shape:
        parts = []
        if wrong_shape:
            parts.append(f"wrong shape: {_listed(wrong_shape)}")
        if absent:
            parts.append(f"missing: {_listed(absent)}")
        if unexpected:
            parts.append(f"unexpected: {_listed(unexpected)}")
        raise InputFileError(path, f"weights do not fit the network described by {arch} - " + "; ".join(parts))
    model.load_state_dict(state)
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


def load_target(
    path: str | os.PathLike,
    device: str | torch.device | None = "auto",
    *,
    class_names: Sequence[str] | None = None,
    normalisation: dict | None = None,
) -> Target:
    """Load a target network from a project checkpoint or a TorchScript archive.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_target` or :func:`export_torchscript`,
        or any TorchScript archive mapping ``(N, 1, H, W)`` to logits
        ``(N, C, H, W)``.
    device : str or torch.device or None
        Where to put the network (see
        :func:`napari_advseg.device.resolve_device`).
    class_names : sequence of str, optional
        Name of each output channel. When given, it overrides what the file
        stores; otherwise the file's names are used (``advseg.json`` for
        TorchScript), else :data:`napari_advseg.ORGAN_CLASSES`.
    normalisation : dict, optional
        Likewise; the fallback is ``{"mode": "zscore"}``.

    Returns
    -------
    Target
        Frozen (eval mode, no parameter requires grad), on ``device``, and
        checked by :func:`validate_target` on a 64x64 input.

    Raises
    ------
    InputFileError
        Naming the file, when it is missing, is neither kind of file (text,
        image, random bytes, pickled Python objects, a dict of another format),
        its weights do not fit its network description (the keys are listed),
        its class names or normalisation are invalid, or the network's output
        does not fit (channels vs. class names, or spatial size).
    AdvsegError
        For an unavailable device.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not a model file")
    torch_device = resolve_device(device)

    if _is_torchscript_archive(path):
        kind = "torchscript"
        model, meta = _read_torchscript(path, torch_device)
        if meta and meta.get("format", TORCHSCRIPT_META_FORMAT) != TORCHSCRIPT_META_FORMAT:
            meta = {}
    else:
        kind = "checkpoint"
        model, meta = _model_from_checkpoint(path, _read_checkpoint(path, torch_device))

    try:
        names = _check_class_names(
            class_names if class_names is not None else meta.get("class_names", ORGAN_CLASSES)
        )
        norm = check_normalisation(normalisation if normalisation is not None else meta.get("normalisation"))
    except ValueError as error:
        raise InputFileError(path, str(error)) from None
    metrics = meta.get("metrics") or {}
    if not isinstance(metrics, dict):
        metrics = {}

    model = freeze(model.to(torch_device))
    target = Target(model, names, norm, kind, str(path), torch_device, metrics)
    validate_target(target, VALIDATION_SIZE, VALIDATION_SIZE)
    return target
