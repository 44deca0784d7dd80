"""The target network: freeze it and check that its output fits.

The attack of Chen et al. needs gradients of a *frozen* segmentation network's
output with respect to its input image. A :class:`Target` wraps such a network
with what the attack needs to know about it: the name of each output channel
and how its input intensities were normalised.

Every target is put in eval mode with ``requires_grad=False`` on all
parameters and checked by :func:`validate_target`: one forward pass must give
a 4D logits tensor with one channel per class and the input's height and width.
Files holding targets are written by :mod:`napari_advseg.models.target_files`
and read by :mod:`napari_advseg.models.target_load`; the class names and the
normalisation stored with them are checked by :mod:`napari_advseg.models.target_meta`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError, InputFileError, first_line
from napari_advseg.models.target_meta import check_class_names, check_normalisation

__all__ = [
    "VALIDATION_SIZE",
    "Target",
    "freeze",
    "make_target",
    "validate_target",
]

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
