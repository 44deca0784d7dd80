"""Differentiable sliding-window inference with Gaussian weighting, as nnU-Net and MONAI do it.

Both frameworks predict an image larger than the network's patch by running
the network on overlapping windows, weighting each window's logits by a
Gaussian centred on it and dividing by the summed weights; their predictors
run without gradients. :func:`sliding_window` does the same arithmetic with
``torch`` operations that keep the graph, so an attack gets gradients of the
stitched logits with respect to the image.

What differs between the frameworks is where the windows start and the exact
weights:

- :func:`nnunet_starts` and :func:`nnunet_gaussian`: nnU-Net's
  ``compute_steps_for_sliding_window`` (as many windows as a step of
  ``step_size`` times the patch needs, spread evenly between the first and the
  last position) and ``compute_gaussian`` (sigma 1/8 of the patch, peak 10,
  zeros raised to the smallest positive weight);
- :func:`monai_starts`: MONAI's ``dense_patch_slices`` (a fixed interval
  ``int(patch * (1 - overlap))``, the last window moved back inside); the
  weights come from MONAI's own ``compute_importance_map``
  (:mod:`napari_advseg.models.monai_bundle`);
- :func:`window_weights` and :class:`WindowedNetwork`: a file target (a
  TorchScript network) that declares a sliding window, run as MONAI's
  ``SlidingWindowInferer`` runs it, without needing MONAI: its start
  positions, and its weights written out (constant, or a separable Gaussian
  of sigma ``sigma_scale`` times the window, centred on the window, floored
  at the larger of its smallest value and 1e-3).

An image smaller than the patch along an axis is padded with zeros on both
sides (half below, rounded down), as both frameworks do, and the logits are
cropped back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WindowedNetwork", "monai_starts", "nnunet_gaussian", "nnunet_starts", "round_to", "sliding_window",
           "window_weights"]


def nnunet_starts(image_size: Sequence[int], patch_size: Sequence[int], step_size: float = 0.5) -> list[list[int]]:
    """Window start positions per axis, as nnU-Net's ``compute_steps_for_sliding_window``.

    ``image_size`` must be at least ``patch_size`` (pad first); ``0 < step_size <= 1``.
    """
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must be in (0, 1], got {step_size}")
    starts = []
    for size, patch in zip(image_size, patch_size):
        count = int(np.ceil((size - patch) / (patch * step_size))) + 1
        step = (size - patch) / (count - 1) if count > 1 else 0.0
        starts.append([int(np.round(step * i)) for i in range(count)])
    return starts


def monai_starts(image_size: Sequence[int], patch_size: Sequence[int], overlap: float | Sequence[float] = 0.25
                 ) -> list[list[int]]:
    """Window start positions per axis, as MONAI's ``sliding_window_inference`` (``dense_patch_slices``).

    ``image_size`` must be at least ``patch_size`` (pad first); ``0 <= overlap < 1``, one value or one per axis.
    """
    overlaps = [float(overlap)] * len(patch_size) if np.isscalar(overlap) else [float(o) for o in overlap]
    starts = []
    for size, patch, lap in zip(image_size, patch_size, overlaps):
        interval = patch if patch == size else max(int(patch * (1 - lap)), 1)
        count = math.ceil(size / interval)
        needed = next((d for d in range(count) if d * interval + patch >= size), None)
        count = needed + 1 if needed is not None else 1
        starts.append([i * interval - max(i * interval + patch - size, 0) for i in range(count)])
    return starts


@lru_cache(maxsize=8)
def _gaussian(patch_size: tuple[int, ...], sigma_scale: float, peak: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    delta = np.zeros(patch_size)
    delta[tuple(p // 2 for p in patch_size)] = 1
    weights = gaussian_filter(delta, [p * sigma_scale for p in patch_size], 0, mode="constant", cval=0)
    weights /= np.max(weights) / peak
    weights = weights.astype(np.float16)  # nnU-Net keeps the map in half precision: far corners underflow to 0
    weights[weights == 0] = weights[weights > 0].min()
    return weights.astype(np.float32)


def nnunet_gaussian(patch_size: Sequence[int], sigma_scale: float = 1 / 8, peak: float = 10.0,
                    device=None) -> torch.Tensor:
    """nnU-Net's window weights (``compute_gaussian``), float32, shape ``patch_size``."""
    return torch.as_tensor(_gaussian(tuple(int(p) for p in patch_size), float(sigma_scale), float(peak)),
                           device=device)


