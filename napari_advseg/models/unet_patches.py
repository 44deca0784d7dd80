"""What the target U-Net trains on: checked slices and patches drawn from them with a preference for organs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_advseg.errors import AdvsegError

__all__ = ["PatchSampler", "check_training_data"]


def check_training_data(images: Any, labels: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Training slices as float32 ``(N, H, W)`` and labels in a compact integer dtype, or an AdvsegError.

    A single ``(H, W)`` slice is accepted; labels must be whole numbers in
    ``[0, n_classes)`` and have the images' shape.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 2:
        images = images[None]
    if labels.ndim == 2:
        labels = labels[None]
    if images.ndim != 3:
        raise AdvsegError(f"training images must be a stack of 2D slices (N, H, W), got shape {images.shape}")
    if labels.shape != images.shape:
        raise AdvsegError(f"training labels have shape {labels.shape} but the images have shape {images.shape}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise AdvsegError(f"training images are empty (shape {images.shape})")
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise AdvsegError(f"training images must be numbers, got dtype {images.dtype}")
    images = images.astype(np.float32, copy=False)
    if not np.isfinite(images).all():
        raise AdvsegError("training images contain NaN or infinite values")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.array_equal(labels, np.round(labels)):
            raise AdvsegError("training labels must be whole numbers (class values), got fractional values")
    elif not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise AdvsegError(f"training labels must be integers, got dtype {labels.dtype}")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= n_classes:
        raise AdvsegError(
            f"training labels must lie in 0..{n_classes - 1} for {n_classes} classes, found values {low}..{high}"
        )
    # compact label dtype: a CT label volume as int64 would take 8 bytes per voxel
    labels = labels.astype(np.uint8 if n_classes <= 256 else np.int32, copy=False)
    return images, labels


class PatchSampler:
    """Draws training patches with a preference for organs.

    Half of the patches (on average, ``foreground_fraction``) are placed around
    a voxel of a foreground class chosen uniformly among the classes present,
    so small organs (pancreas) are seen as often as large ones; the others are
    placed uniformly at random.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        patch_size: int,
        rng: np.random.Generator,
        augment: bool,
        foreground_fraction: float = 0.5,
    ):
        self.images = images
        self.labels = labels
        self.rng = rng
        self.augment = augment
        self.foreground_fraction = foreground_fraction
        _, height, width = images.shape
        self.patch = (min(patch_size, height), min(patch_size, width))
        flat = labels.reshape(-1)
        self.class_voxels = [np.flatnonzero(flat == c) for c in range(1, n_classes)]
        self.class_voxels = [v for v in self.class_voxels if v.size > 0]

    def _window(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """Slice index and top-left corner of a ``size`` window."""
        n, height, width = self.images.shape
        ph, pw = size
        if self.class_voxels and self.rng.random() < self.foreground_fraction:
            voxels = self.class_voxels[self.rng.integers(len(self.class_voxels))]
            index = int(voxels[self.rng.integers(voxels.size)])
            s, rem = divmod(index, height * width)
            cy, cx = divmod(rem, width)
            # centre near (not exactly on) the voxel: jitter by up to a quarter patch
            cy += int(self.rng.integers(-(ph // 4), ph // 4 + 1))
            cx += int(self.rng.integers(-(pw // 4), pw // 4 + 1))
            y0 = int(np.clip(cy - ph // 2, 0, height - ph))
            x0 = int(np.clip(cx - pw // 2, 0, width - pw))
        else:
            s = int(self.rng.integers(n))
            y0 = int(self.rng.integers(height - ph + 1))
            x0 = int(self.rng.integers(width - pw + 1))
        return s, y0, x0

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, 1, ph, pw)`` float32 and labels ``(B, ph, pw)`` int64 (CPU)."""
        _, height, width = self.images.shape
        ph, pw = self.patch
        images = []
        labels = []
        for _ in range(batch_size):
            zoom = float(self.rng.uniform(0.9, 1.1)) if self.augment else 1.0
            size = (min(height, max(1, round(ph * zoom))), min(width, max(1, round(pw * zoom))))
            s, y0, x0 = self._window(size)
            img = torch.from_numpy(np.ascontiguousarray(self.images[s, y0 : y0 + size[0], x0 : x0 + size[1]]))
            lab = torch.from_numpy(np.ascontiguousarray(self.labels[s, y0 : y0 + size[0], x0 : x0 + size[1]])).long()
            if size != (ph, pw):
                img = F.interpolate(img[None, None], size=(ph, pw), mode="bilinear", align_corners=False)[0, 0]
                lab = F.interpolate(lab[None, None].float(), size=(ph, pw), mode="nearest")[0, 0].long()
            if self.augment:
                # intensity scale and shift, in units of the normalised intensity
                img = img * float(self.rng.uniform(0.9, 1.1)) + float(self.rng.uniform(-0.1, 0.1))
            images.append(img)
            labels.append(lab)
        return torch.stack(images)[:, None].float(), torch.stack(labels).long()
