"""The target network: freeze it and check that its output fits.

The attack of Chen et al. needs gradients of a *frozen* segmentation network's
output with respect to its input image. A :class:`Target` wraps such a network
with what the attack needs to know about it: the name of each output channel
and how its input intensities were normalised.

Every target is put in eval mode with ``requires_grad=False`` on all
parameters and checked by :func:`validate_target`: one forward pass must give
a 4D logits tensor with one channel per class and the input's height and width;
a failure names its cause (input channels, output channels, output size).
Networks that need a height and width divisible by their stride (found by
:func:`find_input_multiple`) get their input padded and their logits cropped
back by :meth:`Target.__call__`, so any slice size works.
Files holding targets are written by :mod:`napari_advseg.models.target_files`
and read by :mod:`napari_advseg.models.target_load`; the class names and the
normalisation stored with them are checked by :mod:`napari_advseg.models.target_meta`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import re

import torch
import torch.nn.functional as F
from torch import nn

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError, InputFileError, first_line
from napari_advseg.models.target_meta import (check_class_names, check_normalisation, is_volumetric,
                                               slices_per_call)
from napari_advseg.models.unet import UNet2D

__all__ = [
    "VALIDATION_SIZE",
    "Target",
    "find_input_multiple",
    "freeze",
    "is_volumetric",
    "listed",
    "load_fitting_weights",
    "make_target",
    "slices_per_call",
    "validate_target",
]

VALIDATION_SIZE = 64
"""Height and width (pixels) of the test input :func:`make_target`, the loader and the exporter use.

A multiple of every stride up to 64, so a network that needs divisible sizes passes it unpadded."""

_MULTIPLES = (1, 2, 4, 8, 16, 32, 64)
"""Input multiples (pixels) :func:`find_input_multiple` tries, smallest first."""
_PROBE_MIN = 96
"""Smallest probe size (pixels): large enough that a stride-32 network keeps 3x3 pixels at its bottleneck."""


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
        How the network's input was normalised, in HU: ``{"mode": "zscore"}``,
        ``{"mode": "window", "window": [lo, hi], "range": [a, b]}``,
        ``{"mode": "ct", "clip": [lo, hi], "mean": m, "std": s}`` or
        ``{"mode": "none"}`` (see :data:`~napari_advseg.models.target_meta.DEFAULT_NORMALISATION`).
    kind : str
        ``"checkpoint"``, ``"torchscript"``, or ``"memory"`` for a network
        that was not loaded from a file (see :func:`make_target`).
    path : str or None
        The file it was loaded from.
    device : torch.device
        Where the network lives; inputs are moved there.
    metrics : dict
        Scores stored with a checkpoint (e.g. validation Dice), else empty.
    input_multiple : int
        The network needs its input height and width divisible by this many
        pixels (its total stride); 1 when it takes any size.
    notes : list of str
        What was assumed for want of a declaration (e.g. the z-score
        normalisation of a TorchScript file that names none), one line each,
        for the user to read.
    slab_depth : int or None
        None for a 2D network: each slice of a call is segmented on its own.
        An int for a 3D network (a *slab target*): the model reads the ``N``
        slices of a call as ``N`` consecutive canonical slices, the z axis of
        a sub-volume, runs the network's 3D inference on them and returns
        their logits; ``slab_depth`` (at least 1) is the number of
        consecutive slices a call should carry for the network to see its
        context (its patch depth in the volume's slices, set by
        :func:`~napari_advseg.models.folder_targets.fit_target_to_volume`).
        Callers give such a target whole stacks of consecutive slices
        (:func:`slices_per_call`), never a batch of unrelated slices.
    sliding_window : dict or None
        A file target that declares one (``sliding_window`` in its sidecar or
        ``advseg.json``, or ``--sliding-window``): the checked declaration
        (:func:`~napari_advseg.models.target_meta.check_sliding_window`), and
        :attr:`model` is the network wrapped in
        :class:`~napari_advseg.models.sliding_window.WindowedNetwork`. None:
        the network sees each whole slice (folder targets run their
        framework's own sliding window inside :attr:`model`).
    """

    model: nn.Module
    class_names: tuple[str, ...]
    normalisation: dict
    kind: str
    path: str | None
    device: torch.device
    metrics: dict = field(default_factory=dict)
    input_multiple: int = 1
    notes: list[str] = field(default_factory=list)
    slab_depth: int | None = None
    sliding_window: dict | None = None

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

        Notes
        -----
        When ``H`` or ``W`` is not a multiple of :attr:`input_multiple`, the
        input is padded by edge replication (split evenly between both sides,
        like :class:`~napari_advseg.models.unet.UNet2D`) and the logits are
        cropped back; both steps pass gradients. Replication is used rather
        than a constant because the normalised value of air differs between
        normalisations and volumes, while the edge pixels are always in range.
        Inputs that already fit are passed unchanged.
        """
        x = x.to(self.device, torch.float32)
        height, width = int(x.shape[-2]), int(x.shape[-1])
        multiple = self.input_multiple
        pad_h = (multiple - height % multiple) % multiple
        pad_w = (multiple - width % multiple) % multiple
        if pad_h == 0 and pad_w == 0:
            return self.model(x)
        top, left = pad_h // 2, pad_w // 2
        logits = self.model(F.pad(x, [left, pad_w - left, top, pad_h - top], mode="replicate"))
        if tuple(logits.shape[-2:]) != (height + pad_h, width + pad_w):
            raise _target_error(
                self.path,
                f"the model output is {logits.shape[-2]}x{logits.shape[-1]} pixels for a "
                f"{height + pad_h}x{width + pad_w} (padded) input; the logits must have the input's size",
            )
        return logits[..., top : top + height, left : left + width]

    @property
    def n_classes(self) -> int:
        """Number of output channels (classes, background included)."""
        return len(self.class_names)

    @property
    def volumetric(self) -> bool:
        """A 3D network (a slab target): a call's slices are consecutive slices of one volume."""
        return is_volumetric(self)

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


