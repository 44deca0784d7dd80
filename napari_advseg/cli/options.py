"""The attack's options on the command line (``train``, ``sweep``): flags and the config they make."""

from __future__ import annotations

import argparse
from typing import Any

from napari_advseg.attack.config import FIELD_MODES, LATENT_DECODERS, LATENT_RESPONSES, PHI_INTEGRATIONS
from napari_advseg.cli.arguments import non_negative_int


def add_attack_options(p: argparse.ArgumentParser) -> None:
    from napari_advseg.attack.config import AttackConfig

    d = AttackConfig()
    g = p.add_argument_group("attack (method.md)")
    g.add_argument("--gamma", type=float, default=d.gamma, help=f"attack strength, the masked CE aimed for (Eq. 4; default {d.gamma})")
    g.add_argument("--steps", type=non_negative_int, default=d.steps, help=f"generator steps (default {d.steps})")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"slices per step (default {d.batch_size})")
    g.add_argument("--fields", choices=list(FIELD_MODES), default=d.fields,
                   help="fields to learn: both, or the ablations phi (b = 0) and bias (phi = 0) (default both)")
    g.add_argument("--organs", help="comma-separated organs to attack, e.g. liver,pancreas (default: all)")
    g.add_argument("--alpha", type=float, default=d.alpha, help=f"smoothness weight of phi (Eq. 2; default {d.alpha})")
    g.add_argument("--beta", type=float, default=d.beta, help=f"smoothness weight of b (Eq. 2; default {d.beta})")
    g.add_argument("--lambda-rho", type=float, default=d.lambda_rho,
                   help=f"weight of the norm term mean((x_adv - x)^2) (default {d.lambda_rho})")
    g.add_argument("--rho-max", type=float, default=d.rho_max,
                   help="hard budget on each slice's rho (Eq. 7): G scales its fields down to it (default: none)")
    g.add_argument("--phi-rho-max", type=float, default=d.phi_rho_max,
                   help=f"budget on the rho of the warped image alone, T(x; phi) (default {d.phi_rho_max:g}; 0: none)")
    g.add_argument("--bias-rho-max", type=float, default=d.bias_rho_max,
                   help=f"budget on the rho of x + b alone (default {d.bias_rho_max:g}; 0: none)")
    g.add_argument("--lambda-jacobian", type=float, default=d.lambda_jacobian,
                   help="weight of the penalty on local compression, mean(relu(floor - det J)^2) "
                        f"(default {d.lambda_jacobian:g}, off)")
    g.add_argument("--jacobian-floor", type=float, default=d.jacobian_floor,
                   help=f"Jacobian determinant below which compression costs (default {d.jacobian_floor:g})")
    g.add_argument("--control-spacing", type=int, default=d.control_spacing,
                   help=f"pixels between the fields' control points, a power of two (default {d.control_spacing})")
    g.add_argument("--phi-control-spacing", type=int, default=d.phi_control_spacing,
                   help="a finer control grid for the displacement alone (default: --control-spacing)")
    g.add_argument("--phi-edge-gate", type=float, default=d.phi_edge_gate,
                   help="multiply the displacement by a weight small on strong edges (body outline, bone, gas) "
                        f"of this strength, so its rho goes to soft tissue (default {d.phi_edge_gate:g}; 0: off)")
    g.add_argument("--latent-decoder", choices=list(LATENT_DECODERS), default=d.latent_decoder,
                   help="basis: each latent number scales a field pattern of its own (sum_k z_k B_k(x)); "
                        f"concat: the code concatenated with the features (default {d.latent_decoder})")
    g.add_argument("--phi-response", choices=list(LATENT_RESPONSES), default=d.phi_response,
                   help="two_sided: each deformation number has one pattern per sign, relu(z) P + relu(-z) N, so a "
                        "random code mixes attacking patterns; linear: z B "
                        f"(default {d.phi_response})")
    g.add_argument("--phi-integration", choices=list(PHI_INTEGRATIONS), default=d.phi_integration,
                   help="svf: the decoded field is a velocity whose exponential (scaling and squaring) is the "
                        "displacement, a map that does not fold; direct: the decoded field is the displacement "
                        f"(default {d.phi_integration})")
    g.add_argument("--lambda-atk", type=float, default=d.lambda_atk, help=f"weight of the attack loss (default {d.lambda_atk})")
    g.add_argument("--lambda-kl", type=float, default=d.lambda_kl, help=f"weight of the KL terms (default {d.lambda_kl})")
    g.add_argument("--lambda-kl-phi", type=float, default=d.lambda_kl_phi,
                   help="weight of z_phi's KL term alone (default: --lambda-kl)")
    g.add_argument("--lambda-real", type=float, default=d.lambda_real,
                   help=f"weight of the critic's realism term (default {d.lambda_real})")
    g.add_argument("--lambda-diversity", type=float, default=d.lambda_diversity,
                   help="weight of the capped mode-seeking term that makes fields change with the latent code "
                        f"(default {d.lambda_diversity:g}, on; 0 turns it off)")
    g.add_argument("--lambda-single", type=float, default=d.lambda_single,
                   help="weight of the single-number attack term: one latent number at +-3 sd, the rest at the "
                        f"mean, must attack too, so every slider moves the outcome (default {d.lambda_single:g}; 0 off)")
    g.add_argument("--single-probe", dest="single_alone", choices=["alone", "with-mean"],
                   default="alone" if d.single_alone else "with-mean",
                   help="with both fields, a single-number probe applies the probed number's field alone, or with "
                        "the other field at its mean code (default %(default)s)")
    g.add_argument("--single-phi-share", type=float, default=d.single_phi_share,
                   help="with both fields, the share of single-number probes that move a deformation number, e.g. "
                        "0.75 to train the deformation sliders harder (default: every number equally likely, 0.5)")
    g.add_argument("--lambda-alone", type=float, default=d.lambda_alone,
                   help="with both fields, weight of the attack loss of each field of the random code alone, so "
                        f"the deformation and the bias each attack by themselves (default {d.lambda_alone:g}; 0 off)")
    g.add_argument("--lambda-excess", type=float, default=d.lambda_excess,
                   help="weight of the penalty on fields decoded past their rho budgets, so that the mean code "
                        f"stays mild and a slider's ends reach the budget (default {d.lambda_excess:g}; 0 off)")
    g.add_argument("--lambda-mean", type=float, default=d.lambda_mean,
                   help="weight of an extra pull of the encoder's latent means to 0, so that the code the sliders "
                        f"start from is a mild change (default {d.lambda_mean:g}; 0 off)")
    g.add_argument("--phi-max", type=float, default=d.phi_max, help=f"bound on each displacement component, pixels (default {d.phi_max})")
    g.add_argument("--b-max", type=float, default=d.b_max, help=f"bound on the bias field, normalised units (default {d.b_max})")
    g.add_argument("--bias-mode", choices=["additive", "multiplicative"], default=d.bias_mode,
                   help="T(x)+b (CT) or T(x)*exp(b) (MR-like) (default additive)")
    g.add_argument("--critic", choices=["gp", "clip"], default=d.critic,
                   help="WGAN-GP gradient penalty, or the paper's weight clipping (default gp)")
    g.add_argument("--critic-steps", type=non_negative_int, default=d.critic_steps,
                   help=f"critic updates per generator update (default {d.critic_steps})")
    g.add_argument("--lr", type=float, default=d.lr_generator, help=f"generator RMSProp learning rate (default {d.lr_generator})")
    g.add_argument("--lr-critic", type=float, default=d.lr_critic, help=f"critic RMSProp learning rate (default {d.lr_critic})")
    g.add_argument("--attack-reduction", choices=["organs", "pixels"], default=d.attack_reduction,
                   help="organs: mean over organs of |gamma - masked CE of the organ|; pixels: one masked CE over "
                        "all organ pixels, Eq. 5 as written (default organs)")
    g.add_argument("--label-mode", choices=["reference", "predicted"], default=d.label_mode,
                   help="attack against the reference labels, or argmax f(x) (label-free; automatic without --labels)")


