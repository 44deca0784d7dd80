"""Training the target U-Net on 2D slices.

:func:`train_unet` trains a :class:`napari_advseg.models.unet.UNet2D` on
random patches of axial slices (drawn by
:class:`napari_advseg.models.unet_patches.PatchSampler`). It is a generator
that yields one progress record per optimisation step, so a command line
progress bar or a GUI can follow (and stop) training; :func:`fit_unet` runs it to the end. The loss is
cross-entropy plus :func:`soft_dice_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_advseg.device import resolve_device
from napari_advseg.errors import AdvsegError
from napari_advseg.models.unet import UNet2D
from napari_advseg.models.unet_patches import PatchSampler, check_training_data
from napari_advseg.seeding import seeded_build

__all__ = [
    "train_unet",
    "fit_unet",
    "soft_dice_loss",
]


# --------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """One minus the mean soft Dice over the foreground classes.

    Parameters
    ----------
    logits : torch.Tensor
        Shape ``(N, C, H, W)``.
    labels : torch.Tensor
        Integer labels in ``[0, C)``, shape ``(N, H, W)``.
    smooth : float
        Added to numerator and denominator (pixels); makes a class absent from
        both prediction and reference score 1 and keeps the gradient finite.

    Returns
    -------
    torch.Tensor
        Scalar in ``[0, 1]``; the soft Dice of each class ``1..C-1`` is
        computed over the whole batch.
    """
    n_classes = logits.shape[1]
    if n_classes < 2:
        return logits.new_zeros(())
    probs = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(labels.long(), n_classes).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - dice.mean()


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


def _learning_rate(base_lr: float, step: int, steps: int) -> float:
    """Cosine decay from ``base_lr`` to ``0.05 * base_lr`` over ``steps``."""
    floor = 0.05 * base_lr
    return floor + 0.5 * (base_lr - floor) * (1.0 + math.cos(math.pi * step / max(1, steps)))


def train_unet(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int = 6,
    steps: int = 1500,
    batch_size: int = 16,
    patch_size: int = 96,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    base_channels: int = 16,
    depth: int = 4,
    augment: bool = True,
    model: UNet2D | None = None,
) -> Generator[dict, None, UNet2D]:
    """Train a :class:`UNet2D` on 2D slices, one step per yielded record.

    Parameters
    ----------
    images : np.ndarray
        Intensity-normalised slices, float, shape ``(N, H, W)`` (a single
        ``(H, W)`` slice is accepted).
    labels : np.ndarray
        Integer label maps in ``[0, n_classes)``, shape ``(N, H, W)``.
    n_classes : int
        Number of classes, background included.
    steps : int
        Number of optimisation steps (mini-batches).
    batch_size : int
        Patches per step.
    patch_size : int
        Side of the square training patches in pixels; clipped to the slice
        height and width.
    lr : float
        Initial Adam learning rate; decays by a cosine schedule to 5% of it.
    seed : int
        Seeds the weight initialisation, patch sampling and augmentation. On
        the CPU the same seed gives the same weights. The global torch random
        state is left unchanged.
    device : str or torch.device or None
        Where to train (see :func:`napari_advseg.device.resolve_device`).
    base_channels, depth : int
        Size of a new network (ignored when ``model`` is given).
    augment : bool
        Random intensity scale (x0.9-1.1) and shift (+-0.1), and random
        zoom (x0.9-1.1) of each patch. No flips or rotations, so left and right
        organs keep their meaning.
    model : UNet2D, optional
        Continue training this network (in place) instead of a new one.

    Returns
    -------
    Generator[dict, None, UNet2D]
        A generator. Each step yields ``{"step": int (1-based), "steps": int,
        "loss": float, "ce": float, "dice_loss": float, "lr": float}``.
        When exhausted it returns the trained model (in eval mode) as the
        ``StopIteration`` value, i.e. ``model = yield from train_unet(...)``;
        :func:`fit_unet` does this for you.

    Raises
    ------
    AdvsegError
        For inconsistent images/labels or settings; raised at the call, before
        the first step.

    Notes
    -----
    The loss is cross-entropy plus the soft Dice loss over the foreground
    classes (:func:`soft_dice_loss`). Half of the patches on average are
    centred (with jitter) on a voxel of a randomly chosen foreground class
    present in the data, so that small organs such as the pancreas are learnt.
    """
    if steps < 1 or batch_size < 1 or patch_size < 1:
        raise AdvsegError(f"steps, batch_size and patch_size must be >= 1 (got {steps}, {batch_size}, {patch_size})")
    if not lr > 0:
        raise AdvsegError(f"learning rate must be > 0, got {lr}")
    if model is not None:
        if not isinstance(model, UNet2D):
            raise AdvsegError(f"train_unet can only continue training a UNet2D, got {type(model).__name__}")
        if model.arch["n_classes"] != n_classes:
            raise AdvsegError(
                f"the given model has {model.arch['n_classes']} output classes but n_classes={n_classes}"
            )
        if model.arch["in_channels"] != 1:
            raise AdvsegError("train_unet trains on single-channel slices; the given model expects "
                              f"{model.arch['in_channels']} input channels")
    images, labels = check_training_data(images, labels, n_classes)
    torch_device = resolve_device(device)
    if model is None:
        with seeded_build(seed):
            model = UNet2D(1, n_classes, base_channels=base_channels, depth=depth)
    return _training_loop(model, images, labels, n_classes, steps, batch_size, patch_size, lr, seed, torch_device,
                          augment)


def _training_loop(
    model: UNet2D,
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    steps: int,
    batch_size: int,
    patch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    augment: bool,
) -> Generator[dict, None, UNet2D]:
    rng = np.random.default_rng(seed)
    sampler = PatchSampler(images, labels, n_classes, patch_size, rng, augment)
    model.to(device)
    model.train()
    for parameter in model.parameters():  # a model frozen as a target can be trained further
        parameter.requires_grad_(True)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        step_lr = _learning_rate(lr, step, steps)
        for group in optimiser.param_groups:
            group["lr"] = step_lr
        x, y = sampler.batch(batch_size)
        x = x.to(device)
        y = y.to(device)
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        dice = soft_dice_loss(logits, y)
        loss = ce + dice
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        yield {
            "step": step + 1,
            "steps": steps,
            "loss": float(loss.detach()),
            "ce": float(ce.detach()),
            "dice_loss": float(dice.detach()),
            "lr": step_lr,
        }
    model.eval()
    return model


def fit_unet(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
    **kwargs: Any,
) -> UNet2D:
    """Run :func:`train_unet` to the end and return the trained network.

    Parameters
    ----------
    images, labels : np.ndarray
        As for :func:`train_unet`, shape ``(N, H, W)``.
    progress : bool
        Show a tqdm progress bar with the running loss.
    callback : callable, optional
        Called with each step's record.
    **kwargs
        Passed to :func:`train_unet` (``n_classes``, ``steps``, ``seed``, ...).

    Returns
    -------
    UNet2D
        The trained network, in eval mode, on the training device.
    """
    generator = train_unet(images, labels, **kwargs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=kwargs.get("steps", 1500), desc="training U-Net", unit="step")
    try:
        while True:
            try:
                record = next(generator)
            except StopIteration as stop:
                return stop.value
            if callback is not None:
                callback(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
    finally:
        if bar is not None:
            bar.close()
