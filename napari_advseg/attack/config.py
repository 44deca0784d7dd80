"""The attack's configuration: one dataclass, saved inside every checkpoint and report.

Defaults follow ``method.md`` (the paper's method written out); choices the
paper leaves open are options here, each with its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from napari_advseg.errors import AdvsegError

FIELD_MODES = ("both", "phi", "bias")
BIAS_MODES = ("additive", "multiplicative")
CRITIC_MODES = ("gp", "clip")
LABEL_MODES = ("reference", "predicted")
ATTACK_REDUCTIONS = ("organs", "pixels")
LATENT_DECODERS = ("basis", "concat")
LATENT_RESPONSES = ("two_sided", "linear")
PHI_INTEGRATIONS = ("svf", "direct")
GENERATOR_FILE = "generator.pt"
"""File name of a generator checkpoint inside an output or checkpoint folder."""
_RETIRED_KEYS = frozenset({"normalisation", "window", "extra"})
SLIDER_OPTIONS_OFF = {"single_alone": False, "lambda_alone": 0.0, "lambda_excess": 0.0, "lambda_mean": 0.0}
"""Issue 9's four slider options (on by default since its fourth pass) turned off."""
_LEGACY_DEFAULTS = {"latent_decoder": "concat", "lambda_single": 0.0, "phi_edge_gate": None, "phi_rho_max": None,
                    "phi_response": "linear", "phi_integration": "direct", "bias_rho_max": None,
                    **SLIDER_OPTIONS_OFF}
"""Values of options a checkpoint written before them was trained with (its file lacks the key)."""


