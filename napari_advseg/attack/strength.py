"""The attack's strength set exactly: fields scaled to a chosen rho, and Dice against rho.

rho (Eq. 7) is ``||x_adv - x||_2 / ||x||_2`` of a slice, on the normalised
intensities the target sees (clipped to its input range). A generator gives
fields of its own strength; :func:`scale_to_rho` scales both fields of
each slice by one factor (up or down) until the slice's rho is the one
asked for. Warping is not linear in the factor and clipping saturates, so
the factor is searched for (a safeguarded secant), not computed. The bias
is multiplied by the factor; so is the displacement up to its own strength,
and past it the deformation is followed further along its own flow
(:func:`stronger_displacement`), since a displacement multiplied past 1
folds the tissue where the generator's did not.
:func:`scale_to_rho` is the one meaning of "the generator at rho r": ``advseg
sample --rho``, ``curve``, Explore, the robustness report, the benchmark and
hardening (through
:func:`~napari_advseg.attack.baselines.registry.generator_attack`) all call
it. Two other scalings are different things: the training budgets
(:meth:`~napari_advseg.attack.generator.AttackGenerator.limit_rho`) only scale
down, differentiably, inside G's forward pass; the smooth-field baselines
multiply fields whose size is arbitrary to begin with
(:func:`~napari_advseg.attack.baselines.field_scaling.scale_fields_to_rho`).
:func:`dose_response` runs a grid of rho on one slice and one latent code
(the Explore tab's curve); :mod:`napari_advseg.evaluation.curve` does the
same over a volume (``advseg curve``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from napari_advseg.attack.fields import apply_fields, integrate_velocity, perceptibility_per_slice, warp_image
from napari_advseg.errors import AdvsegError

DEFAULT_RHOS = tuple(round(0.01 * i, 2) for i in range(13))
"""The rho grid of a dose-response curve: 0 to 0.12 in steps of 0.01."""

MAX_FACTOR = 20.0
"""Fields are scaled up at most this much; a slice that needs more keeps its closest rho."""

ACCURACY = 0.01
"""A slice has reached its rho when it is within 1 % of it."""

_TOLERANCE = 0.004  # the search aims well inside ACCURACY
_ITERATIONS = 40


def rho_reached(achieved, asked):
    """Whether ``achieved`` is within :data:`ACCURACY` of the rho ``asked`` (floats or tensors alike; the
    1e-6 lets rho 0 pass despite warping's rounding)."""
    return abs(achieved - asked) <= ACCURACY * asked + 1e-6


@dataclass
class ScaledFields:
    """Fields scaled to a rho, slice by slice.

    displacement : (N, 2, H, W), :func:`stronger_displacement` at ``factor``
    bias : (N, 1, H, W), times ``factor``
    adversarial : (N, 1, H, W) the target's input they give (clipped to its range)
    rho : (N,) the rho each slice reached
    factor : (N,) the multiplier of each slice's fields
    reached : (N,) bool, rho within 1 % of the one asked for (False where the
        fields are zero, or clipping saturates before ``MAX_FACTOR``)
    """

    displacement: torch.Tensor
    bias: torch.Tensor
    adversarial: torch.Tensor
    rho: torch.Tensor
    factor: torch.Tensor
    reached: torch.Tensor


def check_rhos(rhos: Sequence[float]) -> list[float]:
    """The rho values as floats; AdvsegError unless there is at least one and each is finite and >= 0."""
    values = [float(r) for r in rhos]
    if not values:
        raise AdvsegError("give at least one rho")
    bad = [r for r in values if not math.isfinite(r) or r < 0]
    if bad:
        raise AdvsegError(f"rho must be a finite number >= 0 (rho = ||x_adv - x|| / ||x||), got {bad[0]:g}")
    return values


def stronger_displacement(displacement: torch.Tensor, factor) -> torch.Tensor:
    """The deformation of each slice at ``factor`` times its strength, without folding it.

    Up to 1 the displacement is multiplied by the factor (between the
    identity and a map that does not fold, the map does not fold either, in
    practice). Past 1 a displacement multiplied by the factor folds where
    its gradient passes -1 / factor, even where the generator's own field
    does not fold. So past 1 the map is composed with the flow of its own displacement,
    ``u(p) + w(p + u(p))`` with ``w = exp((factor - 1) u)``
    (:func:`~napari_advseg.attack.fields.integrate_velocity`): a composition
    of maps that do not fold, which moves the tissue further the way ``u``
    moves it and equals ``u`` at factor 1.

    displacement : (N, 2, H, W) pixels; factor : float or (N,) per slice.
    """
    f = torch.as_tensor(factor, dtype=displacement.dtype, device=displacement.device).reshape(-1, 1, 1, 1)
    scaled = displacement * f.clamp(max=1.0)
    extra = (f - 1.0).clamp(min=0.0)
    if not bool((extra > 0).any()):
        return scaled
    velocity = extra * displacement
    # scaling and squaring wants the first step well under a pixel
    largest = float(velocity.pow(2).sum(dim=1).sqrt().max())
    steps = max(7, math.ceil(math.log2(max(largest, 1e-6) / 0.25)))
    flow = integrate_velocity(velocity, steps)
    composed = displacement + warp_image(flow, displacement)
    return torch.where(f > 1.0, composed, scaled)


@torch.no_grad()
def scale_to_rho(x: torch.Tensor, displacement: torch.Tensor, bias: torch.Tensor, rho, *,
                 bias_mode: str = "additive", use_phi: bool = True, use_bias: bool = True,
                 input_range: tuple[float, float] | None = None, max_factor: float = MAX_FACTOR) -> ScaledFields:
    """Scale both fields of each slice by one factor so that the slice's rho is ``rho``.

    The bias is multiplied by the factor, the displacement scaled by
    :func:`stronger_displacement` (multiplied up to 1, past 1 followed along
    its own flow so that it does not fold).

    Parameters
    ----------
    x : (N, 1, H, W) clean slices, normalised
    displacement : (N, 2, H, W) pixels; bias : (N, 1, H, W) normalised units
    rho : float, or (N,) one per slice
        The rho to reach (0 gives zero fields).
    bias_mode, use_phi, use_bias, input_range :
        As for :func:`napari_advseg.attack.apply.network_input`: the image is
        the one the target sees (a switched-off field does not count).
    max_factor : float
        The largest factor tried.

    Returns
    -------
    ScaledFields
        With the rho each slice reached: the closest found where the level
        cannot be reached (see ``reached``).
    """
    n = x.shape[0]
    goal = torch.as_tensor(rho, dtype=x.dtype, device=x.device).flatten()
    if goal.numel() == 1:
        goal = goal.expand(n)
    if goal.numel() != n:
        raise AdvsegError(f"rho: one value or one per slice ({n}), got {goal.numel()}")
    check_rhos(goal.tolist())

    def image(factor: torch.Tensor, moved: torch.Tensor | None = None) -> torch.Tensor:
        """The target's input at ``factor``; ``moved``: the displacement at it, if already computed."""
        f = factor.reshape(-1, 1, 1, 1)
        if use_phi and moved is None:
            moved = stronger_displacement(displacement, factor)
        return apply_fields(x, moved if use_phi else None, bias * f if use_bias else None, bias_mode, input_range)

    factor = (goal > 0).to(x.dtype)
    low, r_low = torch.zeros_like(goal), torch.zeros_like(goal)
    high, r_high = torch.full_like(goal, math.inf), torch.zeros_like(goal)
    best, best_error = factor.clone(), torch.full_like(goal, math.inf)
    for _ in range(_ITERATIONS):
        r = perceptibility_per_slice(image(factor), x)
        error = (r - goal).abs()
        closer = error < best_error
        best, best_error = torch.where(closer, factor, best), torch.where(closer, error, best_error)
        below = r < goal
        low, r_low = torch.where(below, factor, low), torch.where(below, r, r_low)
        high, r_high = torch.where(below, high, factor), torch.where(below, r_high, r)
        finished = (error <= _TOLERANCE * goal) | (goal == 0) | (below & (factor >= max_factor))
        if bool(finished.all()):
            break
        # bracketed: the secant between the bracket's ends, kept off them so the bracket shrinks
        width = high - low
        secant = low + (goal - r_low) * width / (r_high - r_low).clamp_min(1e-12)
        secant = torch.minimum(torch.maximum(secant, low + 0.1 * width), high - 0.1 * width)
        # not yet: grow in proportion, a little beyond (rho grows less than linearly once warps are large)
        grow = (factor * 1.05 * goal / r.clamp_min(1e-12)).clamp(max=max_factor)
        step = torch.where(torch.isfinite(high), secant, grow)
        factor = torch.where(finished, factor, step)
    moved = stronger_displacement(displacement, best)
    adversarial = image(best, moved)
    achieved = perceptibility_per_slice(adversarial, x)
    return ScaledFields(moved, bias * best.reshape(-1, 1, 1, 1), adversarial, achieved, best,
                        rho_reached(achieved, goal))


@dataclass
class DoseResponse:
    """Each organ's Dice against rho: one latent code (a slice) or samples (a volume).

    rhos : the rho values asked for
    achieved : the mean rho reached at each
    folds : the fraction of pixels folded at each (det J <= 0; as Table 1's folds)
    dice : organ -> adversarial Dice (against the warped reference) at each rho
    clean : organ -> clean Dice
    """

    rhos: list[float]
    achieved: list[float] = field(default_factory=list)
    folds: list[float] = field(default_factory=list)
    dice: dict[str, list[float]] = field(default_factory=dict)
    clean: dict[str, float] = field(default_factory=dict)

    def reached(self) -> list[bool]:
        """Whether the (mean) rho reached is within 1 % of each rho asked for."""
        return [rho_reached(a, r) for a, r in zip(self.achieved, self.rhos)]

    def to_dict(self) -> dict:
        return {"rhos": list(self.rhos), "achieved_rho": list(self.achieved), "fold_fraction": list(self.folds),
                "dice": {k: list(v) for k, v in self.dice.items()}, "clean_dice": dict(self.clean)}


def dose_response(explorer, rhos: Sequence[float] = DEFAULT_RHOS, *, eps_phi=None, eps_b=None,
                  temperature: float = 1.0, use_phi: bool = True, use_bias: bool = True,
                  progress: Callable[[int], None] | None = None) -> DoseResponse:
    """Each organ's Dice on the explorer's slice at each rho, for one latent code.

    Parameters
    ----------
    explorer : SliceExplorer
        With its slice set (:meth:`~napari_advseg.attack.explore.SliceExplorer.set_slice`).
    rhos : sequence of float
    eps_phi, eps_b, temperature, use_phi, use_bias :
        The latent code and switches, as for ``SliceExplorer.render``.
    progress : callable(int) or None
        Called with 1 after each rho.

    Returns
    -------
    DoseResponse
        Organs of the slice's reference only; at rho 0 the adversarial Dice
        is the clean Dice.
    """
    curve = DoseResponse(check_rhos(rhos))
    for rho in curve.rhos:
        view = explorer.render(eps_phi, eps_b, temperature, use_phi, use_bias, segment=True, rho=rho)
        curve.achieved.append(float(view.rho))
        curve.folds.append(float(view.fold_fraction))
        for organ, row in view.organs.items():
            curve.clean.setdefault(organ, row["dice_clean"])
            curve.dice.setdefault(organ, []).append(row["dice_adv"])
        if progress is not None:
            progress(1)
    return curve
