"""How a target is hardened: one dataclass, saved in the hardened checkpoint and its resume state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from napari_advseg.errors import AdvsegError

HARDEN_METHODS = ("generator", "clean", "random_fields", "optimised_fields")
"""What the adversarial part of each batch is made of.

``generator``
    One forward pass of a trained generator per batch, fresh latent codes
    every batch (with ``rounds > 1`` the generator is re-trained against the
    network being hardened between rounds: the adversarial game).
``clean``
    No adversarial slices: plain fine-tuning on clean slices, the baseline
    that tells what the extra steps alone do.
``random_fields``
    Random smooth deformation and bias fields (what an augmentation library's
    random elastic deformation plus random bias field give).
``optimised_fields``
    Smooth fields optimised per image against the network being hardened
    (advchain-style adversarial training, ``opt_steps`` steps per batch).
"""


@dataclass(frozen=True)
class HardenConfig:
    """Settings of one hardening run.

    Attributes
    ----------
    method : str
        One of :data:`HARDEN_METHODS`.
    steps : int
        Optimisation steps of the network (all rounds together).
    mix : float
        Fraction of each batch's slices replaced by their adversarial version
        (0..1; ignored by ``clean``).
    batch_size : int
        Whole slices per step.
    lr : float
        Adam learning rate of the fine-tuning (constant).
    rho_low, rho_high : float
        Each batch's adversarial slices are scaled to a perceptibility (Eq. 7)
        drawn uniformly from this range, so every method trains at the same
        strengths, the range the robustness report measures.
    rounds : int
        ``generator`` only: the steps are split into this many rounds; before
        each round after the first the generator is trained
        ``generator_steps`` more steps against the network as it is then.
    generator_steps : int
        Generator training steps per extra round.
    opt_steps : int
        ``optimised_fields`` only: gradient steps per batch.
    control_spacing : int
        Pixels between control points of the random and optimised fields.
    freeze_batchnorm : bool
        Keep the batch-norm statistics of the original network (its layers
        stay in eval mode; their scale and shift still learn), so the clean
        accuracy is not pulled by the statistics of adversarial slices.
    seed : int
        Seeds slice sampling, latent codes, strengths and fields.
    """

    method: str = "generator"
    steps: int = 300
    mix: float = 0.5
    batch_size: int = 8
    lr: float = 1e-4
    rho_low: float = 0.02
    rho_high: float = 0.10
    rounds: int = 1
    generator_steps: int = 100
    opt_steps: int = 3
    control_spacing: int = 8
    freeze_batchnorm: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in HARDEN_METHODS:
            raise AdvsegError(f"unknown hardening method {self.method!r}: expected one of {', '.join(HARDEN_METHODS)}")
        if self.steps < 1 or self.batch_size < 1 or self.rounds < 1:
            raise AdvsegError(f"steps, batch size and rounds must be >= 1 (got {self.steps}, {self.batch_size}, "
                              f"{self.rounds})")
        if self.rounds > self.steps:
            raise AdvsegError(f"{self.rounds} rounds need at least as many steps (got {self.steps})")
        if not 0.0 <= self.mix <= 1.0:
            raise AdvsegError(f"mix must lie in 0..1, got {self.mix}")
        if not self.lr > 0:
            raise AdvsegError(f"learning rate must be > 0, got {self.lr}")
        if not 0.0 < self.rho_low <= self.rho_high:
            raise AdvsegError(f"the rho range must satisfy 0 < low <= high, got {self.rho_low}..{self.rho_high}")
        if self.rounds > 1 and self.method != "generator":
            raise AdvsegError("rounds > 1 re-train a generator: only the 'generator' method has one")
        if self.generator_steps < 0 or self.opt_steps < 1 or self.control_spacing < 1:
            raise AdvsegError("generator steps must be >= 0, optimisation steps and control spacing >= 1")

    @property
    def needs_generator(self) -> bool:
        return self.method == "generator"

    def round_of(self, step: int) -> int:
        """The round (0-based) that optimisation step ``step`` (0-based) belongs to."""
        return min(self.rounds - 1, step * self.rounds // self.steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "HardenConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AdvsegError(f"unknown hardening settings {unknown} (written by a newer napari-advseg?)")
        return cls(**values)

    def replace(self, **changes: Any) -> "HardenConfig":
        return dataclasses.replace(self, **changes)
