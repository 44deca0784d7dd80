"""The named baseline attacks (:data:`ATTACKS`) and the trained generator as a peer.

Every entry has the uniform signature ``fn(x, y, target, rho, rng, **options)``
and returns an :class:`napari_advseg.attack.baselines.common.AttackResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from napari_advseg.attack.apply import target_input_range
from napari_advseg.attack.baselines.common import AttackResult, check_inputs, per_slice_organ_ce, sync_device
from napari_advseg.attack.baselines.pgd import pgd_l2, segpgd
from napari_advseg.attack.baselines.smooth_fields import optimised_smooth_fields, random_smooth_fields
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.fields import apply_fields, warp_labels
from napari_advseg.attack.strength import scale_to_rho, stronger_displacement
from napari_advseg.attack.volume_fields import smooth_along_z
from napari_advseg.models.target_meta import is_volumetric

__all__ = [
    "ATTACKS",
    "generator_attack",
]


def _as_target_sees(target, options: dict) -> dict:
    """The smooth fields' options for ``target``: its input range, and for a 3D target (``x`` a volume's
    consecutive slices) the Gaussian along z that its generator's fields get (``AttackConfig.z_smooth``),
    unless ``options`` set ``z_smooth``."""
    z_smooth = AttackConfig().z_smooth if is_volumetric(target) else 0.0
    return {"input_range": target_input_range(target), "z_smooth": z_smooth, **options}


def _random_fields_attack(x, y, target, rho, rng, **options) -> AttackResult:
    """:func:`random_smooth_fields` with the uniform signature (``organ_ids`` ignored; of ``target`` only its
    input range and dimensionality are used)."""
    options.pop("organ_ids", None)
    options.pop("mask_dilation", None)
    return random_smooth_fields(x, y, rho, rng, **_as_target_sees(target, options))


def _optimised_attack(steps: int) -> Callable[..., AttackResult]:
    def attack(x, y, target, rho, rng, **options) -> AttackResult:
        return optimised_smooth_fields(x, y, target, rho, options.pop("steps", steps), rng,
                                       **_as_target_sees(target, options))

    attack.__doc__ = f":func:`optimised_smooth_fields` with {steps} step(s) by default."
    return attack


def _pgd_attack(x, y, target, rho, rng, **options) -> AttackResult:
    return pgd_l2(x, y, target, rho, rng=rng, **{"input_range": target_input_range(target), **options})


def _segpgd_attack(x, y, target, rho, rng, **options) -> AttackResult:
    return segpgd(x, y, target, rho, rng=rng, **{"input_range": target_input_range(target), **options})


def _searched_codes(x, y, target, rho, generator, config, eps_phi, eps_b, limits, steps, lr, cap, organ_ids):
    """Each slice's latent deviates after ``steps`` of normalised gradient ascent on the target's per-organ
    capped CE, the fields scaled onto ``rho`` at every step; the best iterate per slice."""
    codes = [eps_phi.clone(), eps_b.clone()]
    best = [c.clone() for c in codes]
    best_loss = torch.full((x.shape[0],), -float("inf"), device=x.device)
    for step in range(steps + 1):
        leaves = [c.detach().requires_grad_(True) for c in codes]
        with torch.enable_grad():
            out = generator(x, leaves[0], leaves[1], 1.0, input_range=limits)
            with torch.no_grad():
                factor = scale_to_rho(x, out.displacement, out.bias, rho, bias_mode=config.bias_mode,
                                      use_phi=config.use_phi, use_bias=config.use_bias, input_range=limits).factor
            phi = stronger_displacement(out.displacement, factor) if config.use_phi else None
            bias = out.bias * factor.reshape(-1, 1, 1, 1) if config.use_bias else None
            x_adv = apply_fields(x, phi, bias, config.bias_mode, limits)
            y_adv = warp_labels(y, phi.detach()) if phi is not None else y
            loss = per_slice_organ_ce(target(x_adv), y_adv, organ_ids, config.mask_dilation, cap)
            better = loss.detach() > best_loss
            best_loss = torch.where(better, loss.detach(), best_loss)
            best = [torch.where(better[:, None], c.detach(), b) for c, b in zip(leaves, best)]
            if step == steps:
                break
            grads = torch.autograd.grad(loss.sum(), leaves)
        norm = torch.sqrt(sum(g.pow(2).sum(dim=1) for g in grads)).clamp_min(1e-12)[:, None]
        codes = [c.detach() + lr * g / norm for c, g in zip(leaves, grads)]
    return best


@torch.no_grad()
def generator_attack(x: torch.Tensor, y: torch.Tensor, target, rho: float | None, rng: torch.Generator,
                     *, generator, config, temperature: float = 1.0, codes=None, search_steps: int = 0,
                     search_lr: float = 0.5, search_cap: float = 3.0, **options) -> AttackResult:
    """The trained generator as a peer: one forward pass with random latent deviates.

    With ``rho`` None the fields are used as G makes them (its own rho); with a
    number, each slice's fields are scaled to that rho by
    :func:`~napari_advseg.attack.strength.scale_to_rho`, the routine behind
    ``advseg sample --rho``, ``curve`` and Explore, so "the generator at rho r"
    is one image whichever command asks. ``target`` and the other options are
    not used (G never queries the target at inference); ``seconds`` counts the
    forward pass and the scaling. ``codes``: ``(eps_phi, eps_b)`` of shape
    ``(latent_dim,)`` used for every slice instead of random deviates. A
    volumetric target (a 3D network, ``x`` a volume's consecutive slices) gets
    one code for the volume and the fields smoothed along z by the
    ``z_smooth`` it was trained with, as ``advseg sample`` makes them.
    ``search_steps`` (a 2D target, ``rho`` given; ``bench/latent_search.py``):
    each slice's deviates first climb the target's per-organ CE capped at
    ``search_cap`` by that many normalised steps of ``search_lr`` (standard
    deviations), the fields on ``rho`` throughout; the best iterate is used.
    """
    organ_ids = options.pop("organ_ids", None)
    options.pop("mask_dilation", None)
    if options:
        raise TypeError(f"generator_attack got unexpected options {sorted(options)}")
    if rho is not None:
        check_inputs(x, y, rho)
    device = next(generator.parameters()).device
    sync_device(x.device)
    start = time.perf_counter()
    n = x.shape[0]
    volumetric = is_volumetric(target)
    if codes is None:
        rows = 1 if volumetric else n
        eps_phi = torch.randn(rows, config.latent_dim, generator=rng).expand(n, -1)
        eps_b = torch.randn(rows, config.latent_dim, generator=rng).expand(n, -1)
    else:  # the same latent deviates for every slice
        eps_phi, eps_b = (torch.as_tensor(c).expand(n, -1) for c in codes)
    limits = target_input_range(target)  # what a window target can see (attack.apply)
    if search_steps:
        if rho is None or volumetric:
            raise ValueError("search_steps needs a rho to search at and a 2D target (one code per slice)")
        eps_phi, eps_b = _searched_codes(x.to(device), y.to(device), target, rho, generator, config,
                                         eps_phi.to(device), eps_b.to(device), limits, search_steps, search_lr,
                                         search_cap, organ_ids)
    out = generator(x.to(device), eps_phi.to(device), eps_b.to(device), temperature, input_range=limits)
    phi, bias = out.displacement.to(x.device), out.bias.to(x.device)  # G gives zeros for a field it does not use
    if volumetric:
        phi, bias = (smooth_along_z(field, range(n), config.z_smooth) for field in (phi, bias))
    if rho is not None:
        scaled = scale_to_rho(x, phi, bias, rho, bias_mode=config.bias_mode, use_phi=config.use_phi,
                              use_bias=config.use_bias, input_range=limits)
        phi, bias = scaled.displacement, scaled.bias
    adversarial = apply_fields(x, phi, bias, config.bias_mode, limits)
    warped = warp_labels(y, phi) if config.use_phi else y
    sync_device(x.device)
    return AttackResult(adversarial, phi, bias, warped, time.perf_counter() - start)


ATTACKS: dict[str, Callable[..., AttackResult]] = {
    "random_fields": _random_fields_attack,
    "optimised_fields_1": _optimised_attack(1),
    "optimised_fields_5": _optimised_attack(5),
    "optimised_fields_20": _optimised_attack(20),
    "pgd_l2": _pgd_attack,
    "segpgd": _segpgd_attack,
}
"""Name -> ``fn(x, y, target, rho, rng, **options)`` returning an :class:`AttackResult`.

``options`` are the keyword arguments of the underlying function
(``organ_ids`` is accepted, and ignored, by ``"random_fields"``).
"""