@dataclass
class AttackConfig:
    """Everything that defines a generator and how it was trained.

    Attributes
    ----------
    gamma : float
        Attack strength (Eq. 4): the masked cross-entropy the generator aims for.
    alpha, beta : float
        Weights of the smoothness terms of the displacement and the bias field (Eq. 2).
    lambda_rho : float
        Weight of the norm term ``mean((x_adv - x)^2)`` that keeps rho small.
        With ``phi_rho_max`` set, the term is ``mean((x_adv - T(x; phi))^2)``:
        the bias's change alone, the deformation answering to its own budget.
    rho_max : float or None
        A hard budget on each slice's perceptibility (Eq. 7): G multiplies both
        fields of a slice by ``min(1, rho_max / rho)`` (repeated, since warping
        is not linear, until within 0.5 % of it; see
        ``AttackGenerator.limit_rho``); G learns its attack
        within the budget. None (default): no budget, only the norm term.
    phi_rho_max, bias_rho_max : float or None
        A separate budget per field, applied before ``rho_max``: the
        displacement of a slice is scaled down until the warped image alone,
        ``T(x; phi)``, is within ``phi_rho_max`` of ``x`` (Eq. 7), and the bias
        until ``x + b`` alone is within ``bias_rho_max``. None: no such budget.
        Both default to 0.06, the rho of the paper's phi-only (0.056) and
        b-only (0.061) rows; together the two fields then come to about the
        paper's 0.085 (the changes add up nearly orthogonally).
    lambda_jacobian, jacobian_floor : float
        A perceptibility term for the deformation that is not the intensity
        L2: ``lambda_jacobian * mean(relu(jacobian_floor - det J)^2)`` penalises
        the map ``p -> p + phi(p)`` contracting below ``jacobian_floor`` (a
        strong local magnification, and folding at det J <= 0). 0 = off.
    lambda_atk, lambda_kl, lambda_real : float
        Weights of the attack loss, the KL term of the two VAE heads and the
        realism (critic) term in the generator loss (Eq. 6). ``lambda_kl`` is
        1 (it was 0.01): with a weak KL term the encoder's standard deviations
        shrank to ~0.16 and its means carried the whole attack, so a slider's
        +-3 standard deviations moved the code by +-0.5 and the outcome by a
        few Dice points; near N(0, I) the attack comes from the code.
    lambda_kl_phi : float or None
        Weight of z_phi's KL term alone (None: ``lambda_kl``). The deformation
        attacks through the encoder's mean: a weaker KL term for z_phi keeps
        its attack while z_b stays near N(0, I).
    lambda_diversity, diversity_cap : float
        Weight and cap of a mode-seeking term that rewards fields changing with
        the latent code (per unit of deviate change, fields relative to their
        bounds), so that latent sliders and samples differ; 0 = off.
    lambda_single, single_sd : float
        Weight of the single-number attack term: each step also attacks the
        batch with codes where one latent number (drawn per slice, of a field
        in use) sits at ``+-single_sd`` standard deviations and every other at
        the mean, with the attack loss of Eq. 4 and the norm term on that
        image. It makes every latent number, moved alone over a slider's
        range, an attack of its own (issue 9: sliders that change the
        outcome). 0 = off (checkpoints made before the option).
    single_phi_share : float or None
        With both fields, the share of single-number probes that move a
        deformation number (the rest move a bias number), e.g. 0.75 to train
        the slower deformation sliders harder. None (default): every number
        of both codes equally likely, i.e. half and half.
    single_alone, lambda_alone, lambda_excess, lambda_mean
        Options of issue 9's third pass for the sliders of both-fields
        generators, on by default since the fourth pass (``docs/explorer.md``,
        sections 0a and 0b). On the real CT, trained 1000 steps, each bias
        number moved over its slider swings the test slices' Dice by 37-60
        points and each deformation number by about 10 with phi_max 6
        (10.9-14.8 in one run, 9.5-11.2 in another) and 31.5-38.2 with
        phi_max 12, the default since the fifth pass (without the options:
        3.3-4.7, and half of the bias numbers under 10), and the encoder's mean code, where every
        slider starts, stays a mild change instead of the full attack. The
        shipped phantom sample is trained with them too, and with a budget
        of 0.08 per field (:data:`napari_advseg.workflows.SAMPLE_ATTACK_OPTIONS`;
        its deformation numbers swing the Dice by 7.4-11.2 points, its bias
        numbers by 46-55). Checkpoints made before the options load with
        them off.
        ``single_alone``: with both fields, a single-number probe of a
        deformation number applies the deformation alone (bias off), one of
        a bias number the bias alone, rather than with the other field at its
        mean code (True; False before the option).
        ``lambda_alone``: with both fields, weight of the mean of the attack
        losses (Eq. 4) of each field of the random code alone, ``T(x; phi)``
        and ``x + b``, so that each field attacks by itself too (1). 0 = off.
        ``lambda_excess``: weight of a penalty on fields decoded past their
        budgets (``phi_rho_max``, ``bias_rho_max``, ``rho_max``), the mean
        over a step's slices and draws of ``relu(log(rho / budget))^2`` with
        ``rho`` that of the field before the budget scales it down. Without
        it the patterns grow until every code, the encoder's mean included,
        is past the budget and scaled down to it: the mean code the sliders
        start from then attacks in full, and a slider mostly turns the
        field's direction (1). 0 = off.
        ``lambda_mean``: weight of an extra pull of the encoder's means to 0,
        ``0.5 * sum_k mu_k^2`` over both codes (beside the KL term's own), so
        that with ``lambda_excess`` the mean code stays a mild change (20). 0 = off.
    latent_dim : int
        Numbers in each latent code z_phi and z_b.
    phi_max : float
        Bound on each displacement component, in pixels (``phi_max * tanh``; on the velocity with
        ``phi_integration "svf"``). 12 since issue 9's fifth pass (6 before, which checkpoints keep):
        at 6 one latent number at +-3 sd ran into the bound where its pattern attacks (``|tanh|``
        0.999) while its field used about 0.8 of the deformation's rho budget, so the budget never
        bound a slider's end; at 12 the deformation numbers of the real CT's default generator
        swing its test slices' Dice by 31.5-38.2 points instead of 9.5-11.2 (``docs/explorer.md`` 0c).
    b_max : float
        Bound on the bias field, in normalised intensity units.
    control_spacing : int
        Pixels between the control points the fields are decoded on (a power
        of two); the fields are upsampled bicubically, smooth by construction.
    phi_control_spacing : int or None
        A finer (or equal) control grid for the displacement alone (a power of
        two, at most ``control_spacing``): local non-rigid changes of organ
        outlines with small displacements. None: ``control_spacing``.
    phi_edge_gate : float or None
        The displacement is multiplied by a smooth weight that is small on
        the slice's strong edges (body outline, bone, gas;
        :func:`napari_advseg.attack.fields.edge_gate` with this strength), so
        that its rho is spent on soft tissue and organ outlines. None: off.
    latent_decoder : str
        ``"basis"`` (default): each decoder returns one field pattern per
        latent number, conditioned on the slice, and the field is their sum
        weighted by the code, ``sum_k z_k B_k(x)``: every latent number moves
        the field along its own pattern, so every slider has an effect that
        grows with its value. ``"concat"``: the code is broadcast over space
        and concatenated with the features (checkpoints made before the
        option).
    phi_response : str
        How a deformation latent number sets the displacement in the basis
        decoder. ``"two_sided"`` (default): each number has one pattern for
        each sign, ``phi = sum_k relu(z_k) P_k(x) + relu(-z_k) N_k(x)``, so
        moving a slider either way from 0 applies a deformation of its own,
        growing with the distance, and a random code is a positive mixture of
        the patterns: a deformation can then attack from codes near N(0, I)
        (with ``"linear"``, ``sum_k z_k B_k`` averages to the identity over
        codes and random signs cancel the patterns' attacks). ``"linear"``:
        one pattern per number (checkpoints made before the option).
    phi_integration : str
        ``"svf"`` (default): the decoded (bounded, gated) field is a stationary
        velocity field and the displacement is its exponential, integrated by
        scaling and squaring (:func:`napari_advseg.attack.fields.integrate_velocity`):
        a diffeomorphism, so the deformation does not fold tissue onto itself
        (a phi-only attack otherwise learns to fold about 3 % of organ pixels,
        duplicating tissue no scan shows). ``"direct"``: the decoded field is
        the displacement (checkpoints made before the option). ``phi_max``
        bounds the velocity with ``"svf"``.
    fields : str
        ``"both"``, or the ablations ``"phi"`` (b = 0) and ``"bias"`` (phi = 0).
    bias_mode : str
        ``"additive"`` (Eq. 1, CT) or ``"multiplicative"`` (``T(x) * exp(b)``, MR-like).
    organs : list of str or None
        Organs whose (dilated) masks make the attack mask M of Eq. 5; None = all.
    mask_dilation : int
        Pixels by which the organ mask is dilated.
    attack_reduction : str
        ``"pixels"``: Eq. 4-5 as written, one masked CE over every mask pixel,
        ``|gamma - L_mce|``; large organs dominate it, so the attack tends to
        break the liver and leave small organs. ``"organs"`` (default): one
        masked CE per attacked organ present in the batch and the mean of
        ``|gamma - L_mce,k|``, so every organ is pushed towards gamma.
    label_mode : str
        ``"reference"`` (use the given labels) or ``"predicted"`` (argmax f(x),
        the label-free mode; also used when no labels are given).
    critic : str
        ``"gp"`` (WGAN-GP, default) or ``"clip"`` (the original WGAN weight clipping).
    steps : int
        Generator steps (1000: on the real CT the deformation sliders swing
        the Dice by 4.0-5.7 points at 600 steps and by about 10 at 1000, and
        at 1300 by less again, 6.1-10.8; 600 before the fourth pass).
    """

    gamma: float = 3.0
    alpha: float = 0.1
    beta: float = 0.01
    lambda_rho: float = 40.0
    rho_max: float | None = None
    lambda_atk: float = 1.0
    lambda_kl: float = 1.0
    lambda_kl_phi: float | None = None
    lambda_real: float = 0.1
    lambda_diversity: float = 10.0
    diversity_cap: float = 0.025
    lambda_single: float = 1.0
    single_sd: float = 3.0
    single_phi_share: float | None = None
    single_alone: bool = True
    lambda_alone: float = 1.0
    lambda_excess: float = 1.0
    lambda_mean: float = 20.0
    latent_dim: int = 8
    phi_max: float = 12.0
    b_max: float = 1.0
    control_spacing: int = 8
    phi_control_spacing: int | None = None
    latent_decoder: str = "basis"
    phi_response: str = "two_sided"
    phi_integration: str = "svf"
    phi_edge_gate: float | None = 0.25
    phi_rho_max: float | None = 0.06
    bias_rho_max: float | None = 0.06
    lambda_jacobian: float = 0.0
    jacobian_floor: float = 0.5
    base_channels: int = 16
    fields: str = "both"
    bias_mode: str = "additive"
    organs: list[str] | None = None
    mask_dilation: int = 3
    attack_reduction: str = "organs"
    label_mode: str = "reference"
    critic: str = "gp"
    gp_weight: float = 10.0
    clip_value: float = 0.01
    critic_steps: int = 5
    critic_channels: int = 16
    lr_generator: float = 5e-4
    lr_critic: float = 1e-4
    rmsprop_decay: float = 0.9
    batch_size: int = 8
    steps: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`AdvsegError` for a setting that cannot work."""
        checks = [
            (self.fields in FIELD_MODES, f"fields must be one of {FIELD_MODES}, got {self.fields!r}"),
            (self.bias_mode in BIAS_MODES, f"bias_mode must be one of {BIAS_MODES}, got {self.bias_mode!r}"),
            (self.critic in CRITIC_MODES, f"critic must be one of {CRITIC_MODES}, got {self.critic!r}"),
            (self.attack_reduction in ATTACK_REDUCTIONS,
             f"attack_reduction must be one of {ATTACK_REDUCTIONS}, got {self.attack_reduction!r}"),
            (self.label_mode in LABEL_MODES, f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}"),
            (self.gamma >= 0, f"gamma must be >= 0, got {self.gamma}"),
            (self.rho_max is None or self.rho_max > 0, f"rho_max must be > 0 or None, got {self.rho_max}"),
            (self.phi_rho_max is None or self.phi_rho_max > 0,
             f"phi_rho_max must be > 0 or None, got {self.phi_rho_max}"),
            (self.bias_rho_max is None or self.bias_rho_max > 0,
             f"bias_rho_max must be > 0 or None, got {self.bias_rho_max}"),
            (self.latent_decoder in LATENT_DECODERS,
             f"latent_decoder must be one of {LATENT_DECODERS}, got {self.latent_decoder!r}"),
            (self.phi_response in LATENT_RESPONSES,
             f"phi_response must be one of {LATENT_RESPONSES}, got {self.phi_response!r}"),
            (self.phi_integration in PHI_INTEGRATIONS,
             f"phi_integration must be one of {PHI_INTEGRATIONS}, got {self.phi_integration!r}"),
            (self.single_phi_share is None or 0.0 <= self.single_phi_share <= 1.0,
             f"single_phi_share must be in [0, 1] or None, got {self.single_phi_share}"),
            (self.lambda_single >= 0 and self.single_sd > 0,
             f"lambda_single must be >= 0 and single_sd > 0, got {self.lambda_single}, {self.single_sd}"),
            (self.lambda_alone >= 0, f"lambda_alone must be >= 0, got {self.lambda_alone}"),
            (self.lambda_excess >= 0, f"lambda_excess must be >= 0, got {self.lambda_excess}"),
            (self.lambda_mean >= 0, f"lambda_mean must be >= 0, got {self.lambda_mean}"),
            (self.phi_edge_gate is None or self.phi_edge_gate > 0,
             f"phi_edge_gate must be > 0 or None, got {self.phi_edge_gate}"),
            (self.lambda_kl_phi is None or self.lambda_kl_phi >= 0,
             f"lambda_kl_phi must be >= 0 or None, got {self.lambda_kl_phi}"),
            (self.lambda_jacobian >= 0, f"lambda_jacobian must be >= 0, got {self.lambda_jacobian}"),
            (self.phi_control_spacing is None or (
                1 <= self.phi_control_spacing <= self.control_spacing
                and (self.phi_control_spacing & (self.phi_control_spacing - 1)) == 0),
             f"phi_control_spacing must be a power of two <= control_spacing, got {self.phi_control_spacing}"),
            (self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.phi_max > 0 and self.b_max > 0, "phi_max and b_max must be > 0"),
            (self.control_spacing >= 1 and (self.control_spacing & (self.control_spacing - 1)) == 0,
             f"control_spacing must be a power of two, got {self.control_spacing}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
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
        known = {f.name for f in dataclasses.fields(cls)}
        # Keys that older checkpoints wrote and nothing read (the target's normalisation lives with the target).
        data = {k: v for k, v in data.items() if k not in _RETIRED_KEYS}
        data = {**_LEGACY_DEFAULTS, **data}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AdvsegError(f"unknown attack configuration keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "AttackConfig":
        return dataclasses.replace(self, **changes)
