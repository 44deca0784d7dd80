"""The target network: freeze it and check that its output fits.

The attack of Chen et al. needs gradients of a *frozen* segmentation network's
output with respect to its input image. A :class:`Target` wraps such a network
with what the attack needs to know about it: the name of each output channel
and how its input intensities were normalised.

Every target is put in eval mode with ``requires_grad=False`` on all
parameters and checked by :func:`validate_target`: one forward pass must give
a 4D logits tensor with one channel per class and the input's height and width.
Files holding targets are written by :mod:`napari_advseg.models.target_files`
and read by :mod:`napari_advseg.models.target_load`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError, InputFileError, first_line
from napari_advseg.data.intensity import NORMALISATION_MODES

__all__ = [
    "DEFAULT_NORMALISATION",
    "VALIDATION_SIZE",
    "Target",
    "check_class_names",
    "check_normalisation",
    "freeze",
    "make_target",
    "plain_data",
    "validate_target",
]

DEFAULT_NORMALISATION: dict = {"mode": "zscore"}
"""A target's input normalisation when its file names none. The others: ``{"mode": "window",
"window": [lo, hi]}`` (HU clipped to ``[lo, hi]`` and mapped linearly to ``[-1, 1]``)."""
VALIDATION_SIZE = 64
"""Height and width (pixels) of the test input :func:`make_target`, the loader and the exporter use."""


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
    clean = plain_data(normalisation, "normalisation")
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


def check_class_names(class_names: Any) -> tuple[str, ...]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or len(class_names) == 0:
        raise ValueError(f"class names must be a non-empty list of strings, got {class_names!r}")
    names = tuple(class_names)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"class names must be strings, got {list(names)!r}")
    return names


def plain_data(value: Any, where: str) -> Any:
    """A copy of ``value`` made of dict/list/str/int/float/bool/None only.

    numpy scalars and arrays and torch tensors become Python numbers and
    lists; tuples become lists. Such data loads with ``weights_only=True``.
    """
    if isinstance(value, np.generic):  # first: numpy.float64 is also a float, but pickles as numpy
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
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
            out[key] = plain_data(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
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
        ``requires_grad=False``). :func:`napari_advseg.models.unet_training.train_unet` turns
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
        names = check_class_names(class_names)
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