def round_to(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` rounded to ``dtype`` and back in value, with the gradient of ``x`` (straight-through)."""
    return x + (x.detach().to(dtype).to(x.dtype) - x.detach())


def _predict(network: Callable[[torch.Tensor], torch.Tensor], window: torch.Tensor,
             mirror_axes: Sequence[int]) -> torch.Tensor:
    """The network's logits for one window, averaged over its mirror images along ``mirror_axes`` (spatial axes)."""
    logits = network(window)
    dims = [a + 2 for a in mirror_axes]
    combos = [c for r in range(1, len(dims) + 1) for c in itertools.combinations(dims, r)]
    for axes in combos:
        logits = logits + torch.flip(network(torch.flip(window, axes)), axes)
    return logits / (len(combos) + 1) if combos else logits


def sliding_window(
    x: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor],
    patch_size: Sequence[int],
    starts: Callable[[Sequence[int], Sequence[int]], list[list[int]]],
    weights: torch.Tensor | None,
    *,
    mirror_axes: Sequence[int] = (),
    rounding: torch.dtype | None = None,
) -> torch.Tensor:
    """Stitched logits of ``network`` over overlapping windows of ``x``, with gradients.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *spatial)`` network input (the batch is passed to the network
        whole, window by window).
    network : callable
        ``(N, C, *patch_size)`` -> ``(N, K, *patch_size)`` logits.
    patch_size : sequence of int
        The window's size, one value per spatial axis.
    starts : callable
        ``(padded spatial size, patch_size)`` -> start positions per axis
        (:func:`nnunet_starts`, :func:`monai_starts`, with their step bound).
    weights : torch.Tensor or None
        Per-voxel window weights of shape ``patch_size`` (a Gaussian); None
        weighs every voxel 1.
    mirror_axes : sequence of int
        Spatial axes (0-based) to mirror each window along, averaging the
        logits of every combination (test-time augmentation); none by default.

    Returns
    -------
    torch.Tensor
        ``(N, K, *spatial)`` logits: the weighted mean over the windows
        covering each voxel.
    """
    spatial = tuple(int(s) for s in x.shape[2:])
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != len(spatial):
        raise ValueError(f"patch size {patch} does not match the input's spatial shape {spatial}")
    low = [max(p - s, 0) // 2 for s, p in zip(spatial, patch)]
    high = [max(p - s, 0) - lo for s, p, lo in zip(spatial, patch, low)]
    if any(low) or any(high):
        pad = [v for lo, hi in zip(reversed(low), reversed(high)) for v in (lo, hi)]
        x = F.pad(x, pad, mode="constant", value=0.0)
    padded = tuple(int(s) for s in x.shape[2:])
    if weights is None:
        weights = torch.ones(patch, device=x.device)
    weights = weights.to(x.device, torch.float32)
    total = None
    count = torch.zeros(padded, device=x.device)
    for corner in itertools.product(*starts(padded, patch)):
        region = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        logits = _predict(network, x[(slice(None), slice(None), *region)], mirror_axes) * weights
        if total is None:
            total = torch.zeros((x.shape[0], logits.shape[1], *padded), device=x.device, dtype=logits.dtype)
        where = (slice(None), slice(None), *region)
        if rounding is None:
            total[where] += logits
            count[region] += weights
        else:
            total[where] = round_to(total[where] + logits, rounding)
            count[region] = round_to(count[region] + weights, rounding)
    out = total / count if rounding is None else round_to(total / count, rounding)
    crop = tuple(slice(lo, lo + s) for lo, s in zip(low, spatial))
    return out[(slice(None), slice(None), *crop)]


def window_weights(roi_size: Sequence[int], mode: str = "constant", sigma_scale: float = 0.125) -> torch.Tensor:
    """The weights of one window (float32, shape ``roi_size``) as MONAI's inferer blends them.

    ``constant``: ones. ``gaussian``: the product over axes of
    ``exp(-d^2 / (2 sigma^2))``, ``d`` the distance from the window's centre
    ``(n - 1) / 2`` and ``sigma = sigma_scale * n``, then raised to at least
    the larger of its smallest value and 1e-3.
    """
    size = tuple(int(n) for n in roi_size)
    if mode == "constant":
        return torch.ones(size)
    if mode != "gaussian":
        raise ValueError(f"unknown window mode {mode!r}")
    weights = torch.ones(())
    for n in size:
        d = torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0
        weights = weights[..., None] * torch.exp(-d.pow(2) / (2.0 * (sigma_scale * n) ** 2))
    return weights.clamp_min(max(float(weights.min()), 1e-3))


class WindowedNetwork(nn.Module):
    """A 2D network run over a slice by a sliding window, as a network on whole slices.

    ``forward`` maps ``(N, C, H, W)`` to the stitched logits ``(N, K, H, W)``
    (:func:`sliding_window` with :func:`monai_starts` and
    :func:`window_weights`; a slice smaller than the window is padded with
    zeros and cropped back). ``spec``: the checked declaration
    (:func:`napari_advseg.models.target_meta.check_sliding_window`).
    """

    def __init__(self, network: nn.Module, spec: dict):
        super().__init__()
        self.network = network
        self.spec = dict(spec)
        self.roi_size = tuple(spec["roi_size"])
        self.register_buffer("weights", window_weights(self.roi_size, spec["mode"], spec["sigma_scale"]),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        overlap = self.spec["overlap"]
        return sliding_window(x, self.network, self.roi_size, lambda size, p: monai_starts(size, p, overlap),
                              self.weights)