MAX_LISTED = 5
"""Keys named in a message before the rest are counted (:func:`listed`)."""


def listed(keys: Sequence[str]) -> str:
    """The first :data:`MAX_LISTED` keys, comma-separated, and how many more there are."""
    keys = list(keys)
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def load_fitting_weights(network: nn.Module, state: dict, path, described_by: str) -> None:
    """Load ``state`` into ``network``, or raise :class:`InputFileError` naming ``path`` and the keys that do
    not fit: wrong shape, missing, unexpected. ``described_by`` ends "weights do not fit the network ...".
    """
    expected = network.state_dict()
    wrong = [f"{k} (file {tuple(state[k].shape)}, network {tuple(v.shape)})" for k, v in expected.items()
             if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    parts = [f"{label}: {listed(keys)}" for label, keys in
             (("wrong shape", wrong), ("missing", missing), ("unexpected", unexpected)) if keys]
    if parts:
        raise InputFileError(path, f"weights do not fit {described_by} - " + "; ".join(parts))
    network.load_state_dict(state)


def _target_error(path: str | None, problem: str) -> AdvsegError:
    return InputFileError(path, problem) if path else AdvsegError(f"target model: {problem}")


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
        See :func:`~napari_advseg.models.target_meta.check_normalisation`; default z-score.
    device : str or torch.device, optional
        Default: where the model's parameters are (CPU for a parameterless model).
    validate : bool
        Run :func:`validate_target` on a 64x64 input and find the network's
        input multiple (:func:`find_input_multiple`); without it the input
        multiple is 1 (no padding).

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
        target.input_multiple = find_input_multiple(target)
    return target


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------


def _root_cause(error: BaseException) -> str:
    """The last ``SomeError: message`` line of an error's text (TorchScript puts the real cause there), else its first line."""
    causes = re.findall(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$", str(error), flags=re.MULTILINE)
    if not causes:
        return first_line(error)
    name, message = causes[-1]
    text = f"{name.rsplit('.', 1)[-1]}: {message.strip()}"
    return text if len(text) <= 300 else text[:297] + "..."


def _first_conv_weight(model: nn.Module) -> torch.Tensor | None:
    """The first 4D parameter in registration order, normally the first convolution's weight ``(out, in, kh, kw)``."""
    try:
        for _, parameter in model.named_parameters():
            if parameter.ndim == 4:
                return parameter
    except Exception:  # noqa: BLE001 - a foreign module may not list its parameters
        return None
    return None


def _failure(target: Target, error: BaseException, height: int, width: int) -> AdvsegError:
    """An error naming why the network failed on a ``(1, 1, height, width)`` input: input channels, else the cause."""
    match = re.search(r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels", str(error))
    weight = _first_conv_weight(target.model)
    if match:
        expected, source = int(match.group(1)), "its first convolution"
    elif weight is not None and int(weight.shape[1]) != 1:
        expected, source = int(weight.shape[1]), f"its first convolution's weight is {tuple(weight.shape)}"
    else:
        expected = None
    if expected is not None and expected != 1:
        return _target_error(
            target.path,
            f"the model expects {expected} input channels ({source}) but a target is given 1 "
            "(one CT slice, shape (N, 1, H, W)); export a single-channel network",
        )
    padded = ""
    multiple = target.input_multiple
    if height % multiple or width % multiple:
        padded = f" (padded to a multiple of {multiple} pixels)"
    if target.sliding_window is not None:
        roi = target.sliding_window["roi_size"]
        padded = f" (run by its sliding window of {roi[0]} x {roi[1]} pixels)"
    return _target_error(
        target.path,
        f"the model fails on a single-channel (1, 1, {height}, {width}) test image{padded}: {_root_cause(error)}",
    )


def validate_target(target: Target, height: int = 64, width: int = 64) -> None:
    """Check that the network's output fits the class names and the input size.

    Runs one forward pass of ``target`` (no gradients; padded to
    :attr:`Target.input_multiple` as every call is) on a zero tensor of shape
    ``(1, 1, height, width)``.

    Parameters
    ----------
    target : Target
        The network to check.
    height, width : int
        Size of the test input in pixels (a CT's slice size where it is known).

    Raises
    ------
    AdvsegError
        (an :class:`InputFileError` naming ``target.path`` when there is one)
        when the forward pass fails (the message names the expected number of
        input channels when that is the cause, else the error's last line), or
        the output is not a 4D floating point tensor
        ``(1, len(class_names), height, width)``.
    """
    x = torch.zeros(1, 1, height, width, device=target.device)
    try:
        with torch.no_grad():
            out = target(x)
    except AdvsegError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a foreign model is reported
        raise _failure(target, error, height, width) from None
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


def _probe_size(multiple: int) -> int:
    """An odd multiple of ``multiple`` of at least :data:`_PROBE_MIN` pixels (so it is no multiple of ``2 * multiple``)."""
    factor = -(-_PROBE_MIN // multiple)
    return multiple * (factor + 1 - factor % 2)


def find_input_multiple(target: Target) -> int:
    """The smallest input multiple (pixels) the network needs for its height and width.

    A :class:`~napari_advseg.models.unet.UNet2D` pads its input itself (1).
    Any other network is run (no gradients) on zero images of an odd multiple
    of 1, 2, 4, ... 64 pixels (at least 96), unpadded, until one gives logits
    of the input's size. Call it after :func:`validate_target` passed on a
    :data:`VALIDATION_SIZE` input.

    Raises
    ------
    AdvsegError
        When no size but :data:`VALIDATION_SIZE` works (e.g. a network traced
        for one input size), naming the failure at the largest probe.
    """
    if isinstance(target.model, UNet2D):
        return 1
    last = ""
    for multiple in _MULTIPLES:
        size = _probe_size(multiple)
        x = torch.zeros(1, 1, size, size, device=target.device)
        try:
            with torch.no_grad():
                out = target.model(x)
        except Exception as error:  # noqa: BLE001 - a failure here means "not this multiple"
            last = _root_cause(error)
            continue
        if isinstance(out, torch.Tensor) and out.ndim == 4 and tuple(out.shape[-2:]) == (size, size):
            return multiple
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        last = f"output {shape}"
    raise _target_error(
        target.path,
        f"the model works on a {VALIDATION_SIZE}x{VALIDATION_SIZE} input but on no other size tried "
        f"(up to {_probe_size(_MULTIPLES[-1])}x{_probe_size(_MULTIPLES[-1])}: {last}); "
        "a target must take any slice size that is a multiple of its stride",
    )
