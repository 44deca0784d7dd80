"""The generator's loss as named terms, and their weighted sum (the generator step of Eq. 6).

``L_G = lambda_real L_real + lambda_atk |gamma - L_mce| + alpha |grad phi|^2
+ beta |grad b|^2 + lambda_rho mean((x_adv - x)^2) + lambda_kl KL`` (the
paper), plus the latent-shaping terms: a Jacobian penalty against folds, a
single-number probe (each latent number alone must attack), each field alone
must attack, the excess over the rho budgets, a pull of the latent means
towards 0, a diversity reward (fields that change with the code), and the
teacher term (a pull towards per-image optimised fields).
:class:`GeneratorLoss` computes every term from one forward pass of G;
:meth:`GeneratorLoss.total` weighs and sums them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from napari_advseg.attack.attack_gradient import normalise_gradient
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.fields import apply_fields, jacobian_penalty, smoothness, warp_labels
from napari_advseg.attack.latent_terms import field_diversity
from napari_advseg.attack.losses import (attack_loss, kl_divergence, masked_cross_entropy, organ_mask,
                                         per_organ_attack_loss, realism_loss,
                                         slice_organ_attack_loss, slice_softmin_attack_loss)
from napari_advseg.attack.realism import spectrum_excess
from napari_advseg.attack.teacher import teacher_distance

TERMS = ("realism", "attack", "smooth_phi", "smooth_b", "norm", "kl_phi", "kl_b", "jacobian", "single",
         "single_norm", "alone", "excess", "mean_pull", "diversity", "spectrum", "teacher")
"""The names of the terms :meth:`GeneratorLoss.terms` returns (zero where a term is off)."""


class GeneratorLoss:
    """The generator's loss against one frozen target.

    Parameters
    ----------
    config : AttackConfig
    target : callable
        ``target(x)`` gives logits of normalised slices ``(N, 1, H, W)``.
    input_range : (low, high) or None
        The normalised intensities the target sees (adversarial images are clipped to it).
    organ_ids : label values to attack (None: every foreground class)
    attacked_ids : the label values attacked, for the per-organ reduction
    """

    def __init__(self, config: AttackConfig, target, input_range: tuple[float, float] | None,
                 organ_ids: list[int] | None, attacked_ids: list[int]):
        self.config = config
        self.target = target
        self.input_range = input_range
        self.organ_ids = organ_ids
        self.attacked_ids = attacked_ids

    def apply(self, x: torch.Tensor, out) -> torch.Tensor:
        """Eq. 1 as the target sees it (clipped to its input range: see attack.apply)."""
        cfg = self.config
        return apply_fields(x, out.displacement if cfg.use_phi else None, out.bias if cfg.use_bias else None,
                            cfg.bias_mode, self.input_range)

    def norm_base(self, x: torch.Tensor, out) -> torch.Tensor:
        """What the norm term measures the change from: ``x``, or ``T(x; phi)`` when phi has its own budget.

        With ``phi_rho_max`` the deformation answers to that budget (and the
        edge gate, smoothness and Jacobian terms), and the norm term weighs
        the bias's change alone; without it, ``mean((x_adv - x)^2)``.
        """
        cfg = self.config
        if cfg.use_phi and cfg.phi_rho_max is not None:
            return apply_fields(x, out.displacement, None, cfg.bias_mode, self.input_range)
        return x

    def attack_term(self, x_adv: torch.Tensor, y_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked CE of Eq. 5, attack loss of Eq. 4 in the configured reduction) of adversarial slices."""
        cfg = self.config
        if cfg.attack_gradient == "normalised":
            x_adv = normalise_gradient(x_adv, cfg.attack_sensitivity)
        logits = self.target(x_adv)
        mask = organ_mask(y_adv, self.organ_ids, cfg.mask_dilation)
        mce = masked_cross_entropy(logits, y_adv, mask)
        if cfg.attack_reduction == "pixels":
            return mce, attack_loss(mce, cfg.gamma)
        if cfg.attack_reduction == "slice_organs":
            return mce, slice_organ_attack_loss(logits, y_adv, self.attacked_ids, cfg.gamma, cfg.mask_dilation)
        if cfg.attack_reduction == "slice_softmin":
            return mce, slice_softmin_attack_loss(logits, y_adv, self.attacked_ids, cfg.gamma, cfg.mask_dilation,
                                                  cfg.organ_temperature)
        return mce, per_organ_attack_loss(logits, y_adv, self.attacked_ids, cfg.gamma, cfg.mask_dilation,
                                          squared=cfg.attack_reduction == "organs_squared")

    def terms(self, x: torch.Tensor, y: torch.Tensor, every, eps_phi: torch.Tensor, eps_b: torch.Tensor,
              draws: int, critic: torch.nn.Module, teacher: tuple[torch.Tensor, torch.Tensor] | None = None
              ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Every term of the loss for one batch, and what the trainer reports beside them.

        ``every``: G's output for ``draws`` latent draws of the batch ``x``
        (N slices) stacked: the random code, then a second random code when
        the diversity term is on, then the single-number probe when it is on.
        ``y``: the batch's labels. Returns ``(terms, extra)``: the terms by
        the names of :data:`TERMS`, and ``extra`` with ``x_adv`` (the random
        code's adversarial slices) and ``attack_ce`` (their masked CE).
        ``teacher``: the batch's teacher fields (:mod:`napari_advseg.attack.teacher`), pooled; None: the
        teacher term is 0.
        """
        cfg = self.config
        n = x.shape[0]
        zero = torch.zeros((), device=x.device)
        out = every.first(n)
        x_adv = self.apply(x, out)
        diversity = zero
        if cfg.lambda_diversity > 0:
            diversity = field_diversity(every.first(2 * n), eps_phi[:2 * n], eps_b[:2 * n], cfg, n)
        single = single_norm = zero
        if cfg.lambda_single > 0:
            probe = every.rows((draws - 1) * n, draws * n)
            if cfg.single_alone and cfg.fields == "both":  # the probed number's field alone
                on_phi = (eps_phi[-n:].abs().sum(dim=1) > 0).to(probe.bias.dtype)[:, None, None, None]
                probe = replace(probe, displacement=probe.displacement * on_phi, bias=probe.bias * (1.0 - on_phi))
            x_probe = self.apply(x, probe)
            single = self.attack_term(x_probe, warp_labels(y, probe.displacement) if cfg.use_phi else y)[1]
            single_norm = (x_probe - self.norm_base(x, probe)).pow(2).mean()
        y_adv = warp_labels(y, out.displacement) if cfg.use_phi else y
        mce, atk = self.attack_term(x_adv, y_adv)
        alone = zero
        if cfg.lambda_alone > 0 and cfg.fields == "both":  # each field of the random code must attack by itself
            x_phi = apply_fields(x, out.displacement, None, cfg.bias_mode, self.input_range)
            x_b = apply_fields(x, None, out.bias, cfg.bias_mode, self.input_range)
            alone = 0.5 * (self.attack_term(x_phi, y_adv)[1] + self.attack_term(x_b, y)[1])
        for p in critic.parameters():
            p.requires_grad_(False)
        realism = realism_loss(critic(x_adv))
        for p in critic.parameters():
            p.requires_grad_(True)
        smooth_phi = smoothness(out.displacement)
        smooth_b = smoothness(out.bias)
        norm = (x_adv - self.norm_base(x, out)).pow(2).mean()
        spectrum = zero
        if cfg.use_bias and cfg.lambda_spectrum > 0:
            spectrum = spectrum_excess(out.bias, cfg.spectrum_short_max, cfg.spectrum_stripe_max)
        jacobian = zero
        if cfg.use_phi and cfg.lambda_jacobian > 0:
            jacobian = jacobian_penalty(out.displacement, cfg.jacobian_floor, cfg.jacobian_ceiling)
        kl_phi = kl_b = zero
        if cfg.use_phi:
            kl_phi = kl_divergence(out.stats.mu_phi, out.stats.logvar_phi)
        if cfg.use_bias:
            kl_b = kl_divergence(out.stats.mu_b, out.stats.logvar_b)
        mean_pull = zero
        if cfg.lambda_mean > 0:
            mean_pull = 0.5 * ((out.stats.mu_phi.pow(2).sum(dim=1) if cfg.use_phi else 0.0)
                               + (out.stats.mu_b.pow(2).sum(dim=1) if cfg.use_bias else 0.0)).mean()
        excess = every.excess.pow(2).mean()  # G's forward always measures it
        pulled = zero if teacher is None else teacher_distance(out.displacement, out.bias, *teacher, cfg.use_phi,
                                                               cfg.use_bias)
        terms = {"realism": realism, "attack": atk, "smooth_phi": smooth_phi, "smooth_b": smooth_b, "norm": norm,
                 "kl_phi": kl_phi, "kl_b": kl_b, "jacobian": jacobian, "single": single, "single_norm": single_norm,
                 "alone": alone, "excess": excess, "mean_pull": mean_pull, "diversity": diversity,
                 "spectrum": spectrum, "teacher": pulled}
        return terms, {"x_adv": x_adv, "attack_ce": mce}

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the terms (the probe's norm at the norm weight; diversity is a reward)."""
        cfg = self.config
        t = terms
        weight_phi = cfg.lambda_kl if cfg.lambda_kl_phi is None else cfg.lambda_kl_phi
        return (cfg.lambda_real * t["realism"] + cfg.lambda_atk * t["attack"] + cfg.alpha * t["smooth_phi"]
                + cfg.beta * t["smooth_b"] + cfg.lambda_rho * t["norm"] + weight_phi * t["kl_phi"]
                + cfg.lambda_kl * t["kl_b"] + cfg.lambda_jacobian * t["jacobian"] + cfg.lambda_spectrum * t["spectrum"]
                + cfg.lambda_single * (t["single"] + cfg.lambda_rho * t["single_norm"])
                + cfg.lambda_alone * t["alone"] + cfg.lambda_excess * t["excess"] + cfg.lambda_mean * t["mean_pull"]
                + cfg.lambda_teacher * t["teacher"] - cfg.lambda_diversity * t["diversity"])
