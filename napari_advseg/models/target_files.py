"""Writing target networks to files: project checkpoints and TorchScript archives.

Two file kinds hold a target (both are read by
:func:`napari_advseg.models.target_load.load_target`):

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
    present; it may also declare ``"input_multiple"``, the number of pixels
    the input's height and width must be divisible by (else it is probed), and
    ``"sliding_window"``, the patch a network trained on patches is run by.
    Note that a TorchScript archive holds code; load only files from
    trusted sources.

Both writers go through :func:`napari_advseg.io.atomic.atomic_write`, so an
error never leaves a partial file.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.errors import AdvsegError, first_line
from napari_advseg.io.atomic import atomic_write
from napari_advseg.io.json_write import strict_json
from napari_advseg.models.sliding_window import WindowedNetwork
from napari_advseg.models.target import VALIDATION_SIZE, Target, freeze, validate_target
from napari_advseg.models.target_meta import check_class_names, check_normalisation, plain_data
from napari_advseg.models.unet import UNet2D

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "TORCHSCRIPT_META_FILE",
    "TORCHSCRIPT_META_FORMAT",
    "save_target",
    "export_torchscript",
]

CHECKPOINT_FORMAT = "napari-advseg-target"
"""Value of the ``"format"`` key of a project checkpoint."""
CHECKPOINT_VERSION = 1
"""Newest checkpoint version this code writes and reads."""
TORCHSCRIPT_META_FILE = "advseg.json"
"""Name of the extra file holding class names and normalisation in a TorchScript archive."""
TORCHSCRIPT_META_FORMAT = "napari-advseg-torchscript"
"""Value of the ``"format"`` key of that extra file."""


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
        names = check_class_names(class_names)
        norm = check_normalisation(normalisation)
        plain_metrics = plain_data(metrics or {}, "metrics")
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
    # torch.save gets the temporary name as a str, as torch.jit.save below needs
    return atomic_write(path, lambda tmp: torch.save(checkpoint, str(tmp)))


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
    may only work for inputs like that one). Class names and normalisation (and
    a target's declared sliding window, the network itself being exported) are
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
    window = None
    if isinstance(target_or_model, Target):
        model = target_or_model.model
        class_names = target_or_model.class_names if class_names is None else class_names
        normalisation = target_or_model.normalisation if normalisation is None else normalisation
        metrics = target_or_model.metrics
        window = target_or_model.sliding_window
        if window is not None:  # the network itself is exported; its window is declared beside it
            model = model.network
    elif isinstance(target_or_model, nn.Module):
        model = target_or_model
    else:
        raise AdvsegError(f"cannot export a {type(target_or_model).__name__}: expected a Target or a torch module")
    class_names = ORGAN_CLASSES if class_names is None else class_names
    try:
        names = check_class_names(class_names)
        norm = check_normalisation(normalisation)
        plain_metrics = plain_data(metrics, "metrics")
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
    checked = compiled if window is None else WindowedNetwork(compiled, window)
    validate_target(
        Target(checked, names, norm, "torchscript", str(path), torch.device("cpu"), sliding_window=window),
        VALIDATION_SIZE, VALIDATION_SIZE
    )
    meta = {
        "format": TORCHSCRIPT_META_FORMAT,
        "version": CHECKPOINT_VERSION,
        "class_names": list(names),
        "normalisation": norm,
        "metrics": plain_metrics,
        **({} if window is None else {"sliding_window": window}),
    }
    extra = {TORCHSCRIPT_META_FILE: strict_json(meta, indent=None)}

    def write(name: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(compiled, name, _extra_files=extra)

    return atomic_write(path, lambda tmp: write(str(tmp)))
