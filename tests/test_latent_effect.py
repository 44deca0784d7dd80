"""The basis latent decoder, the per-field budgets, the Jacobian penalty and the latent-effect measure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.explore import SliceExplorer
from napari_advseg.attack.fields import apply_fields, jacobian_penalty, perceptibility_per_slice
from napari_advseg.attack.latent_effect import latent_effects, slider_positions
from napari_advseg.errors import AdvsegError
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D

ROOT = Path(__file__).resolve().parents[1]


def _generator(**changes) -> AttackGenerator:
    torch.manual_seed(0)
    # a budget per field, none on the whole (the figures below were set with those)
    cfg = AttackConfig(**{"base_channels": 4, "control_spacing": 4, "latent_dim": 3, "rho_max": None,
                          "phi_rho_max": 0.06, "bias_rho_max": 0.06, **changes})
    generator = AttackGenerator(cfg)
    with torch.no_grad():  # the heads start at zero (identity): give them patterns
        for p in generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return generator.eval()


def test_basis_decoder_is_linear_in_the_code_and_zero_code_is_identity():
    generator = _generator(phi_response="linear")
    x = torch.randn(2, 1, 16, 16)
    h, _ = generator.encode(x)
    zero = torch.zeros(2, 3)
    phi0, b0 = generator.decode(h, zero, zero, (16, 16))
    assert torch.count_nonzero(phi0) == 0 and torch.count_nonzero(b0) == 0
    z1 = torch.tensor([[0.3, 0.0, 0.0], [0.0, -0.2, 0.0]])
    z2 = torch.tensor([[0.0, 0.0, 0.5], [0.1, 0.0, 0.0]])
    for decoder in (generator.decoder_phi, generator.decoder_b):  # the coarse field, before the tanh bound
        one, two, both = decoder(h, z1), decoder(h, z2), decoder(h, z1 - 2 * z2)
        assert one.abs().max() > 0 and two.abs().max() > 0
        torch.testing.assert_close(both, one - 2 * two, rtol=1e-4, atol=1e-5)


def test_two_sided_phi_response_has_a_pattern_per_sign():
    """relu(z) P + relu(-z) N: zero code is the identity, each side is linear in |z|, and -z is not the mirror of z."""
    generator = _generator()
    assert generator.config.phi_response == "two_sided"
    decoder = generator.decoder_phi
    x = torch.randn(2, 1, 16, 16)
    h, _ = generator.encode(x)
    assert decoder.patterns(h).shape[1] == 6                      # 2 signs x 3 numbers
    zero = torch.zeros(2, 3)
    phi0, _ = generator.decode(h, zero, zero, (16, 16))
    assert torch.count_nonzero(phi0) == 0
    plus = torch.tensor([[1.0, 0.0, 0.0]] * 2)
    torch.testing.assert_close(decoder(h, 2 * plus), 2 * decoder(h, plus), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(decoder(h, -2 * plus), 2 * decoder(h, -plus), rtol=1e-4, atol=1e-5)
    assert (decoder(h, plus) + decoder(h, -plus)).abs().max() > 1e-3   # the negative side is its own pattern
    mixed = torch.tensor([[0.5, -1.0, 0.0]] * 2)                    # numbers add up
    torch.testing.assert_close(decoder(h, mixed),
                               decoder(h, torch.tensor([[0.5, 0.0, 0.0]] * 2))
                               + decoder(h, torch.tensor([[0.0, -1.0, 0.0]] * 2)), rtol=1e-4, atol=1e-5)
    # the bias decoder stays linear in the code
    torch.testing.assert_close(generator.decoder_b(h, -plus), -generator.decoder_b(h, plus), rtol=1e-4, atol=1e-5)


def test_legacy_checkpoints_keep_the_concat_decoder():
    old = AttackConfig().to_dict()
    del old["latent_decoder"], old["phi_response"]
    assert AttackConfig.from_dict(old).latent_decoder == "concat"
    assert AttackConfig.from_dict(old).phi_response == "linear"
    with pytest.raises(AdvsegError, match="phi_response"):
        AttackConfig(phi_response="x")
    with pytest.raises(AdvsegError, match="latent_decoder"):
        AttackConfig(latent_decoder="x")
    with pytest.raises(AdvsegError, match="phi_control_spacing"):
        AttackConfig(control_spacing=4, phi_control_spacing=8)


def test_finer_phi_grid_decodes_finer_fields():
    coarse, fine = _generator(control_spacing=8), _generator(control_spacing=8, phi_control_spacing=2)
    x = torch.randn(1, 1, 32, 32)
    z = torch.ones(1, 3)
    for generator, grid in ((coarse, 4), (fine, 16)):
        h, _ = generator.encode(x)
        assert generator.decoder_phi.patterns(
            h if grid == 4 else torch.nn.functional.interpolate(h, scale_factor=4)).shape[-1] == grid
        phi, _ = generator.decode(h, z, z, (32, 32))
        assert phi.shape == (1, 2, 32, 32)


@pytest.mark.parametrize("which", ["phi", "bias"])
def test_per_field_budget_caps_that_field_alone(which):
    budget = 0.01
    changes = {"phi_rho_max": budget} if which == "phi" else {"bias_rho_max": budget}
    generator = _generator(phi_max=4.0, **changes)
    x = torch.randn(3, 1, 24, 24)
    out = generator(x, torch.full((3, 3), 2.0), torch.full((3, 3), 2.0))
    phi = out.displacement if which == "phi" else None
    bias = out.bias if which == "bias" else None
    rho = perceptibility_per_slice(apply_fields(x, phi, bias), x)
    assert (rho <= budget * 1.006).all()
    free = _generator(phi_max=4.0)(x, torch.full((3, 3), 2.0), torch.full((3, 3), 2.0))
    other = free.bias if which == "phi" else free.displacement  # the other field is left as it was
    torch.testing.assert_close(out.bias if which == "phi" else out.displacement, other)


def test_budget_excess_is_the_log_overshoot_of_the_field_before_its_budget():
    budget = 0.01
    generator = _generator(phi_max=4.0, phi_rho_max=None, bias_rho_max=budget)
    x = torch.randn(3, 1, 24, 24)
    code = torch.full((3, 3), 2.0)
    out = generator(x, code, code)
    h, _ = generator.encode(x)
    phi, raw = generator.decode(h, out.z_phi, out.z_b, (24, 24), generator.displacement_gate(x))
    rho = perceptibility_per_slice(apply_fields(x, None, raw), x)
    assert (rho > 2 * budget).all()  # the decoded bias is well past its budget, and scaled down to it
    torch.testing.assert_close(out.excess, torch.log(rho / budget))
    within: list = []
    generator.limit_rho(x, phi, raw * 0.5 * budget / rho.max(), excess=within)
    assert len(within) == 1 and (within[0] == 0).all()  # a field within its budget costs nothing
    assert _generator(phi_rho_max=None, bias_rho_max=None)(x, code, code).excess.abs().sum() == 0  # no budget
    # the trainer penalises it (mean of its square over the step's draws) unless the weight is 0
    on, off = _tiny_trainer(lambda_excess=2.0).step(), _tiny_trainer(lambda_excess=0.0).step()
    assert on["budget_excess"] > 0
    assert on["loss_generator"] - off["loss_generator"] == pytest.approx(2.0 * on["budget_excess"], rel=1e-3)
    assert AttackConfig.from_dict({k: v for k, v in AttackConfig().to_dict().items()
                                   if k != "lambda_excess"}).lambda_excess == 0.0


def test_jacobian_penalty_costs_contraction_towards_folding_only():
    n = 16
    ramp = torch.arange(n, dtype=torch.float32)
    compress = torch.zeros(1, 2, n, n)
    compress[:, 1] = 0.8 * ramp  # p -> 1.8 p: det J = 1.8, the slice shows a 1.8x wider region (free)
    stretch = torch.zeros(1, 2, n, n)
    stretch[:, 1] = -0.8 * ramp  # p -> 0.2 p: det J = 0.2, a 5x magnification along x, near folding
    assert jacobian_penalty(compress, 0.5) == 0
    assert jacobian_penalty(stretch, 0.5) == pytest.approx(0.09, rel=1e-4)
    assert jacobian_penalty(torch.zeros(1, 2, n, n), 0.5) == 0


def test_jacobian_ceiling_costs_expansion_beyond_it():
    n = 16
    ramp = torch.arange(n, dtype=torch.float32)
    widen = torch.zeros(1, 2, n, n)
    widen[:, 1] = 0.8 * ramp  # det J = 1.8
    assert jacobian_penalty(widen, 0.5, 1.5) == pytest.approx(0.09, rel=1e-4)
    assert jacobian_penalty(widen, 0.5, 2.0) == 0
    assert jacobian_penalty(torch.zeros(1, 2, n, n), 0.5, 1.2) == 0
    with pytest.raises(AdvsegError):
        AttackConfig(jacobian_ceiling=0.9)
    assert AttackConfig.from_dict({k: v for k, v in AttackConfig().to_dict().items()
                                   if k != "jacobian_ceiling"}).jacobian_ceiling is None


def test_latent_effects_measure_every_number():
    generator = _generator(phi_max=3.0)
    target = make_target(UNet2D(base_channels=4, depth=2), device="cpu")
    explorer = SliceExplorer(generator, generator.config, target)
    rng = np.random.default_rng(0)
    labels = np.zeros((32, 32), np.uint8)
    labels[8:20, 6:18] = 1
    explorer.set_slice(rng.normal(size=(32, 32)).astype(np.float32), labels)
    effects = latent_effects(explorer, points=3)
    assert [(e.field, e.index) for e in effects] == [("phi", 0), ("phi", 1), ("phi", 2), ("b", 0), ("b", 1),
                                                     ("b", 2)]
    for e in effects:
        moved = e.displacement_px if e.field == "phi" else e.bias_change
        other = e.bias_change if e.field == "phi" else e.displacement_px
        assert moved > 0 and other == 0
        assert e.organ == "liver" and 0 <= e.dice_swing <= 100
        assert "liver" in e.describe()
    assert list(slider_positions(3.0, 3)) == [-3.0, 0.0, 3.0]


def test_latent_effect_script_quick_mode():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "latent_effect.py"), "--quick", "--threads", "1"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| z_")]
    assert len(rows) == 16  # 8 numbers of z_phi and 8 of z_b in the shipped generator
    assert "median swing per number" in result.stdout


@pytest.mark.parametrize("fields", ["both", "phi", "bias"])
def test_single_number_codes_move_one_number_of_a_field_in_use(fields):
    from napari_advseg.attack.trainer import AttackTrainer

    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 16, 16)).astype(np.float32)
    labels = np.zeros((4, 16, 16), np.int64)
    labels[:, 4:10, 4:10] = 1
    config = AttackConfig(batch_size=2, critic_steps=1, base_channels=4, critic_channels=4, control_spacing=4,
                          latent_dim=3, fields=fields, single_sd=2.5)
    trainer = AttackTrainer(config, make_target(UNet2D(base_channels=4, depth=2), device="cpu"), images, labels,
                            device="cpu")
    from napari_advseg.attack.latent_terms import single_number_codes

    eps_phi, eps_b = single_number_codes(trainer.config, 64, trainer.rng)
    both = torch.cat((eps_phi, eps_b), dim=1)
    assert ((both != 0).sum(dim=1) == 1).all()
    assert set(both[both != 0].abs().tolist()) == {2.5}
    assert (both > 0).any() and (both < 0).any()
    assert bool(eps_phi.abs().sum() > 0) == (fields != "bias")
    assert bool(eps_b.abs().sum() > 0) == (fields != "phi")
    metrics = trainer.step()
    assert metrics["single_attack_loss"] > 0
    off = AttackTrainer(config.replace(lambda_single=0.0), trainer.target, images, labels, device="cpu").step()
    assert off["single_attack_loss"] == 0


def _tiny_trainer(**changes):
    from napari_advseg.attack.trainer import AttackTrainer

    torch.manual_seed(0)  # the target's weights
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 16, 16)).astype(np.float32)
    labels = np.zeros((4, 16, 16), np.int64)
    labels[:, 4:10, 4:10] = 1
    config = AttackConfig(**{"batch_size": 4, "critic_steps": 1, "base_channels": 4, "critic_channels": 4,
                             "control_spacing": 4, "latent_dim": 3, **changes})
    trainer = AttackTrainer(config, make_target(UNet2D(base_channels=4, depth=2), device="cpu"), images, labels,
                            device="cpu")
    with torch.no_grad():  # the heads start at zero (identity): give the generator fields
        for p in trainer.generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return trainer


@pytest.mark.parametrize("alone", [True, False])
def test_single_number_probe_applies_the_probed_field_alone(alone):
    trainer = _tiny_trainer(single_alone=alone, lambda_diversity=0.0, lambda_alone=0.0, batch_size=8)
    seen = []
    apply = trainer.loss.apply
    trainer.loss.apply = lambda x, out: seen.append(out) or apply(x, out)
    trainer.step()
    probe = seen[-1]  # the generator step applies the random code, then the probe
    phi_size = probe.displacement.flatten(1).abs().amax(dim=1)
    bias_size = probe.bias.flatten(1).abs().amax(dim=1)
    on_phi = torch.tensor([bool((z - m).abs().sum() > 1e-5) for z, m in zip(probe.z_phi, probe.stats.mu_phi)])
    assert on_phi.any() and (~on_phi).any()  # this seed probes numbers of both fields
    if alone:  # a deformation number's probe has no bias, a bias number's no deformation
        assert (bias_size[on_phi] == 0).all() and (phi_size[~on_phi] == 0).all()
        assert (phi_size[on_phi] > 0).all() and (bias_size[~on_phi] > 0).all()
    else:  # the other field at its mean code
        assert (phi_size > 0).all() and (bias_size > 0).all()


def test_each_field_alone_attack_term_only_with_both_fields():
    both = _tiny_trainer(lambda_alone=1.0).step()
    assert both["alone_attack_loss"] > 0
    assert _tiny_trainer(lambda_alone=0.0).step()["alone_attack_loss"] == 0
    assert _tiny_trainer(fields="phi", lambda_alone=1.0).step()["alone_attack_loss"] == 0
    old = AttackConfig().to_dict()
    del old["single_alone"], old["lambda_alone"]
    legacy = AttackConfig.from_dict(old)
    assert legacy.single_alone is False and legacy.lambda_alone == 0.0
    with pytest.raises(AdvsegError, match="lambda_alone"):
        AttackConfig(lambda_alone=-1.0)


def test_mean_pull_is_half_the_squared_latent_means_of_the_fields_in_use():
    trainer = _tiny_trainer(lambda_mean=5.0)
    with torch.no_grad():
        _, stats = trainer.generator.encode(trainer.images[:2])
    assert float(stats.mu_phi.abs().sum() + stats.mu_b.abs().sum()) > 0  # perturbed heads: means off 0
    assert trainer.step()["mean_pull"] > 0
    assert _tiny_trainer(lambda_mean=0.0).step()["mean_pull"] == 0
    legacy = AttackConfig.from_dict({k: v for k, v in AttackConfig().to_dict().items() if k != "lambda_mean"})
    assert legacy.lambda_mean == 0.0
    with pytest.raises(AdvsegError, match="lambda_mean"):
        AttackConfig(lambda_mean=-1.0)


def test_edge_gate_is_small_on_strong_edges_and_steers_the_displacement():
    from napari_advseg.attack.fields import edge_gate

    image = torch.full((1, 1, 48, 48), -2.0)  # air
    image[:, :, 8:40, 8:40] = 0.0  # a body with a strong outline
    image[:, :, 20:28, 20:28] = 0.2  # a faint organ inside it
    gate = edge_gate(image, 0.25)
    assert gate.shape == image.shape and float(gate.max()) <= 1.0 and float(gate.min()) > 0.0
    assert float(gate[0, 0, 8, 24]) < 0.5 * float(gate[0, 0, 16, 16])  # outline vs. flat soft tissue
    assert float(gate[0, 0, 20, 24]) > float(gate[0, 0, 8, 24])  # the faint organ edge is gated less
    torch.testing.assert_close(edge_gate(3.0 * image, 0.25), gate)  # independent of the intensity scale
    # the gate weighs the decoded field (with svf: the velocity, before integration)
    generator = _generator(phi_edge_gate=0.25, phi_rho_max=None, phi_integration="direct")
    out = generator(image, torch.ones(1, 3), torch.ones(1, 3))
    plain = _generator(phi_edge_gate=None, phi_rho_max=None, phi_integration="direct")(
        image, torch.ones(1, 3), torch.ones(1, 3))
    torch.testing.assert_close(out.displacement, plain.displacement * gate)


def test_kl_weight_of_the_deformation_code_alone():
    from napari_advseg.attack.trainer import AttackTrainer

    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 16, 16)).astype(np.float32)
    labels = np.zeros((4, 16, 16), np.int64)
    labels[:, 4:10, 4:10] = 1
    target = make_target(UNet2D(base_channels=4, depth=2), device="cpu")

    def first_loss(**changes) -> float:
        config = AttackConfig(batch_size=2, critic_steps=1, base_channels=4, critic_channels=4, control_spacing=4,
                              latent_dim=3, lambda_kl=1.0, **changes)
        return AttackTrainer(config, target, images, labels, device="cpu").step()["loss_generator"]

    same = first_loss()
    assert first_loss(lambda_kl_phi=1.0) == pytest.approx(same, rel=1e-6)  # None means lambda_kl
    assert first_loss(lambda_kl_phi=0.0) != pytest.approx(same, rel=1e-6)
    with pytest.raises(AdvsegError, match="lambda_kl_phi"):
        AttackConfig(lambda_kl_phi=-1.0)
