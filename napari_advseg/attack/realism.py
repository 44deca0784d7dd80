"""Realism figures of attack fields: how a bias field's power is spread over wavelengths, how far a deformation
stretches and squeezes.

rho (Eq. 7) says how much an attack changes the image, not whether the
change looks like anatomy and scanner variation. These figures measure two
ways a field can look artificial:

- **Bias field** ``b`` ``(N, 1, H, W)``. Each slice's mean is removed and its
  2D power spectrum ``|FFT(b)|^2`` taken (the periodogram: no window, so the
  jump between opposite borders of a field that is not periodic counts as
  power at every frequency, as it would for any field of that shape). Over
  the non-DC bins:

  - ``stripe_share``: the power of the strongest single spatial wave of
    wavelength under :data:`SHORT_WAVELENGTH_PX` pixels over all the power. A
    real field's spectrum is symmetric, ``P(f) = P(-f)``, and the bins ``f``
    and ``-f`` are one wave, so their power is counted together: a pure
    sinusoid of short wavelength with a whole number of periods across the
    slice gives 1 (one that does not fit leaks into the neighbouring bins).
    Stripes put a large share into one short wave, a smooth random field
    spreads its short-wavelength power over many. Long waves are left out:
    scanner shading (a broad blob, a ramp) puts most of its power into one or
    two of the longest waves, which is what shading looks like, not a
    pattern (a Gaussian of 40 px sigma on a 128 px slice: 48 % of its power
    in its strongest wave, 0.2 % in its strongest short one).
  - ``short_share``: the share of power at wavelengths shorter than
    :data:`SHORT_WAVELENGTH_PX` pixels (wavelength ``1 / |f|``, ``f`` in cycles
    per pixel). Scanner bias fields vary over tens of centimetres; power at a
    few pixels' wavelength is texture, not shading.

  Both are ratios: the same for ``b`` and ``c * b``, so for any rho and any
  intensity unit. A slice whose bias is zero, or constant, has no non-DC
  power and is skipped.
- **Deformation** ``phi`` ``(N, 2, H, W)``, pixels (dy, dx) as in
  :mod:`~napari_advseg.attack.fields`: the Jacobian determinant of
  ``p -> p + phi(p)`` (:func:`~napari_advseg.attack.fields.jacobian_determinant`,
  forward differences), its smallest and largest value. 1 is no change of
  area, 0.5 a region squeezed to half its area, 2 one stretched to twice,
  ``<= 0`` a fold. A slice whose displacement is zero everywhere is skipped.

:class:`RealismTally` gathers them over batches, as
:class:`~napari_advseg.evaluation.report.Tally` gathers the Dice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from napari_advseg.attack.fields import jacobian_determinant

__all__ = [
    "SHORT_WAVELENGTH_PX",
    "RealismTally",
    "bias_spectrum_shares",
    "jacobian_range",
    "power_spectrum",
    "spectrum_excess",
]

SHORT_WAVELENGTH_PX = 32.0
"""Wavelengths (pixels) below which a bias field's power counts as short (``short_share``)."""

_FLAT = 1e-12
"""Non-DC power at or below this fraction of a slice's power (mean included): no variation to measure."""


