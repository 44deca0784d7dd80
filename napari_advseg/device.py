"""Choosing the torch device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_advseg.errors import AdvsegError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
"""Device names a user may choose (``auto`` = cuda, then mps, then cpu); importing this needs no torch."""


def resolve_device(name: "str | torch.device | None" = "auto") -> "torch.device":
    """Turn a device name into a :class:`torch.device`.

    ``"auto"`` (or ``None``) picks CUDA when available, then Apple MPS, then
    the CPU. Asking for a device that this machine lacks raises
    :class:`AdvsegError` instead of failing later inside torch.
    """
    import torch

    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise AdvsegError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if base == "cuda" and not torch.cuda.is_available():
        raise AdvsegError("device 'cuda' was asked for, but this machine has no CUDA GPU visible to torch")
    if base == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise AdvsegError("device 'mps' was asked for, but Apple MPS is not available here")
    return torch.device(name)
