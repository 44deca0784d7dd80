"""G's fields for a stack of slices: latent deviates per slice or per volume, and smoothing along z.

G sees one axial slice at a time, so only the latent deviates can tie the
fields of neighbouring slices together. With ``latent="volume"`` one set of
deviates serves every slice: ``z = mu(x) + T sigma(x) eps`` then follows the
encoder's mean, which changes little from one slice to the next. What is left
of the jumps (the decoders also see each slice's own features) can be
smoothed away with a Gaussian along z (:func:`smoothed_fields`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.errors import AdvsegError

LATENT_MODES = ("volume", "slice")
"""How latent deviates are drawn: once for all the slices, or afresh for each slice."""


class FieldBatch(NamedTuple):
    """G's output for the slices ``start .. start + B - 1``; fields off are zero."""

    start: int
    displacement: torch.Tensor  # (B, 2, H, W) pixels
    bias: torch.Tensor          # (B, 1, H, W) normalised units
    z_phi: torch.Tensor         # (B, latent_dim)
    z_b: torch.Tensor           # (B, latent_dim)


def slice_batch(images, start: int, batch_size: int, device) -> torch.Tensor:
    """Slices ``start .. start + batch_size - 1`` of ``images`` (N, H, W) as a ``(B, 1, H, W)`` tensor."""
    return torch.as_tensor(np.asarray(images[start:start + batch_size], dtype=np.float32))[:, None].to(device)


def _deviates(fixed, n: int, latent_dim: int, rng: torch.Generator | None, device) -> torch.Tensor | None:
    """Deviates for ``n`` slices: ``fixed`` repeated, else drawn from ``rng``, else None (the mean)."""
    if fixed is not None:
        return torch.as_tensor(fixed, dtype=torch.float32).reshape(1, -1).expand(n, -1).to(device)
    if rng is not None:
        return torch.randn(n, latent_dim, generator=rng).to(device)
    return None


@torch.no_grad()
def generate_fields(generator, config: AttackConfig, images, *, batch_size: int = 8, temperature: float = 1.0,
                    rng: torch.Generator | None = None, eps_phi=None, eps_b=None, latent: str = "slice",
                    limits: tuple[float, float] | None = None) -> Iterator[FieldBatch]:
    """G applied to ``images`` (N, H, W, normalised) batch by batch.

    Latent deviates: fixed ``eps_*`` of shape (latent_dim,) when given (the
    same for every slice), else drawn from ``rng`` (standard normal), else the
    encoder's mean. ``latent``: ``"slice"`` draws them afresh for each slice,
    ``"volume"`` once for all the slices. ``limits``: the target's input
    range, for the rho budget.
    """
    if latent not in LATENT_MODES:
        raise AdvsegError(f"latent must be one of {', '.join(LATENT_MODES)}, got {latent!r}")
    if latent == "volume" and rng is not None:  # both drawn, so eps_b does not depend on eps_phi being fixed
        drawn_phi, drawn_b = (torch.randn(config.latent_dim, generator=rng) for _ in range(2))
        eps_phi = drawn_phi if eps_phi is None else eps_phi
        eps_b = drawn_b if eps_b is None else eps_b
    device = next(generator.parameters()).device
    for start in range(0, len(images), batch_size):
        x = slice_batch(images, start, batch_size, device)
        b = x.shape[0]
        out = generator(x, _deviates(eps_phi, b, config.latent_dim, rng, device),
                        _deviates(eps_b, b, config.latent_dim, rng, device), temperature, input_range=limits)
        displacement = out.displacement if config.use_phi else torch.zeros_like(out.displacement)
        bias = out.bias if config.use_bias else torch.zeros_like(out.bias)
        yield FieldBatch(start, displacement, bias, out.z_phi, out.z_b)


def smooth_along_z(field: torch.Tensor, index: Sequence[int], sigma: float) -> torch.Tensor:
    """A Gaussian of ``sigma`` slices along the first axis, within runs of neighbouring slices.

    ``field`` (N, ...) holds the fields of the slices ``index`` (sorted); a
    slice is averaged only with slices of its own run of consecutive indices
    (a gap in ``index`` is an edge), and the weights are renormalised where
    the kernel passes an edge, so a field constant along z stays unchanged.
    """
    index = np.asarray(index, dtype=int)
    if len(index) != len(field):
        raise AdvsegError(f"{len(field)} fields for {len(index)} slice indices")
    if sigma <= 0 or len(index) < 2:
        return field
    radius = max(1, math.ceil(3.0 * sigma))
    out = torch.empty_like(field)
    edges = np.flatnonzero(np.diff(index) != 1) + 1
    for run_start, run_stop in zip(np.r_[0, edges], np.r_[edges, len(index)], strict=True):
        run = field[run_start:run_stop]
        total = torch.zeros_like(run)
        weight = torch.zeros((len(run),) + (1,) * (run.ndim - 1), dtype=run.dtype, device=run.device)
        for k in range(-radius, radius + 1):
            w = math.exp(-0.5 * (k / sigma) ** 2)
            lo, hi = max(0, -k), min(len(run), len(run) - k)  # out[i] += w * run[i + k]
            if lo < hi:
                total[lo:hi] += w * run[lo + k:hi + k]
                weight[lo:hi] += w
        out[run_start:run_stop] = total / weight
    return out


@torch.no_grad()
def smoothed_fields(generator, config: AttackConfig, images, index: Sequence[int], sigma: float, *,
                    batch_size: int = 8, limits: tuple[float, float] | None = None, **draw) -> list[FieldBatch]:
    """:func:`generate_fields` for all of ``images`` (the slices ``index``), smoothed along z.

    Both fields are smoothed with :func:`smooth_along_z`; the rho budget of
    ``config.rho_max`` is then applied again to each slice. The fields of
    every slice are held at once: (N, 3, H, W) float32 beside the volume.
    ``draw``: ``temperature``, ``rng``, ``eps_phi``, ``eps_b``, ``latent``.
    """
    batches = list(generate_fields(generator, config, images, batch_size=batch_size, limits=limits, **draw))
    if not batches:
        return batches
    displacement = smooth_along_z(torch.cat([f.displacement for f in batches]), index, sigma)
    bias = smooth_along_z(torch.cat([f.bias for f in batches]), index, sigma)
    device = next(generator.parameters()).device
    out = []
    for f in batches:
        part = slice(f.start, f.start + len(f.displacement))
        x = slice_batch(images, f.start, batch_size, device)
        phi, b = generator.limit_rho(x, displacement[part], bias[part], limits)
        out.append(f._replace(displacement=phi, bias=b))
    return out
