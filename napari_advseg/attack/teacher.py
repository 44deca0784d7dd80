"""A per-target teacher: the per-image optimised smooth fields of the training slices, which G is pulled towards.

The generator learns to attack from the gradient the target passes back
through one random code per slice and step; a per-image attack spends 20
steps of that gradient on one slice. Against networks whose input gradient is
small or badly conditioned (networks trained elsewhere, see docs/results.md)
the per-image attack finds fields that break them long before G does. The
teacher term hands G those fields: each training slice's
``teacher_steps``-step optimised smooth fields
(:func:`~napari_advseg.attack.baselines.smooth_fields.optimised_smooth_fields`,
the benchmark's peer, on G's control grid, at ``teacher_rho``) are computed
once, the first time a batch holds the slice; every step adds ``lambda_teacher`` times the cosine distance
of G's fields of the random code from them (their direction: G's budgets
set their size). The attack, realism
and latent terms stay as they were: the teacher is a direction, not the
answer (G still has to reach held-out slices from the image alone).

The fields are kept at a quarter of the slice's resolution (area mean),
which loses little of fields that are smooth on an 8-pixel grid and keeps
the memory small (12 bytes per 16 pixels of each training slice, in the
checkpoint too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_advseg.attack.baselines.smooth_fields import optimised_smooth_fields
from napari_advseg.attack.config import AttackConfig

POOL = 4
"""Pixels per side averaged into one value of the stored teacher fields."""


def _pooled(field: torch.Tensor) -> torch.Tensor:
    """``field`` (N, C, H, W) averaged over POOL x POOL blocks (a ragged edge kept)."""
    return F.avg_pool2d(field, POOL, ceil_mode=True)


class TeacherCache:
    """The teacher's fields of a run's training slices, made when a batch first holds a slice, pooled.

    ``displacement`` (N, 2, h, w) pixels and ``bias`` (N, 1, h, w) normalised
    units for the N training slices; ``done`` marks the slices made. A batch's
    new slices are optimised together (one call of
    :func:`~napari_advseg.attack.baselines.smooth_fields.optimised_smooth_fields`,
    ``teacher_steps`` steps at ``teacher_rho``, on G's control grid), their
    random starts drawn from the cache's own generator; the cache and that
    generator's state go into the checkpoint, so a resumed run continues
    exactly. The first steps of a run are slower by those passes.
    """

    def __init__(self, config: AttackConfig, target, input_range, organ_ids, shape: tuple[int, int, int]):
        n, height, width = shape
        h, w = -(-height // POOL), -(-width // POOL)
        self.config = config
        self.target = target
        self.input_range = input_range
        self.organ_ids = organ_ids
        self.rng = torch.Generator().manual_seed(config.seed * 7_919 + 17)
        self.displacement = torch.zeros(n, 2, h, w)
        self.bias = torch.zeros(n, 1, h, w)
        self.done = torch.zeros(n, dtype=torch.bool)

    def fields(self, index: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's fields of the batch ``x``, ``y`` of training slices ``index`` (made first where new)."""
        cfg = self.config
        index = index.cpu()
        first = {}  # each slice not made yet -> its first row in the batch
        for row, i in enumerate(index.tolist()):
            if not self.done[i]:
                first.setdefault(i, row)
        new = list(first.values())
        if new:
            rows = torch.as_tensor(new)
            result = optimised_smooth_fields(x[rows], y[rows], self.target, cfg.teacher_rho, cfg.teacher_steps,
                                             self.rng, control_spacing=cfg.control_spacing,
                                             organ_ids=self.organ_ids, mask_dilation=cfg.mask_dilation,
                                             fields=cfg.fields, input_range=self.input_range)
            made = index[rows]
            self.displacement[made] = _pooled(result.displacement.detach()).cpu()
            self.bias[made] = _pooled(result.bias.detach()).cpu()
            self.done[made] = True
        return self.displacement[index].to(x.device), self.bias[index].to(x.device)

    def state_dict(self) -> dict:
        return {"displacement": self.displacement, "bias": self.bias, "done": self.done,
                "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["displacement"].shape) != tuple(self.displacement.shape):
            raise ValueError(f"the checkpoint's teacher fields are {tuple(state['displacement'].shape)}, "
                             f"this run's slices need {tuple(self.displacement.shape)}")
        self.displacement, self.bias = state["displacement"].clone(), state["bias"].clone()
        self.done = state["done"].clone()
        self.rng.set_state(state["rng"])


def teacher_distance(displacement: torch.Tensor, bias: torch.Tensor, teacher_displacement: torch.Tensor,
                     teacher_bias: torch.Tensor, use_phi: bool, use_bias: bool) -> torch.Tensor:
    """``1 - cos`` between each slice's pooled field of G and the teacher's, the mean over slices and the fields
    in use: 0 where G's field points as the teacher's, 1 where it is orthogonal (or zero), 2 where opposite.

    The direction alone: the size of G's fields is set by its budgets
    (``phi_rho_max``, ``bias_rho_max``), not by the teacher's ``teacher_rho``.
    """
    parts = []
    for on, mine, theirs in ((use_phi, displacement, teacher_displacement), (use_bias, bias, teacher_bias)):
        if on:
            mine = _pooled(mine).flatten(1)
            theirs = theirs.to(mine.device, mine.dtype).flatten(1)
            cos = (mine * theirs).sum(dim=1) / (mine.norm(dim=1) * theirs.norm(dim=1)).clamp_min(1e-12)
            parts.append(1.0 - cos)
    return torch.cat(parts).mean() if parts else displacement.new_zeros(())
