"""Deformation and bias fields: warping, smoothness, folding and perceptibility.

Conventions
-----------
- Images are tensors ``(N, C, H, W)``; label maps ``(N, H, W)`` integers.
- A displacement field is ``(N, 2, H, W)`` in **pixels**, channel 0 along rows
  (dy), channel 1 along columns (dx). ``T(x; phi)(p) = x(p + phi(p))``: the
  output pixel ``p`` takes the input's value at ``p + phi(p)`` (Eq. 1).
- A bias field is ``(N, 1, H, W)`` in normalised intensity units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _sampling_grid(displacement: torch.Tensor) -> torch.Tensor:
    """Turn a pixel displacement into the normalised grid that ``grid_sample`` wants."""
    n, _, h, w = displacement.shape
    dtype, device = displacement.dtype, displacement.device
    rows = torch.arange(h, dtype=dtype, device=device).view(1, h, 1)
    cols = torch.arange(w, dtype=dtype, device=device).view(1, 1, w)
    y = rows + displacement[:, 0]
    x = cols + displacement[:, 1]
    # align_corners=True: pixel centre 0 -> -1, pixel centre (size - 1) -> +1.
    gy = 2.0 * y / max(h - 1, 1) - 1.0
    gx = 2.0 * x / max(w - 1, 1) - 1.0
    return torch.stack((gx, gy), dim=-1)


def warp_image(image: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling ``T(x; phi)`` with border padding.

    Parameters
    ----------
    image : (N, C, H, W) float tensor
    displacement : (N, 2, H, W) float tensor, pixels (dy, dx)
    """
    grid = _sampling_grid(displacement.to(image.dtype))
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def warp_labels(labels: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp of an integer label map ``(N, H, W)``; keeps its dtype.

    The labels move with the anatomy: the reference of ``x_adv`` is
    ``T_nearest(y; phi)`` (method.md, Eq. 1).
    """
    grid = _sampling_grid(displacement.float())
    warped = F.grid_sample(labels.unsqueeze(1).float(), grid, mode="nearest",
                           padding_mode="border", align_corners=True)
    return warped.squeeze(1).round().to(labels.dtype)


BOUND_TOLERANCE = 1e-4
"""Share of a target's input range within which an intensity counts as at its bound (float round-off of
the warp's interpolation between pixels at the bound)."""


def at_bounds(image, input_range: tuple[float, float]):
    """Where ``image`` (normalised, a tensor or an array) lies at the low and at the high bound of a target's
    input range, within :data:`BOUND_TOLERANCE` of its width: two boolean masks."""
    low, high = float(input_range[0]), float(input_range[1])
    tol = BOUND_TOLERANCE * (high - low)
    return image <= low + tol, image >= high - tol


def acting_bias(warped: torch.Tensor, bias: torch.Tensor,
                input_range: tuple[float, float] | None) -> torch.Tensor:
    """The part of ``bias`` that acts on the warped image ``T(x; phi)``: zero at the pixels a window
    target's ``input_range`` holds at a bound (tissue beyond the window, see :func:`apply_fields`); all of it
    when ``input_range`` is None."""
    if input_range is None:
        return bias
    below, above = at_bounds(warped.detach(), input_range)
    return bias * ~(below | above)


def apply_fields(image: torch.Tensor, displacement: torch.Tensor | None,
                 bias: torch.Tensor | None, bias_mode: str = "additive",
                 input_range: tuple[float, float] | None = None) -> torch.Tensor:
    """The adversarial image ``g(x; phi, b)`` (Eq. 1): ``T(x; phi) + b`` or ``T(x; phi) * exp(b)``.

    ``input_range`` (low, high), in normalised units, is what the target can
    see: a window-normalised (or CT-scheme) target clips HU to fixed bounds
    before the network, so ``image`` holds the bound wherever the CT lies
    beyond it. The fields act in HU before that clip: the bias moves only the
    intensities within the range (a pixel at a bound is tissue beyond it,
    air, fat or bone, which an intensity change of a few tens of HU leaves
    beyond it), and the result is clipped to the range, so that the image G
    is trained and scored on is the one any exported HU volume gives the
    network back (see :mod:`napari_advseg.attack.apply`). None (z-score
    targets): the bias acts everywhere, no clipping.
    """
    out = image if displacement is None else warp_image(image, displacement)
    if bias is not None:
        bias = acting_bias(out, bias, input_range)
        if bias_mode == "additive":
            out = out + bias
        elif bias_mode == "multiplicative":
            out = out * torch.exp(bias)
        else:
            raise ValueError(f"unknown bias_mode {bias_mode!r}")
    if input_range is not None:
        out = out.clamp(float(input_range[0]), float(input_range[1]))
    return out


def integrate_velocity(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """The displacement of ``exp(v)``, a stationary velocity field integrated by scaling and squaring.

    ``u = v / 2^steps``, then ``steps`` times ``u <- u + u o (id + u)``
    (``u(p) + u(p + u(p))``, the map composed with itself). A smooth velocity
    field gives a diffeomorphism: the map does not fold, however large the
    displacement, which the displacement used directly does not promise.
    """
    if steps <= 0:
        return velocity
    u = velocity / float(2 ** steps)
    for _ in range(steps):
        u = u + warp_image(u, u)
    return u


def largest_gradient(field: torch.Tensor) -> torch.Tensor:
    """Each slice's largest forward difference over every channel and both axes, ``(N,)`` (pixels per pixel).

    For a displacement or velocity in pixels, the steepest change of the field
    from one pixel to the next: the quantity that bounds how far the map's
    Jacobian determinant can move from 1.
    """
    n = field.shape[0]
    dy = (field[:, :, 1:, :] - field[:, :, :-1, :]).abs().reshape(n, -1)
    dx = (field[:, :, :, 1:] - field[:, :, :, :-1]).abs().reshape(n, -1)
    parts = [d for d in (dy, dx) if d.shape[1]]
    if not parts:
        return field.new_zeros((n,))
    return torch.cat(parts, dim=1).amax(dim=1)


def cap_gradient(field: torch.Tensor, cap: float) -> torch.Tensor:
    """The field of each slice scaled by ``min(1, cap / largest_gradient)`` (differentiable).

    A velocity whose largest forward difference is ``c`` integrates
    (:func:`integrate_velocity`) to a map whose Jacobian determinant stays
    within about ``exp(-2c) .. exp(2c)``: a cap of 0.1 keeps it near
    0.82 .. 1.22, the range of random smooth fields at rho 0.08 on the real CT.
    """
    steep = largest_gradient(field)
    scale = cap / torch.clamp(steep, min=cap)
    return field * scale.view(-1, *([1] * (field.ndim - 1)))


def upsample_field(coarse: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of a control-point field to ``size`` (H, W)."""
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=True)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with replicated borders."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-taps.pow(2) / (2.0 * sigma * sigma))
    kernel = (kernel / kernel.sum()).repeat(image.shape[1], 1)
    out = F.pad(image, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(image.shape[1], 1, 1, -1), groups=image.shape[1])
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(image.shape[1], 1, -1, 1), groups=image.shape[1])


def edge_gate(image: torch.Tensor, strength: float) -> torch.Tensor:
    """A smooth weight in (0, 1] that is small on the slice's strong edges, ``(N, 1, H, W)``.

    ``exp(-(|grad x_s| / (strength * g90))^2)`` blurred, where ``x_s`` is the
    slice blurred by one pixel and ``g90`` the 90th percentile of its gradient
    magnitude (so the gate does not depend on the intensity scale). Moving a
    strong edge (the body outline against air, bone, gas) changes many
    intensities for nothing an organ segmentation cares about; a displacement
    multiplied by the gate spends its rho (Eq. 7) on soft tissue and organ
    outlines instead. Smaller ``strength``: a stricter gate.
    """
    smooth = gaussian_blur(image, 1.0)
    grad = image.new_zeros(image.shape)
    grad[:, :, :-1, :] += (smooth[:, :, 1:, :] - smooth[:, :, :-1, :]).pow(2)
    grad[:, :, :, :-1] += (smooth[:, :, :, 1:] - smooth[:, :, :, :-1]).pow(2)
    grad = grad.sqrt()
    g90 = torch.quantile(grad.flatten(1), 0.9, dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return gaussian_blur(torch.exp(-(grad / (strength * g90)).pow(2)), 2.0)


def smoothness(field: torch.Tensor) -> torch.Tensor:
    """``mean(|grad f|^2)`` with forward finite differences (Eq. 2), over all channels."""
    dy = field[:, :, 1:, :] - field[:, :, :-1, :]
    dx = field[:, :, :, 1:] - field[:, :, :, :-1]
    total = field.new_zeros(())
    if dy.numel():
        total = total + dy.pow(2).mean()
    if dx.numel():
        total = total + dx.pow(2).mean()
    return total


def jacobian_determinant(displacement: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``p -> p + phi(p)``, ``(N, H-1, W-1)``.

    Forward differences; a value ``<= 0`` means the deformation folds there.
    """
    dy, dx = displacement[:, 0], displacement[:, 1]
    ddy_drow = (dy[:, 1:, :-1] - dy[:, :-1, :-1])
    ddy_dcol = (dy[:, :-1, 1:] - dy[:, :-1, :-1])
    ddx_drow = (dx[:, 1:, :-1] - dx[:, :-1, :-1])
    ddx_dcol = (dx[:, :-1, 1:] - dx[:, :-1, :-1])
    return (1.0 + ddy_drow) * (1.0 + ddx_dcol) - ddy_dcol * ddx_drow


def jacobian_penalty(displacement: torch.Tensor, floor: float, ceiling: float | None = None) -> torch.Tensor:
    """``mean(relu(floor - det J)^2 + relu(det J - ceiling)^2)`` of the map ``p -> p + phi(p)``.

    A perceptibility measure of the deformation itself, not of the intensity
    change it makes: ``det J`` near 0 magnifies a sliver of tissue many times
    and ``det J <= 0`` folds it; a large ``det J`` blows a small region up.
    ``floor <= det J <= ceiling`` is free (no ceiling: expansion is free).
    """
    det = jacobian_determinant(displacement)
    penalty = torch.relu(floor - det).pow(2)
    if ceiling is not None:
        penalty = penalty + torch.relu(det - ceiling).pow(2)
    return penalty.mean()


def fold_count(displacement: torch.Tensor) -> tuple[int, int]:
    """(pixels where the deformation folds, pixels checked)."""
    det = jacobian_determinant(displacement)
    return int((det <= 0).sum().item()), int(det.numel())


def fold_fraction(displacement: torch.Tensor) -> float:
    """Fraction of pixels whose Jacobian determinant is ``<= 0``."""
    folded, total = fold_count(displacement)
    return folded / total if total else 0.0


def perceptibility_per_slice(adversarial: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``||x_adv_n - x_n||_2 / ||x_n||_2`` for each slice n (Eq. 7), shape (N,)."""
    n = clean.shape[0]
    diff = (adversarial - clean).reshape(n, -1).norm(dim=1)
    base = clean.reshape(n, -1).norm(dim=1).clamp_min(1e-8)
    return diff / base


def perceptibility(adversarial: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """rho of Eq. 7: the mean over slices of the relative L2 change."""
    return perceptibility_per_slice(adversarial, clean).mean()


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation of a ``(N, H, W)`` mask by a square of radius ``pixels``."""
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return F.max_pool2d(mask.unsqueeze(1).float(), k, stride=1, padding=pixels).squeeze(1) > 0