def _slices(field: torch.Tensor | np.ndarray, channels: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(field).detach().cpu().to(torch.float64)
    if t.ndim != 4 or t.shape[1] != channels:
        raise ValueError(f"{name} must be (N, {channels}, H, W), got {tuple(t.shape)}")
    return t


def power_spectrum(bias: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``|FFT2(b - mean(b))|^2`` of each slice of a bias field ``(N, 1, H, W)``, shape ``(N, H, W)``, float64.

    Bins in :func:`torch.fft.fft2` order (DC at ``[0, 0]``; ``torch.fft.fftshift`` centres it).
    """
    return _power(_slices(bias, 1, "bias"))


def _power(b: torch.Tensor) -> torch.Tensor:
    """:func:`power_spectrum` of ``b`` ``(N, 1, H, W)`` in its own dtype and device, differentiable."""
    b = b[:, 0]
    return torch.fft.fft2(b - b.mean(dim=(-2, -1), keepdim=True)).abs().pow(2)


def _wave_power(power: torch.Tensor) -> torch.Tensor:
    """Power per spatial wave: bin ``f`` plus its conjugate ``-f``, counted once (``(N, H, W)``, both bins hold it).

    Bins that are their own conjugate (DC, and the Nyquist rows and columns' crossings) keep their own power.
    """
    h, w = power.shape[-2:]
    conjugate = torch.roll(torch.flip(power, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))  # index (-ky, -kx)
    ky = torch.arange(h, device=power.device).view(h, 1)
    kx = torch.arange(w, device=power.device).view(1, w)
    own = ((2 * ky) % h == 0) & ((2 * kx) % w == 0)
    return torch.where(own, power, power + conjugate)


def _short_mask(h: int, w: int) -> torch.Tensor:
    """Bins whose wavelength ``1 / |f|`` is shorter than :data:`SHORT_WAVELENGTH_PX` (``(H, W)`` bool)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64).view(h, 1)
    fx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, w)
    return fy.pow(2) + fx.pow(2) > (1.0 / SHORT_WAVELENGTH_PX) ** 2


def _spectrum_parts(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(strongest short wave, short-wavelength, total non-DC, all)`` power of each slice of ``b`` ``(N, 1, H, W)``.

    Differentiable, in ``b``'s dtype and device. "all" includes the mean
    (Parseval: ``sum |FFT(b)|^2 = H W sum b^2``), for deciding "flat".
    """
    n, _, h, w = b.shape
    power = _power(b) * (1.0 - torch.eye(1, h * w, dtype=b.dtype, device=b.device).view(h, w))  # drop DC
    total = power.reshape(n, -1).sum(dim=1)
    everything = h * w * b.reshape(n, -1).pow(2).sum(dim=1)
    short_bins = _short_mask(h, w).to(b.device)
    waves = (_wave_power(power) * short_bins).reshape(n, -1).amax(dim=1)
    short = (power * short_bins).reshape(n, -1).sum(dim=1)
    return waves, short, total, everything


def bias_spectrum_shares(bias: torch.Tensor | np.ndarray) -> list[tuple[float, float] | None]:
    """``(stripe_share, short_share)`` of each slice of a bias field ``(N, 1, H, W)`` (module docstring).

    None for a slice without non-DC power (zero or constant bias).
    """
    waves, short, total, everything = _spectrum_parts(_slices(bias, 1, "bias"))
    out: list[tuple[float, float] | None] = []
    for i in range(total.shape[0]):
        if float(total[i]) <= _FLAT * float(everything[i]):
            out.append(None)
        else:
            out.append((float(waves[i] / total[i]), float(short[i] / total[i])))
    return out


def spectrum_excess(bias: torch.Tensor, short_max: float, stripe_max: float) -> torch.Tensor:
    """Mean over slices of ``relu(short_share - short_max)^2 + relu(stripe_share - stripe_max)^2`` (differentiable).

    The realism figures of :func:`bias_spectrum_shares` as a training term: a
    bias field costs only where it puts more of its power into short
    wavelengths, or into one wave, than the limits allow. Flat slices cost nothing.
    """
    waves, short, total, everything = _spectrum_parts(bias)
    flat = total <= _FLAT * everything
    safe = torch.where(flat, torch.ones_like(total), total)
    cost = torch.relu(short / safe - short_max).pow(2) + torch.relu(waves / safe - stripe_max).pow(2)
    return torch.where(flat, torch.zeros_like(cost), cost).mean()


def jacobian_range(displacement: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(N, 2)``: the smallest and largest Jacobian determinant of ``p -> p + phi(p)`` on each slice."""
    phi = _slices(displacement, 2, "displacement")
    det = jacobian_determinant(phi).reshape(phi.shape[0], -1)
    if det.shape[1] == 0:
        raise ValueError(f"the Jacobian needs slices of at least 2 x 2 pixels, got {tuple(phi.shape[-2:])}")
    return torch.stack((det.amin(dim=1), det.amax(dim=1)), dim=1)


class RealismTally:
    """Realism figures gathered over batches of fields; :meth:`report` gives them as a dict.

    Keeps one entry per measured slice (``stripe_shares``, ``short_shares``,
    ``jacobian_mins``, ``jacobian_maxs``), so that callers can also look at
    their spread.
    """

    def __init__(self) -> None:
        self.stripe_shares: list[float] = []
        self.short_shares: list[float] = []
        self.jacobian_mins: list[float] = []
        self.jacobian_maxs: list[float] = []

    def add(self, displacement=None, bias=None) -> None:
        """One batch: ``displacement`` ``(B, 2, H, W)`` pixels and ``bias`` ``(B, 1, H, W)``, either None.

        Slices whose field is zero (a field switched off) are not counted for it.
        """
        if bias is not None:
            for shares in bias_spectrum_shares(bias):
                if shares is not None:
                    self.stripe_shares.append(shares[0])
                    self.short_shares.append(shares[1])
        if displacement is not None:
            phi = _slices(displacement, 2, "displacement")
            moving = phi.reshape(phi.shape[0], -1).abs().amax(dim=1) > 0
            if bool(moving.any()):
                ranges = jacobian_range(phi[moving])
                self.jacobian_mins.extend(ranges[:, 0].tolist())
                self.jacobian_maxs.extend(ranges[:, 1].tolist())

    def report(self) -> dict[str, Any]:
        """``bias_stripe_share`` and ``bias_short_share`` (means over the slices with a bias), ``jacobian_min``
        and ``jacobian_max`` (over every pixel of the slices with a deformation), and how many slices each
        counted; a figure is None where no slice had that field."""

        def mean(values: list[float]) -> float | None:
            return float(np.mean(values)) if values else None

        return {
            "bias_stripe_share": mean(self.stripe_shares),
            "bias_short_share": mean(self.short_shares),
            "bias_slices": len(self.stripe_shares),
            "short_wavelength_px": SHORT_WAVELENGTH_PX,
            "jacobian_min": min(self.jacobian_mins) if self.jacobian_mins else None,
            "jacobian_max": max(self.jacobian_maxs) if self.jacobian_maxs else None,
            "deformation_slices": len(self.jacobian_mins),
        }

