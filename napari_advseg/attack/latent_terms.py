"""The two terms of the generator loss that make latent codes matter.

- :func:`field_diversity`: a capped mode-seeking term, fields that change with the code;
- :func:`single_number_codes`: the codes of the single-number attack term, one
  latent number at ``+-single_sd`` and the rest at the mean.
"""

from __future__ import annotations

import torch

from napari_advseg.attack.config import AttackConfig


def field_diversity(out, eps_phi: torch.Tensor, eps_b: torch.Tensor, config: AttackConfig, n: int) -> torch.Tensor:
    """How much the fields change per unit change of the latent deviates (mode seeking), capped.

    ``out`` holds 2n samples: slices 0..n-1 and n..2n-1 are the same images with
    different deviates. Per pair: (mean |phi_1 - phi_2| / phi_max + mean |b_1 - b_2| / b_max)
    over mean |eps_1 - eps_2|, capped at ``config.diversity_cap`` so that the term
    only lifts the generator out of ignoring its codes and does not push the
    fields further once they respond.
    """
    change = out.displacement.new_zeros(n)
    if config.use_phi:
        change = change + (out.displacement[:n] - out.displacement[n:]).abs().flatten(1).mean(1) / config.phi_max
    if config.use_bias:
        change = change + (out.bias[:n] - out.bias[n:]).abs().flatten(1).mean(1) / config.bias_bound
    code_change = torch.cat(((eps_phi[:n] - eps_phi[n:]).abs(), (eps_b[:n] - eps_b[n:]).abs()), 1).mean(1)
    return (change / code_change.clamp_min(1e-3)).clamp(max=config.diversity_cap).mean()


def single_number_codes(config: AttackConfig, n: int, rng: torch.Generator, device: torch.device | str = "cpu"
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Deviates ``(eps_phi, eps_b)`` with one latent number per slice at ``+-single_sd`` (of a field in use), the rest 0.

    Drawn from ``rng`` (the trainer's stream, so that a resumed run draws the same).
    """
    d = config.latent_dim
    fields = [k for k, used in enumerate((config.use_phi, config.use_bias)) if used]
    pick = torch.randint(len(fields) * d, (n,), generator=rng)  # every number of the codes in use equally likely
    field, number = torch.as_tensor(fields)[pick // d], pick % d
    sign = torch.randint(2, (n,), generator=rng).float() * 2.0 - 1.0
    eps = torch.zeros(n, 2, d)
    eps[torch.arange(n), field, number] = sign * config.single_sd
    return eps[:, 0].to(device), eps[:, 1].to(device)