def config_from(args: argparse.Namespace, target) -> Any:
    from napari_advseg.attack.config import AttackConfig

    organs = None if not args.organs else [o.strip() for o in args.organs.split(",") if o.strip()]
    return AttackConfig(
        gamma=args.gamma, steps=args.steps, batch_size=args.batch_size, fields=args.fields, organs=organs,
        alpha=args.alpha, beta=args.beta, lambda_rho=args.lambda_rho, rho_max=args.rho_max,
        lambda_atk=args.lambda_atk,
        lambda_kl=args.lambda_kl, lambda_real=args.lambda_real, phi_max=args.phi_max, b_max=args.b_max,
        bias_mode=args.bias_mode, critic=args.critic, critic_steps=args.critic_steps, lr_generator=args.lr,
        lr_critic=args.lr_critic, label_mode=args.label_mode, seed=args.seed,
        attack_reduction=args.attack_reduction, lambda_diversity=args.lambda_diversity,
        phi_rho_max=args.phi_rho_max or None, bias_rho_max=args.bias_rho_max or None,
        lambda_jacobian=args.lambda_jacobian,
        jacobian_floor=args.jacobian_floor, control_spacing=args.control_spacing,
        phi_control_spacing=args.phi_control_spacing, latent_decoder=args.latent_decoder,
        phi_response=args.phi_response, phi_integration=args.phi_integration,
        lambda_single=args.lambda_single, phi_edge_gate=args.phi_edge_gate or None,
        lambda_kl_phi=args.lambda_kl_phi, single_alone=args.single_alone == "alone",
        lambda_alone=args.lambda_alone, lambda_excess=args.lambda_excess,
        lambda_mean=args.lambda_mean, single_phi_share=args.single_phi_share,
    )
