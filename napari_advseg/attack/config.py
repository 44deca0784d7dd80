"""The attack's configuration: one dataclass, saved inside every checkpoint and report.

Defaults follow ``docs/method.md`` (the paper's method written out); choices
the paper leaves open are options here. Each field carries its own
documentation as ``dataclasses.field`` metadata (:data:`GROUPS`, a help line
with units, whether it is an everyday option), from which the command line
builds its flags. This module imports no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from napari_advseg.errors import AdvsegError

GROUPS = {
    "method": "the paper's method (Eq. 1-7)",
    "deformation": "the deformation model",
    "budgets": "budgets on the perceptibility rho (Eq. 7)",
    "latent": "latent shaping (what the latent codes and sliders do)",
    "optimisation": "optimisation",
}
"""Option groups: key -> title."""

FIELD_MODES = ("both", "phi", "bias")
BIAS_MODES = ("additive", "multiplicative")
CRITIC_MODES = ("gp", "clip")
LABEL_MODES = ("reference", "predicted")
ATTACK_REDUCTIONS = ("organs", "organs_squared", "slice_organs", "slice_softmin", "pixels")
ATTACK_GRADIENTS = ("normalised", "raw")
GENERATOR_FILE = "generator.pt"
"""File name of a generator checkpoint inside an output or checkpoint folder."""
CONFIG_FILE = "config.json"
"""File name of the resolved attack configuration written into every run folder."""
_RETIRED_KEYS = frozenset({"normalisation", "window", "extra", "single_phi_share", "spectrum_peak_max",
                           "augment_shift"})
"""Keys older checkpoints carry that nothing reads any more; loading drops them."""
SLIDER_OPTIONS_OFF = {"single_alone": False, "lambda_alone": 0.0, "lambda_excess": 0.0, "lambda_mean": 0.0}
"""The four latent-slider options (see the ``latent`` group) turned off: their defaults."""
SLIDER_OPTIONS_ON = {"single_alone": True, "lambda_alone": 1.0, "lambda_excess": 1.0, "lambda_mean": 20.0}
"""The four latent-slider options turned on (``--sliders on``, the Train tab's *shape the sliders*, the
shipped sample): each latent number then moves the fields and the Dice visibly on its own, at a cost in
attack strength and in time (docs/tuning.md)."""
_LEGACY_DEFAULTS = {"lambda_teacher": 0.0, "lambda_spectrum": 0.0, "attack_gradient": "raw", "bias_unit": 1.0, "phi_gradient_max": None, "latent_decoder": "concat", "lambda_single": 0.0, "phi_edge_gate": None, "phi_rho_max": None,
                    "phi_response": "linear", "phi_integration": "direct", "bias_rho_max": None, "rho_max": None,
                    "z_smooth": 0.0, "neighbour_input": 0, "neighbour_blend": False,
                    **SLIDER_OPTIONS_OFF}
"""What a checkpoint written before an option was trained with (its file lacks the key)."""


def _option(default: Any, group: str, help: str, *, everyday: bool = False, choices: tuple = (),
            legacy: tuple = (), zero_is_off: bool = False) -> Any:
    """A field with its documentation.

    ``choices``: the values a new run may take; ``legacy``: values accepted
    only so that old checkpoints load; ``zero_is_off``: an optional limit or
    strength where a user's 0 means None (off), on the command line and in a
    config file alike.
    """
    assert group in GROUPS, group
    return dataclasses.field(default=default, metadata={
        "group": group, "help": help, "everyday": everyday, "choices": tuple(choices), "legacy": tuple(legacy),
        "zero_is_off": zero_is_off})


@dataclass
class AttackConfig:
    """Everything that defines a generator and how it was trained.

    Attribute access is flat (``config.gamma``); ``dataclasses.fields(AttackConfig)``
    gives each field's group, help line and everyday flag in its ``metadata``.
    Optional limits are ``None`` when off.
    """

    # -- the paper's method
    gamma: float = _option(3.0, "method", "attack strength: the masked cross-entropy the generator aims for "
                                          "(Eq. 4)", everyday=True)
    fields: str = _option("both", "method", "fields to learn: both, or the ablations phi (b = 0) and bias "
                                            "(phi = 0)", everyday=True, choices=FIELD_MODES)
    organs: list[str] | None = _option(None, "method", "organs whose dilated masks make the attack mask (Eq. 5), "
                                                       "e.g. liver,pancreas; none: all")
    alpha: float = _option(0.1, "method", "weight of the displacement's smoothness term (Eq. 2)")
    beta: float = _option(0.01, "method", "weight of the bias field's smoothness term (Eq. 2)")
    lambda_rho: float = _option(40.0, "method", "weight of the norm term mean((x_adv - x)^2); with phi_rho_max "
                                                "set, of the bias's change alone")
    lambda_atk: float = _option(1.0, "method", "weight of the attack loss (Eq. 6)")
    lambda_kl: float = _option(1.0, "method", "weight of the KL terms of both latent codes (Eq. 6)")
    lambda_real: float = _option(0.1, "method", "weight of the critic's realism term (Eq. 6)")
    latent_dim: int = _option(8, "method", "numbers in each latent code, z_phi and z_b")
    b_max: float = _option(1.0, "method", "bound on the bias field, in units of bias_unit")
    bias_unit: float | None = _option(None, "method", "the bias field's unit in the target's input intensities; "
                                                      "none: the root mean square of the training slices, "
                                                      "measured when training starts and recorded (1 for "
                                                      "z-scored slices, about 0.3 for a window to [0, 1])")
    control_spacing: int = _option(8, "method", "pixels between the fields' control points (a power of two); "
                                                "the fields are upsampled bicubically")
    bias_response: str = _option("linear", "method", "linear: the bias is sum_k z_k B_k, each latent number's "
                                                     "pattern and its negative; two_sided: one bias pattern per "
                                                     "sign of each latent number (as the deformation's)",
                                 choices=("linear", "two_sided"))
    bias_mode: str = _option("additive", "method", "additive T(x) + b (CT) or multiplicative T(x) exp(b) "
                                                   "(MR-like)", choices=BIAS_MODES)
    mask_dilation: int = _option(3, "method", "pixels by which the organ mask is dilated")
    attack_reduction: str = _option("organs", "method", "organs: the mean over organs of |gamma - the organ's "
                                                        "masked CE|; organs_squared: the mean of (gamma - the "
                                                        "organ's masked CE)^2 / (2 gamma), so the organs least "
                                                        "attacked pull hardest; slice_organs: the mean over each "
                                                        "slice's organs of |gamma - that organ's masked CE in "
                                                        "the slice|; slice_softmin: the mean over slices of gamma "
                                                        "minus a soft minimum (temperature organ_temperature) of "
                                                        "the slice's organs' masked CEs, each capped at gamma, so "
                                                        "each slice's least attacked organ pulls; pixels: one "
                                                        "masked CE over all "
                                                        "organ pixels (Eq. 5 as written)",
                                     choices=ATTACK_REDUCTIONS)
    organ_temperature: float = _option(0.3, "method", "with attack_reduction slice_softmin: the soft "
                                                     "minimum's temperature, in CE units (smaller: nearer the "
                                                     "least attacked organ alone)")
    attack_gradient: str = _option("normalised", "method", "raw: the attack terms steer G with the gradient the target "
                                                    "gives; normalised: that gradient is rescaled per slice at the "
                                                    "target's input to attack_sensitivity, so a target whose softmax "
                                                    "is saturated or whose input gradient is small steers G as "
                                                    "strongly as any other", choices=ATTACK_GRADIENTS)
    attack_sensitivity: float = _option(2000.0, "method", "with attack_gradient normalised: each slice's attack "
                                                       "gradient at the target's input, as the loss change per "
                                                       "unit of relative image change (rho)")
    lambda_teacher: float = _option(0.0, "method", "weight of the teacher term: the cosine distance of "
                                                   "G's fields from each training slice's per-image optimised "
                                                   "smooth fields (made once per slice, the first time a batch "
                                                   "holds it); 0: off (a 2D target only)")
    teacher_steps: int = _option(20, "method", "gradient steps of the teacher's per-image optimised fields")
    teacher_rho: float = _option(0.08, "method", "perceptibility rho of the teacher's per-image optimised fields")
    label_mode: str = _option("reference", "method", "attack against the reference labels, or against argmax "
                                                     "f(x) (label-free; used when no labels are given)",
                              choices=LABEL_MODES)
    critic: str = _option("gp", "method", "gp: WGAN-GP gradient penalty; clip: the original WGAN weight "
                                          "clipping", choices=CRITIC_MODES)
    # -- the deformation model
    phi_max: float = _option(12.0, "deformation", "bound on each component of the velocity field, pixels "
                                                  "(phi_max tanh)")
    phi_control_spacing: int | None = _option(None, "deformation", "a finer control grid for the displacement "
                                                                   "alone, pixels (a power of two, at most "
                                                                   "control_spacing); none: control_spacing")
    phi_edge_gate: float | None = _option(None, "deformation", "strength of a weight that damps the displacement "
                                                               "on strong edges (body outline, bone, gas), so its "
                                                               "rho goes to soft tissue; 0 or none: off",
                                          zero_is_off=True)
    latent_decoder: str = _option("basis", "deformation", "basis: the field is sum_k z_k B_k(x), one pattern per "
                                                          "latent number", choices=("basis",), legacy=("concat",))
    phi_response: str = _option("two_sided", "deformation", "two_sided: one deformation pattern per sign of each "
                                                            "latent number", choices=("two_sided",),
                                legacy=("linear",))
    phi_integration: str = _option("svf", "deformation", "svf: the decoded field is a velocity integrated by "
                                                         "scaling and squaring, a map that does not fold",
                                   choices=("svf",), legacy=("direct",))
    phi_gradient_max: float | None = _option(0.12, "deformation", "cap on the velocity field's largest change "
                                                                  "from one pixel to the next (pixels per pixel): "
                                                                  "each slice's field is scaled down to it, which "
                                                                  "keeps det J within about exp(-2 cap) .. "
                                                                  "exp(2 cap); 0 or none: no cap", zero_is_off=True)
    lambda_jacobian: float = _option(0.0, "deformation", "weight of the penalty on local compression, "
                                                         "mean(relu(jacobian_floor - det J)^2); 0: off")
    jacobian_floor: float = _option(0.5, "deformation", "Jacobian determinant below which compression costs")
    jacobian_ceiling: float | None = _option(None, "deformation", "Jacobian determinant above which expansion "
                                                                  "costs (with lambda_jacobian); 0 or none: "
                                                                  "expansion is free", zero_is_off=True)
    lambda_spectrum: float = _option(1000.0, "method", "weight of the bias field's spectrum term, mean over slices of "
                                                    "relu(short share - spectrum_short_max)^2 + relu(stripe share - "
                                                    "spectrum_stripe_max)^2 (the realism figures of Table 1); 0: off")
    spectrum_short_max: float = _option(0.8, "method", "share of the bias field's power at wavelengths under 32 px "
                                                       "above which the spectrum term costs")
    spectrum_stripe_max: float = _option(0.06, "method", "share of the bias field's power in its strongest single "
                                                        "wave of wavelength under 32 px above which the spectrum "
                                                        "term costs")
    # -- budgets on rho
    rho_max: float | None = _option(0.085, "budgets", "hard budget on each slice's rho (Eq. 7): both fields are "
                                                      "scaled down to it together, so G chooses how to share it "
                                                      "between them; 0 or none: no budget", everyday=True,
                                    zero_is_off=True)
    phi_rho_max: float | None = _option(None, "budgets", "budget on the rho of the warped image alone, T(x; phi); "
                                                         "0 or none: no budget", zero_is_off=True)
    bias_rho_max: float | None = _option(None, "budgets", "budget on the rho of x + b alone; 0 or none: no budget",
                                         zero_is_off=True)
    # -- latent shaping
    lambda_kl_phi: float | None = _option(None, "latent", "weight of z_phi's KL term alone; none: lambda_kl")
    lambda_diversity: float = _option(10.0, "latent", "weight of the capped mode-seeking term that makes the fields "
                                                      "change with the latent code; 0: off")
    diversity_cap: float = _option(0.025, "latent", "cap of the diversity term (field change per unit of code "
                                                    "change, relative to the fields' bounds)")
    lambda_single: float = _option(1.0, "latent", "weight of the single-number attack term: one latent number at "
                                                  "+-single_sd, the rest at the mean, must attack too; 0: off")
    single_sd: float = _option(3.0, "latent", "standard deviations of the single-number probes")
    single_alone: bool = _option(False, "latent", "with both fields, a single-number probe applies its own field "
                                                  "alone (else with the other field at its mean code); "
                                                  "--sliders on: true")
    lambda_alone: float = _option(0.0, "latent", "with both fields, weight of the attack loss of each field of the "
                                                 "random code alone; 0: off; --sliders on: 1")
    lambda_excess: float = _option(0.0, "latent", "weight of the penalty on fields decoded past their budgets, "
                                                  "mean(relu(log(rho / budget))^2), which keeps the mean code mild; "
                                                  "0: off; --sliders on: 1")
    lambda_mean: float = _option(0.0, "latent", "weight of an extra pull of the latent means to 0, "
                                                "0.5 sum_k mu_k^2, so the code sliders start from is a mild "
                                                "change; 0: off; --sliders on: 20")
    # -- optimisation
    steps: int = _option(1000, "optimisation", "generator training steps", everyday=True)
    batch_size: int = _option(8, "optimisation", "slices per step (a 3D target: unused, each step is one slab of "
                                                 "its slab_depth consecutive slices)", everyday=True)
    z_smooth: float = _option(1.0, "optimisation", "a 3D target: sigma (slices) of the Gaussian along z over G's "
                                                   "fields of a slab, in training and wherever they are applied; "
                                                   "0: none")
    neighbour_input: int = _option(1, "optimisation", "a 2D target: G reads a training slice up to this many "
                                                      "places away in the training stack (with neighbour_blend, "
                                                      "an image between the two) while its fields attack the "
                                                      "slice drawn, so what it learns holds for the slices "
                                                      "between the training slices; 0: G reads the slice it "
                                                      "attacks. A 3D target's slabs ignore it")
    neighbour_blend: bool = _option(True, "optimisation", "with neighbour_input: G reads a random blend of the "
                                                         "slice and its neighbour (the images between them) "
                                                         "instead of the neighbour itself")
    seed: int = _option(0, "optimisation", "random seed of every draw", everyday=True)
    lr_generator: float = _option(5e-4, "optimisation", "generator RMSProp learning rate")
    lr_critic: float = _option(1e-4, "optimisation", "critic RMSProp learning rate")
    rmsprop_decay: float = _option(0.9, "optimisation", "RMSProp smoothing constant of both networks")
    critic_steps: int = _option(5, "optimisation", "critic updates per generator update")
    gp_weight: float = _option(10.0, "optimisation", "weight of the critic's gradient penalty (critic gp)")
    clip_value: float = _option(0.01, "optimisation", "bound of the critic's weights (critic clip)")
    base_channels: int = _option(16, "optimisation", "channels of the generator's first level")
    critic_channels: int = _option(16, "optimisation", "channels of the critic's first level")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`AdvsegError` for a setting that cannot work."""
        checks = []
        for f in dataclasses.fields(self):
            allowed = f.metadata["choices"] + f.metadata["legacy"]
            if allowed:
                value = getattr(self, f.name)
                checks.append((value in allowed, f"{f.name} must be one of {allowed}, got {value!r}"))
        checks += [
            (self.gamma >= 0, f"gamma must be >= 0, got {self.gamma}"),
            (self.rho_max is None or self.rho_max > 0, f"rho_max must be > 0 or None, got {self.rho_max}"),
            (self.phi_rho_max is None or self.phi_rho_max > 0,
             f"phi_rho_max must be > 0 or None, got {self.phi_rho_max}"),
            (self.bias_rho_max is None or self.bias_rho_max > 0,
             f"bias_rho_max must be > 0 or None, got {self.bias_rho_max}"),
            (self.lambda_single >= 0 and self.single_sd > 0,
             f"lambda_single must be >= 0 and single_sd > 0, got {self.lambda_single}, {self.single_sd}"),
            (self.bias_unit is None or self.bias_unit > 0, f"bias_unit must be > 0 or None, got {self.bias_unit}"),
            (self.attack_sensitivity > 0, f"attack_sensitivity must be > 0, got {self.attack_sensitivity}"),
            (self.lambda_alone >= 0, f"lambda_alone must be >= 0, got {self.lambda_alone}"),
            (self.lambda_teacher >= 0, f"lambda_teacher must be >= 0, got {self.lambda_teacher}"),
            (self.neighbour_input >= 0, f"neighbour_input must be >= 0, got {self.neighbour_input}"),
            (self.teacher_steps >= 1, f"teacher_steps must be >= 1, got {self.teacher_steps}"),
            (self.teacher_rho > 0, f"teacher_rho must be > 0, got {self.teacher_rho}"),
            (self.lambda_excess >= 0, f"lambda_excess must be >= 0, got {self.lambda_excess}"),
            (self.lambda_mean >= 0, f"lambda_mean must be >= 0, got {self.lambda_mean}"),
            (self.phi_edge_gate is None or self.phi_edge_gate > 0,
             f"phi_edge_gate must be > 0 or None, got {self.phi_edge_gate}"),
            (self.lambda_kl_phi is None or self.lambda_kl_phi >= 0,
             f"lambda_kl_phi must be >= 0 or None, got {self.lambda_kl_phi}"),
            (self.jacobian_ceiling is None or self.jacobian_ceiling > max(self.jacobian_floor, 1.0),
             f"jacobian_ceiling must be > max(jacobian_floor, 1) or None, got {self.jacobian_ceiling}"),
            (self.lambda_jacobian >= 0, f"lambda_jacobian must be >= 0, got {self.lambda_jacobian}"),
            (self.phi_gradient_max is None or self.phi_gradient_max > 0,
             f"phi_gradient_max must be > 0 or None, got {self.phi_gradient_max}"),
            (self.lambda_spectrum >= 0, f"lambda_spectrum must be >= 0, got {self.lambda_spectrum}"),
            (0 < self.spectrum_short_max <= 1 and 0 < self.spectrum_stripe_max <= 1,
             f"spectrum_short_max and spectrum_stripe_max must be in (0, 1], got {self.spectrum_short_max}, "
             f"{self.spectrum_stripe_max}"),
            (self.phi_control_spacing is None or (
                1 <= self.phi_control_spacing <= self.control_spacing
                and (self.phi_control_spacing & (self.phi_control_spacing - 1)) == 0),
             f"phi_control_spacing must be a power of two <= control_spacing, got {self.phi_control_spacing}"),
            (self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.phi_max > 0 and self.b_max > 0, "phi_max and b_max must be > 0"),
            (self.control_spacing >= 1 and (self.control_spacing & (self.control_spacing - 1)) == 0,
             f"control_spacing must be a power of two, got {self.control_spacing}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.z_smooth >= 0, f"z_smooth must be >= 0, got {self.z_smooth}"),
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.critic_steps >= 0, f"critic_steps must be >= 0, got {self.critic_steps}"),
            (self.mask_dilation >= 0, f"mask_dilation must be >= 0, got {self.mask_dilation}"),
            (self.lr_generator > 0 and self.lr_critic > 0, "learning rates must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise AdvsegError(f"invalid attack configuration: {message}")

    @property
    def use_phi(self) -> bool:
        return self.fields in ("both", "phi")

    @property
    def use_bias(self) -> bool:
        return self.fields in ("both", "bias")

    @property
    def bias_bound(self) -> float:
        """The bias field's bound in the target's input intensities: ``b_max`` times ``bias_unit`` (1 until set)."""
        return self.b_max * (1.0 if self.bias_unit is None else self.bias_unit)

    @property
    def phi_spacing(self) -> int:
        """Pixels between the displacement's control points."""
        return self.control_spacing if self.phi_control_spacing is None else self.phi_control_spacing

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (safe for JSON and ``torch.load(weights_only=True)``)."""
        data = dataclasses.asdict(self)
        data["organs"] = None if self.organs is None else list(self.organs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttackConfig":
        """The config a checkpoint or report recorded: retired keys dropped, missing ones at their legacy values."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in _RETIRED_KEYS}
        data = {**_LEGACY_DEFAULTS, **data}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AdvsegError(f"unknown attack configuration keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "AttackConfig":
        return dataclasses.replace(self, **changes)
