"""Differentiable resampling to another voxel spacing, equal to nnU-Net's.

nnU-Net resamples an image with scikit-image's ``resize`` (spline order 3 for
images, 1 for logits; ``mode="edge"``, no anti-aliasing, output clipped to
the input's range) and, along the low-resolution axis of an anisotropic
volume, with ``scipy.ndimage.map_coordinates`` (order 0). Both are
tensor-product splines: resizing an ``n``-voxel axis to ``m`` voxels is one
linear map, an ``(m, n)`` matrix. :func:`axis_matrix` measures that matrix by
running the same scikit-image (or scipy) call on the columns of an identity
matrix, once per size pair (cached); :func:`resize_like_nnunet` applies the
matrices along each axis with ``torch`` and clips as scikit-image does, so the
result equals nnU-Net's up to float32 rounding and gradients flow through it.

The spline's coefficient prefilter is global along an axis, so every output
voxel depends on every input voxel of its row; the matrices are dense
(``m * n`` floats per axis, a few hundred kB for a 512-voxel axis).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "axis_matrix",
    "new_shape_for_spacing",
    "resize_like_nnunet",
    "separate_z_axis",
]

ANISOTROPY_THRESHOLD = 3.0
"""nnU-Net's ratio of the largest to the smallest spacing above which the low-resolution axis is resampled apart."""


def new_shape_for_spacing(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """The voxel counts after resampling from ``spacing`` to ``new_spacing``: ``round(n * s / s_new)`` per axis."""
    return tuple(int(round(s / t * n)) for n, s, t in zip(shape, spacing, new_spacing))


def _low_resolution_axes(spacing: Sequence[float]) -> list[int]:
    spacing = np.asarray(spacing, dtype=float)
    return [int(i) for i in np.where(max(spacing) / spacing == 1)[0]]


def separate_z_axis(spacing: Sequence[float], new_spacing: Sequence[float], force: bool | None = None,
                    threshold: float = ANISOTROPY_THRESHOLD) -> int | None:
    """The axis nnU-Net resamples apart (with order 0), or None.

    As nnU-Net: ``force`` True takes the largest spacing's axis of ``spacing``,
    False none; otherwise an axis when ``spacing`` (else ``new_spacing``) is
    anisotropic beyond ``threshold``. Two or three equally coarse axes mean none.
    """
    def anisotropic(values):
        return max(values) / min(values) > threshold

    if force is not None:
        axes = _low_resolution_axes(spacing) if force else None
    elif anisotropic(spacing):
        axes = _low_resolution_axes(spacing)
    elif anisotropic(new_spacing):
        axes = _low_resolution_axes(new_spacing)
    else:
        axes = None
    if axes is None or len(axes) != 1:
        return None
    return axes[0]


@lru_cache(maxsize=64)
def _matrix(n_in: int, n_out: int, order: int, nearest_axis: bool) -> np.ndarray:
    if nearest_axis:
        from scipy.ndimage import map_coordinates

        coords = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        columns = [map_coordinates(np.eye(n_in)[j], coords[None], order=order, mode="nearest") for j in range(n_in)]
        return np.stack(columns, axis=1)
    from skimage.transform import resize

    return resize(np.eye(n_in), (n_out, n_in), order=order, mode="edge", anti_aliasing=False, clip=False)


def axis_matrix(n_in: int, n_out: int, order: int, *, nearest_axis: bool = False, device=None) -> torch.Tensor:
    """The ``(n_out, n_in)`` float32 matrix of resizing one axis.

    Parameters
    ----------
    n_in, n_out : int
        Voxels before and after.
    order : int
        Spline order (3 for images, 1 for logits, 0 nearest).
    nearest_axis : bool
        The low-resolution axis of a separate-z resampling: nnU-Net's
        ``map_coordinates`` with voxel-centre coordinates and ``mode="nearest"``;
        otherwise scikit-image's ``resize`` (``mode="edge"``).
    """
    if n_in == n_out:
        return torch.eye(n_in, device=device)
    return torch.as_tensor(_matrix(int(n_in), int(n_out), int(order), bool(nearest_axis)),
                           dtype=torch.float32, device=device)


def _apply(x: torch.Tensor, matrix: torch.Tensor, axis: int) -> torch.Tensor:
    """``matrix`` applied along ``axis`` of ``x``."""
    moved = x.movedim(axis, -1)
    return (moved @ matrix.T).movedim(-1, axis)


def _clip_to(x: torch.Tensor, source: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``x`` clipped to the min and max of ``source`` over ``dims`` (scikit-image's ``clip=True``)."""
    low = source.amin(dim=dims, keepdim=True)
    high = source.amax(dim=dims, keepdim=True)
    return torch.minimum(torch.maximum(x, low), high)


def resize_like_nnunet(x: torch.Tensor, new_shape: Sequence[int], *, order: int, separate_axis: int | None,
                       order_z: int = 0) -> torch.Tensor:
    """Resize ``(C, *spatial)`` data as nnU-Net's ``resample_data_or_seg`` does (images and logits), differentiably.

    Parameters
    ----------
    x : torch.Tensor
        ``(C, D, H, W)`` (or ``(C, H, W)``) float data.
    new_shape : sequence of int
        The spatial shape wanted.
    order : int
        Spline order in the resized plane (3 images, 1 logits).
    separate_axis : int or None
        The spatial axis resampled apart (:func:`separate_z_axis`): each slice
        across it is resized and clipped on its own, then that axis is
        resampled with ``order_z`` and no clipping. None: one resize of the
        whole volume per channel, clipped to the channel's range.
    order_z : int
        Order along ``separate_axis``.

    Returns
    -------
    torch.Tensor
        ``(C, *new_shape)``; ``x`` itself when the shape does not change.
    """
    shape = tuple(int(s) for s in x.shape[1:])
    new_shape = tuple(int(s) for s in new_shape)
    if shape == new_shape:
        return x
    spatial = tuple(range(1, x.ndim))
    out = x
    for axis in range(len(shape)):
        if axis == separate_axis:
            continue
        out = _apply(out, axis_matrix(shape[axis], new_shape[axis], order, device=x.device), axis + 1)
    if separate_axis is None:
        return _clip_to(out, x, spatial)
    in_plane = tuple(d for d in spatial if d != separate_axis + 1)
    out = _clip_to(out, x, in_plane)
    axis = separate_axis
    if shape[axis] != new_shape[axis]:
        out = _apply(out, axis_matrix(shape[axis], new_shape[axis], order_z, nearest_axis=True, device=x.device),
                     axis + 1)
    return out
