"""The generator G: an encoder, two VAE heads and two field decoders, and the fields' rho budgets.

Fig. 1 of the paper: an encoder maps the slice ``x`` to features ``h``; two
VAE heads give ``(mu_k, logvar_k)`` of a latent code ``z_k`` for the
deformation (k = phi) and the bias field (k = b); two decoders of the same
architecture but separate weights decode ``h`` and ``z_k`` into the fields.
The decoders work on a coarse control-point grid (one point every
``control_spacing`` pixels) and the result is upsampled bicubically, so both
fields are smooth by construction and the network accepts any slice size.
The layers live in :mod:`napari_advseg.attack.generator_blocks`; the critic D
in :mod:`napari_advseg.attack.critic`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.fields import (apply_fields, cap_gradient, edge_gate, integrate_velocity,
                                        perceptibility_per_slice,
                                        upsample_field)
from napari_advseg.attack.generator_blocks import Encoder, FieldDecoder, LatentHead


@dataclass
class LatentStats:
    """Mean and log-variance of the two latent codes, each (N, latent_dim)."""

    mu_phi: torch.Tensor
    logvar_phi: torch.Tensor
    mu_b: torch.Tensor
    logvar_b: torch.Tensor


_BUDGET_ROUNDS = 8
"""Most rescaling rounds of :meth:`AttackGenerator.limit_rho`."""


def _within_budget(adversarial, x: torch.Tensor, fields: tuple[torch.Tensor, ...], budget: float,
                   excess: list | None = None) -> tuple[torch.Tensor, ...]:
    """Scale ``fields`` per slice by ``min(1, budget / rho)`` until ``rho(adversarial(*fields), x)`` fits.

    ``excess``: a list to append ``relu(log(rho / budget))`` of the fields as
    given (per slice, before any scaling) to.
    """
    for k in range(_BUDGET_ROUNDS):
        rho = perceptibility_per_slice(adversarial(*fields), x)
        if k == 0 and excess is not None:
            excess.append(torch.log(rho.clamp_min(1e-12) / budget).clamp_min(0.0))
        if bool((rho <= budget * 1.005).all()):
            break
        scale = (budget / rho.clamp_min(1e-12)).clamp(max=1.0).reshape(-1, 1, 1, 1)
        fields = tuple(f * scale for f in fields)
    return fields


@dataclass
class GeneratorOutput:
    """What one forward pass of G gives.

    displacement : (N, 2, H, W) pixels (dy, dx); zeros in the bias-only ablation
    bias : (N, 1, H, W) normalised units; zeros in the phi-only ablation
    z_phi, z_b : (N, latent_dim) the codes used
    stats : the encoder's latent distributions
    """

    displacement: torch.Tensor
    bias: torch.Tensor
    z_phi: torch.Tensor
    z_b: torch.Tensor
    stats: LatentStats
    excess: torch.Tensor | None = None
    """(N,) per slice, the sum over the budgets of ``relu(log(rho / budget))`` of the fields before
    :meth:`AttackGenerator.limit_rho` scaled them (None: not measured)."""

    def first(self, n: int) -> "GeneratorOutput":
        """The first ``n`` samples of the batch."""
        return self.rows(0, n)

    def rows(self, start: int, stop: int) -> "GeneratorOutput":
        """Samples ``start`` to ``stop - 1`` of the batch."""
        s, r = self.stats, slice(start, stop)
        return GeneratorOutput(self.displacement[r], self.bias[r], self.z_phi[r], self.z_b[r],
                               LatentStats(s.mu_phi[r], s.logvar_phi[r], s.mu_b[r], s.logvar_b[r]),
                               None if self.excess is None else self.excess[r])


class AttackGenerator(nn.Module):
    """G of the paper: ``x -> (phi, b)`` with a VAE latent code for each field."""

    def __init__(self, config: AttackConfig):
        super().__init__()
        self.config = config
        self.levels = int(round(math.log2(config.control_spacing)))
        self.encoder = Encoder(config.base_channels, self.levels)
        ch = self.encoder.out_channels
        self.head_phi = LatentHead(ch, config.latent_dim)
        self.head_b = LatentHead(ch, config.latent_dim)
        width = max(ch // 2, 32)
        self.decoder_phi = FieldDecoder(ch, config.latent_dim, 2, width, config.latent_decoder,
                                        two_sided=config.phi_response == "two_sided")
        self.decoder_b = FieldDecoder(ch, config.latent_dim, 1, width, config.latent_decoder,
                                      two_sided=config.bias_response == "two_sided")

    # -- pieces, so an interactive view can encode once and decode many codes
    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.control_spacing
        h, w = x.shape[-2:]
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, LatentStats]:
        """Features and latent distributions of a batch of slices ``(N, 1, H, W)``."""
        h = self.encoder(self._pad(x))
        mu_phi, logvar_phi = self.head_phi(h)
        mu_b, logvar_b = self.head_b(h)
        return h, LatentStats(mu_phi, logvar_phi, mu_b, logvar_b)

    def displacement_gate(self, x: torch.Tensor) -> torch.Tensor | None:
        """The weight the displacement of slices ``x`` is multiplied by (``config.phi_edge_gate``), or None."""
        cfg = self.config
        if not cfg.use_phi or cfg.phi_edge_gate is None:
            return None
        return edge_gate(x, cfg.phi_edge_gate)

    def phi_pattern(self, h: torch.Tensor, z_phi: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The decoded deformation at full resolution ``size`` before its bound, ``(N, 2, H, W)``.

        :meth:`decode` bounds it to ``phi_max * tanh(.)`` (then gates it, and
        integrates it with ``phi_integration "svf"``); where ``|tanh|`` nears
        1 the field sits at its bound.
        """
        ratio = self.config.control_spacing // self.config.phi_spacing
        h_phi = h if ratio == 1 else F.interpolate(h, scale_factor=ratio, mode="bilinear", align_corners=False)
        return self._full_size(self.decoder_phi(h_phi, z_phi), h, size)

    def _full_size(self, coarse: torch.Tensor, h: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """A decoder's coarse field upsampled to the padded size of the features ``h``, cropped to ``size``."""
        spacing = self.config.control_spacing
        return upsample_field(coarse, (h.shape[2] * spacing, h.shape[3] * spacing))[:, :, : size[0], : size[1]]

    def decode(self, h: torch.Tensor, z_phi: torch.Tensor, z_b: torch.Tensor,
               size: tuple[int, int], gate: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fields at full resolution ``size`` (H, W) from features and codes.

        ``gate``: :meth:`displacement_gate` of the slices (computed once per
        slice by callers that decode many codes); None where the config has no gate.
        """
        cfg = self.config
        n = h.shape[0]
        if cfg.use_phi:
            displacement = cfg.phi_max * torch.tanh(self.phi_pattern(h, z_phi, size))
            if gate is not None:
                displacement = displacement * gate
            if cfg.phi_gradient_max is not None:
                displacement = cap_gradient(displacement, cfg.phi_gradient_max)
            if cfg.phi_integration == "svf":
                displacement = integrate_velocity(displacement)
        else:
            displacement = h.new_zeros((n, 2) + tuple(size))
        if cfg.use_bias:
            bias = cfg.bias_bound * torch.tanh(self._full_size(self.decoder_b(h, z_b), h, size))
        else:
            bias = h.new_zeros((n, 1) + tuple(size))
        return displacement, bias

    def limit_rho(self, x: torch.Tensor, displacement: torch.Tensor, bias: torch.Tensor,
                  input_range: tuple[float, float] | None = None, excess: list | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The budgets of the config: each field alone, then both together.

        ``phi_rho_max`` scales the displacement of each slice by
        ``min(1, budget / rho(T(x; phi)))``, ``bias_rho_max`` the bias by
        ``min(1, budget / rho(x + b))``, and ``rho_max`` both fields by
        ``min(1, rho_max / rho(x_adv))``. Each is repeated (at most
        ``_BUDGET_ROUNDS`` times) until every slice is within 0.5 % of its
        budget, as warping is not linear in the displacement. Differentiable, so G learns the
        most harmful fields within the budgets. Unchanged without budgets.
        ``excess``: a list that gets, per budget in use, ``relu(log(rho / budget))``
        per slice of the fields before that budget's scaling.
        """
        cfg = self.config
        phi = displacement if cfg.use_phi else None
        b = bias if cfg.use_bias else None
        if phi is not None and cfg.phi_rho_max is not None:
            (displacement,) = _within_budget(lambda d: apply_fields(x, d, None, cfg.bias_mode, input_range),
                                             x, (displacement,), cfg.phi_rho_max, excess)
        if b is not None and cfg.bias_rho_max is not None:
            (bias,) = _within_budget(lambda c: apply_fields(x, None, c, cfg.bias_mode, input_range),
                                     x, (bias,), cfg.bias_rho_max, excess)
        if cfg.rho_max is not None:
            displacement, bias = _within_budget(
                lambda d, c: apply_fields(x, d if cfg.use_phi else None, c if cfg.use_bias else None,
                                          cfg.bias_mode, input_range),
                x, (displacement, bias), cfg.rho_max, excess)
        return displacement, bias

    @staticmethod
    def latent_codes(stats: LatentStats, eps_phi: torch.Tensor | None, eps_b: torch.Tensor | None,
                     temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = mu + T * sigma * eps``; ``eps`` None means the mean (``z = mu``)."""
        def one(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
            if eps is None:
                return mu
            return mu + temperature * torch.exp(0.5 * logvar) * eps.to(mu)
        return one(stats.mu_phi, stats.logvar_phi, eps_phi), one(stats.mu_b, stats.logvar_b, eps_b)

    def forward(self, x: torch.Tensor, eps_phi: torch.Tensor | None = None,
                eps_b: torch.Tensor | None = None, temperature: float = 1.0,
                input_range: tuple[float, float] | None = None, seen: torch.Tensor | None = None
                ) -> GeneratorOutput:
        """One forward pass of G. ``eps_*`` are standard-normal deviates ``(N, latent_dim)``
        (the reparameterisation's noise, or slider positions); None uses the mean.
        ``input_range``: the target's visible intensities, for the rho budget
        (:func:`napari_advseg.attack.fields.apply_fields`). ``seen``: the slices G's encoder reads, if not
        ``x`` itself (training with ``neighbour_input``); the fields are made for, and budgeted on, ``x``."""
        h, stats = self.encode(x if seen is None else seen)
        z_phi, z_b = self.latent_codes(stats, eps_phi, eps_b, temperature)
        excess: list[torch.Tensor] = []
        displacement, bias = self.limit_rho(
            x, *self.decode(h, z_phi, z_b, tuple(x.shape[-2:]), self.displacement_gate(x)), input_range, excess)
        return GeneratorOutput(displacement, bias, z_phi, z_b, stats,
                               torch.stack(excess).sum(dim=0) if excess else x.new_zeros(x.shape[0]))
