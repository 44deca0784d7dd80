"""The standard 2D U-Net of the paper (the target network), applied and scored.

Chen et al. (MICCAI-W 2019) attack a "standard" 2D U-Net trained for
multi-organ segmentation of abdominal CT slices. :class:`UNet2D` is that
network: at every level two 3x3 convolutions with batch normalisation and
ReLU, 2x2 max pooling on the way down, 2x2 transposed convolutions on the way
up, skip connections by concatenation, and a 1x1 convolution head giving one
logit map per class.

:func:`predict_labels` applies a trained network (Dice scores it in
:mod:`napari_advseg.evaluation.metrics`); :mod:`napari_advseg.models.unet_training`
trains it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError
from napari_advseg.models.target_meta import slices_per_call

__all__ = [
    "UNet2D",
    "predict_labels",
]


# --------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------


class _DoubleConv(nn.Sequential):
    """(3x3 conv -> BatchNorm -> ReLU) twice; keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class _Up(nn.Module):
    """Decoder level: 2x up-sampling by transposed conv, skip concat, double conv.

    Maps ``(N, in_channels, h, w)`` and a skip of ``(N, in_channels // 2, 2h, 2w)``
    to ``(N, in_channels // 2, 2h, 2w)``.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        out_channels = in_channels // 2
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = _DoubleConv(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet2D(nn.Module):
    """Standard 2D U-Net giving per-pixel class logits.

    Parameters
    ----------
    in_channels : int
        Number of input channels (1 for a CT slice).
    n_classes : int
        Number of output classes, background included (6 for
        :data:`napari_advseg.ORGAN_CLASSES`).
    base_channels : int
        Feature channels at the first level; level ``i`` has
        ``base_channels * 2**i`` channels.
    depth : int
        Number of 2x down-sampling steps (the bottleneck works at
        ``1 / 2**depth`` of the input resolution).

    Attributes
    ----------
    arch : dict
        The constructor arguments, ``{"in_channels", "n_classes",
        "base_channels", "depth"}``, all ``int``; enough to rebuild the network
        before loading a ``state_dict`` (used by checkpoints).

    Notes
    -----
    :meth:`forward` accepts any height and width: the input is padded by edge
    replication (split evenly between both sides) to a multiple of
    ``2**depth`` pixels and the logits are cropped back to the input size.
    The network is compatible with :func:`torch.jit.script`.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 6, base_channels: int = 16, depth: int = 4):
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("n_classes", n_classes, 1),
            ("base_channels", base_channels, 1),
            ("depth", depth, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"UNet2D: {name} must be an integer >= {low}, got {value!r}")
        in_channels, n_classes, base_channels, depth = (int(v) for v in (in_channels, n_classes, base_channels, depth))
        self.arch = {
            "in_channels": in_channels,
            "n_classes": n_classes,
            "base_channels": base_channels,
            "depth": depth,
        }
        self.depth = depth
        self.multiple = 2**depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [_DoubleConv(in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth)]
        )
        self.bottleneck = _DoubleConv(widths[depth - 1], widths[depth])
        self.decoders = nn.ModuleList([_Up(widths[i]) for i in range(depth, 0, -1)])
        self.head = nn.Conv2d(widths[0], n_classes, kernel_size=1)

    @property
    def n_classes(self) -> int:
        """Number of output channels (classes, background included)."""
        return self.arch["n_classes"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits.

        Parameters
        ----------
        x : torch.Tensor
            Float images, shape ``(N, in_channels, H, W)``, any ``H, W >= 1``,
            intensities normalised as during training.

        Returns
        -------
        torch.Tensor
            Unnormalised class scores, shape ``(N, n_classes, H, W)``.
        """
        height = x.shape[-2]
        width = x.shape[-1]
        pad_h = (self.multiple - height % self.multiple) % self.multiple
        pad_w = (self.multiple - width % self.multiple) % self.multiple
        top = pad_h // 2
        left = pad_w // 2
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [left, pad_w - left, top, pad_h - top], mode="replicate")
        skips: list[torch.Tensor] = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        n_skips = len(skips)
        for i, decoder in enumerate(self.decoders):
            x = decoder(x, skips[n_skips - 1 - i])
        x = self.head(x)
        return x[:, :, top : top + height, left : left + width]



# --------------------------------------------------------------------------
# inference and scoring
# --------------------------------------------------------------------------


def predict_labels(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray | torch.Tensor,
    batch_size: int = 8,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Segment whole slices: arg-max of the network's logits.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A network mapping ``(B, 1, H, W)`` to logits ``(B, C, H, W)``, or any
        callable doing so (e.g. a :class:`napari_advseg.models.target.Target`). A
        module is put in eval mode for the prediction and its previous mode is
        restored afterwards.
    images : np.ndarray or torch.Tensor
        Normalised slices, shape ``(N, H, W)`` or ``(N, 1, H, W)``; a single
        ``(H, W)`` slice gives a ``(H, W)`` result.
    batch_size : int
        Slices per forward pass; a volumetric target (a 3D network) gets the
        whole stack in one call (:func:`~napari_advseg.models.target_meta.slices_per_call`),
        so ``images`` must then be consecutive slices of one volume.
    device : str or torch.device, optional
        Where to run; by default the device of the module's parameters (or the
        callable's ``device`` attribute, else the CPU). A module is not moved:
        ``device`` only decides where the input goes.

    Returns
    -------
    np.ndarray
        Labels, shape ``(N, H, W)`` (or ``(H, W)``), ``uint8`` (``int64`` for
        more than 256 classes).
    """
    if isinstance(images, torch.Tensor):
        x = images.detach()
    else:
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(images, dtype=np.float32)))
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise AdvsegError(f"images to segment must have shape (N, H, W), got {tuple(images.shape)}")
    if device is not None:
        torch_device = resolve_device(device)
    elif isinstance(model, nn.Module):
        param = next(iter(model.parameters()), None)
        torch_device = param.device if param is not None else torch.device("cpu")
    else:
        torch_device = getattr(model, "device", None) or torch.device("cpu")
    was_training = model.training if isinstance(model, nn.Module) else False
    if isinstance(model, nn.Module):
        model.eval()
    step = slices_per_call(model, x.shape[0], batch_size)
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], step):
                chunk = x[start : start + step].to(torch_device, torch.float32)[:, None]
                logits = model(chunk)
                outputs.append(logits.argmax(dim=1).cpu())
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    result = torch.cat(outputs) if outputs else torch.zeros((0,) + tuple(x.shape[1:]), dtype=torch.int64)
    n_classes = int(logits.shape[1]) if outputs else 1
    out = result.numpy().astype(np.uint8 if n_classes <= 256 else np.int64)
    return out[0] if single else out
