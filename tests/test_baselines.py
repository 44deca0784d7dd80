"""Baseline attacks: the rho budget, shapes, smoothness, reproducibility, strength and the report."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from napari_advseg.attack.baselines.common import AttackResult, per_slice_organ_ce
from napari_advseg.evaluation.baselines import evaluate_baseline
from napari_advseg.evaluation.metrics import slice_successes
from napari_advseg.attack.baselines.pgd import pgd_l2, segpgd, segpgd_lambda
from napari_advseg.attack.baselines.registry import ATTACKS, generator_attack
from napari_advseg.attack.baselines.field_scaling import scale_fields_to_rho
from napari_advseg.attack.baselines.smooth_fields import optimised_smooth_fields, random_smooth_fields
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.attack.fields import perceptibility_per_slice, smoothness, warp_image
from napari_advseg.attack.losses import masked_cross_entropy, organ_mask
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D

RHO = 0.05
REPORT_KEYS = {"organs", "absent_organs", "rho", "fold_fraction", "mean_drop", "all_succeed", "config", "samples",
               "temperature", "seed", "volumes", "slices", "seconds_per_slice", "slice_success_rate", "realism"}


@pytest.fixture(scope="module")
def tiny_target():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = UNet2D(base_channels=4, depth=2)
    return make_target(model, device="cpu")


@pytest.fixture(scope="module")
def batch():
    """Three 32x32 slices with a bright square organ (label 1) on a noisy background."""
    gen = torch.Generator().manual_seed(3)
    x = 0.3 * torch.randn(3, 1, 32, 32, generator=gen) - 0.5
    y = torch.zeros(3, 32, 32, dtype=torch.long)
    for n, offset in enumerate((8, 10, 12)):
        y[n, offset:offset + 10, offset:offset + 10] = 1
    x = x + 1.5 * (y[:, None] == 1).float()
    return x, y


def _ce(target, result: AttackResult) -> float:
    mask = organ_mask(result.warped_labels, None, 3)
    with torch.no_grad():
        return float(masked_cross_entropy(target(result.adversarial), result.warped_labels, mask))


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_hits_rho_with_the_right_shapes(name, tiny_target, batch):
    x, y = batch
    result = ATTACKS[name](x, y, tiny_target, RHO, torch.Generator().manual_seed(0))
    rho = perceptibility_per_slice(result.adversarial, x)
    assert torch.allclose(rho, torch.full_like(rho, RHO), rtol=0.02, atol=0)
    assert result.adversarial.shape == x.shape
    assert result.displacement.shape == (3, 2, 32, 32)
    assert result.bias.shape == x.shape
    assert result.warped_labels.shape == y.shape and result.warped_labels.dtype == y.dtype
    assert set(result.warped_labels.unique().tolist()) <= {0, 1}
    assert result.seconds >= 0
    if name in ("pgd_l2", "segpgd"):
        assert torch.all(result.displacement == 0)
        assert torch.equal(result.warped_labels, y)
        assert torch.allclose(result.adversarial, x + result.bias)


@pytest.mark.parametrize("fields", ["phi", "bias"])
def test_single_field_ablations_hit_rho(fields, batch):
    x, y = batch
    result = random_smooth_fields(x, y, RHO, torch.Generator().manual_seed(1), fields=fields)
    rho = perceptibility_per_slice(result.adversarial, x)
    assert torch.allclose(rho, torch.full_like(rho, RHO), rtol=0.02, atol=0)
    if fields == "phi":
        assert torch.all(result.bias == 0) and result.displacement.abs().max() > 0
    else:
        assert torch.all(result.displacement == 0) and torch.equal(result.warped_labels, y)


def test_scale_fields_to_rho_handles_large_and_unreachable_fields(batch):
    x, _ = batch
    phi = 50.0 * torch.randn(3, 2, 32, 32, generator=torch.Generator().manual_seed(2))
    s = scale_fields_to_rho(x, phi, None, RHO)
    rho = perceptibility_per_slice(warp_image(x, phi * s.view(-1, 1, 1, 1)), x)
    assert torch.allclose(rho, torch.full_like(rho, RHO), rtol=0.02, atol=0)
    flat = torch.ones(1, 1, 16, 16)           # warping a constant slice changes nothing
    s = scale_fields_to_rho(flat, torch.ones(1, 2, 16, 16), None, RHO)
    assert torch.isfinite(s).all() and s.item() <= 16.0 + 1e-6
    assert scale_fields_to_rho(x, phi, None, 0.0).abs().sum() == 0


def test_random_fields_are_smooth_and_reproducible(batch):
    x, y = batch
    a = random_smooth_fields(x, y, RHO, torch.Generator().manual_seed(5))
    b = random_smooth_fields(x, y, RHO, torch.Generator().manual_seed(5))
    c = random_smooth_fields(x, y, RHO, torch.Generator().manual_seed(6))
    assert torch.equal(a.displacement, b.displacement) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.displacement, c.displacement)
    for field in (a.displacement, a.bias):
        noise = torch.randn(field.shape, generator=torch.Generator().manual_seed(0))
        noise = noise * field.norm() / noise.norm()
        assert smoothness(field) < 0.05 * smoothness(noise)


def test_more_optimisation_steps_do_not_lower_the_loss(tiny_target, batch):
    x, y = batch
    ce = {steps: _ce(tiny_target, optimised_smooth_fields(x, y, tiny_target, RHO, steps,
                                                          torch.Generator().manual_seed(0)))
          for steps in (1, 5)}
    random = _ce(tiny_target, random_smooth_fields(x, y, RHO, torch.Generator().manual_seed(0)))
    assert ce[5] >= ce[1] - 1e-6
    assert ce[1] > random


def test_organ_capped_ce_averages_organs_and_stops_at_the_cap():
    """Two organs, one broken (CE past the cap): the loss is the mean of the cap and the intact organ's CE, and
    only the intact organ's pixels carry gradient; a slice with no organ gets the pooled CE."""
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[0, 1:5, 1:5] = 1
    y[0, 10:14, 10:14] = 2
    logits = torch.zeros(2, 3, 16, 16)
    logits[0, 0, 1:5, 1:5] = 20.0   # organ 1 called background with confidence: CE about 20
    logits[0, 2, 10:14, 10:14] = 2.0  # organ 2 mostly right
    logits.requires_grad_(True)
    loss = per_slice_organ_ce(logits, y, None, 0, cap=3.0)
    ce = torch.nn.functional.cross_entropy(logits.detach(), y, reduction="none")
    intact = float(ce[0, 10:14, 10:14].mean())
    assert float(ce[0, 1:5, 1:5].mean()) > 3.0 > intact
    assert float(loss[0].detach()) == pytest.approx((3.0 + intact) / 2, rel=1e-5)
    assert float(loss[1].detach()) == pytest.approx(float(ce[1].mean()), rel=1e-5)  # no organ: pooled over the slice
    loss[0].backward()
    assert float(logits.grad[0, :, 1:5, 1:5].abs().sum()) == 0.0
    assert float(logits.grad[0, :, 10:14, 10:14].abs().sum()) > 0.0


def test_organ_capped_optimised_fields_raise_their_loss(tiny_target, batch):
    x, y = batch
    result = optimised_smooth_fields(x, y, tiny_target, RHO, 5, torch.Generator().manual_seed(0), organ_cap=3.0)
    random = random_smooth_fields(x, y, RHO, torch.Generator().manual_seed(0))
    with torch.no_grad():
        losses = [per_slice_organ_ce(tiny_target(r.adversarial), r.warped_labels, None, 3, 3.0).mean()
                  for r in (result, random)]
    assert float(losses[0]) > float(losses[1])
    assert perceptibility_per_slice(result.adversarial, x).mean().item() == pytest.approx(RHO, rel=0.02)


def test_organ_softmin_pulls_the_intact_organ_and_its_fields_raise_it(tiny_target, batch):
    """The soft minimum lies under the smaller capped CE and its gradient goes mostly to the intact organ; the
    optimised fields that ascend it raise it above random fields'."""
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    y[0, 1:5, 1:5] = 1
    y[0, 10:14, 10:14] = 2
    logits = torch.zeros(2, 3, 16, 16)
    logits[0, 2, 1:5, 1:5] = 1.0      # organ 1 called organ 2: CE above organ 2's
    logits[0, 2, 10:14, 10:14] = 2.0  # organ 2 mostly right
    logits.requires_grad_(True)
    soft = per_slice_organ_ce(logits, y, None, 0, cap=3.0, temperature=0.3)
    ce = torch.nn.functional.cross_entropy(logits.detach(), y, reduction="none")
    attacked, intact = float(ce[0, 1:5, 1:5].mean()), float(ce[0, 10:14, 10:14].mean())
    assert 3.0 > attacked > intact > float(soft[0])
    assert float(soft[1]) == pytest.approx(float(ce[1].mean()), rel=1e-5)  # no organ: pooled over the slice
    soft[0].backward()
    pull_attacked = float(logits.grad[0, :, 1:5, 1:5].abs().sum())
    pull_intact = float(logits.grad[0, :, 10:14, 10:14].abs().sum())
    assert pull_intact > pull_attacked > 0.0
    x, labels = batch
    result = optimised_smooth_fields(x, labels, tiny_target, RHO, 5, torch.Generator().manual_seed(0),
                                     organ_cap=3.0, organ_temperature=0.3)
    random = random_smooth_fields(x, labels, RHO, torch.Generator().manual_seed(0))
    with torch.no_grad():
        losses = [per_slice_organ_ce(tiny_target(r.adversarial), r.warped_labels, None, 3, 3.0, 0.3).mean()
                  for r in (result, random)]
    assert float(losses[0]) > float(losses[1])
    assert perceptibility_per_slice(result.adversarial, x).mean().item() == pytest.approx(RHO, rel=0.02)


def test_pgd_stays_in_the_ball_and_raises_the_loss(tiny_target, batch):
    x, y = batch
    clean = float(masked_cross_entropy(tiny_target(x), y, organ_mask(y, None, 3)))
    for attack in (pgd_l2, segpgd):
        result = attack(x, y, tiny_target, RHO, steps=5, rng=torch.Generator().manual_seed(0))
        radius = RHO * x.reshape(3, -1).norm(dim=1)
        assert torch.all(result.bias.reshape(3, -1).norm(dim=1) <= radius * (1 + 1e-4))
        assert _ce(tiny_target, result) > clean
    a = pgd_l2(x, y, tiny_target, RHO, steps=2, rng=torch.Generator().manual_seed(4))
    b = pgd_l2(x, y, tiny_target, RHO, steps=2, rng=torch.Generator().manual_seed(4))
    assert torch.equal(a.adversarial, b.adversarial)


def test_segpgd_lambda_schedule():
    steps = 10
    lambdas = [segpgd_lambda(t, steps) for t in range(1, steps + 1)]
    assert lambdas[0] == 0.0
    assert lambdas[-1] == pytest.approx(9 / 20)
    assert all(b > a for a, b in zip(lambdas, lambdas[1:]))
    assert all(0 <= value < 0.5 for value in lambdas)
    with pytest.raises(ValueError):
        segpgd_lambda(0, steps)


def test_bad_arguments_are_refused(tiny_target, batch):
    x, y = batch
    with pytest.raises(ValueError):
        random_smooth_fields(x, y, -0.1, torch.Generator())
    with pytest.raises(ValueError):
        random_smooth_fields(x, y, RHO, torch.Generator(), fields="neither")
    with pytest.raises(ValueError):
        optimised_smooth_fields(x, y, tiny_target, RHO, 0, torch.Generator())
    with pytest.raises(ValueError):
        pgd_l2(x, y.float(), tiny_target, RHO)


@pytest.mark.parametrize("name", ["random_fields", "optimised_fields_1", "segpgd"])
def test_evaluate_baseline_report(name, tiny_target, batch):
    x, y = batch
    volumes = [(x[:2, 0].numpy(), y[:2].numpy()), (x[2:, 0].numpy(), y[2:].numpy())]
    done = []
    options = {"steps": 2} if name == "segpgd" else None
    report = evaluate_baseline(name, tiny_target, volumes, RHO, samples=1, seed=0, batch_size=2,
                               options=options, progress=done.append)
    assert set(report) == REPORT_KEYS
    assert sum(done) == 3 and report["slices"] == 3 and report["volumes"] == 2
    assert report["rho"] == pytest.approx(RHO, rel=0.02)
    for key in ("rho", "fold_fraction", "seconds_per_slice"):
        assert math.isfinite(report[key])
    assert report["config"]["baseline"] == name
    # every baseline has a bias (or perturbation) on every slice; only the field methods deform
    assert report["realism"]["bias_slices"] == 3
    assert report["realism"]["deformation_slices"] == (0 if name == "segpgd" else 3)
    assert list(report["organs"]) == [tiny_target.class_names[1]]
    row = report["organs"][tiny_target.class_names[1]]
    assert math.isfinite(row["dice_clean"]) and math.isfinite(row["dice_adv"])
    if row["dice_clean"] > 0:
        assert math.isfinite(report["mean_drop"])
    with pytest.raises(ValueError):
        evaluate_baseline("nope", tiny_target, volumes, RHO)


def test_slice_successes_counts_organs_per_slice():
    # Slice 0: organ 1 kept (no success), organ 2 erased (success); slice 1: organ 1 erased, organ 2 absent.
    ref = torch.zeros(2, 8, 8, dtype=torch.long)
    ref[0, :4, :4], ref[0, 4:, 4:], ref[1, :4, :4] = 1, 2, 1
    adv = ref.clone()
    adv[0, 4:, 4:] = 0
    adv[1] = 0
    assert slice_successes(ref, ref, adv, ref, 3) == (2, 3)
    # Against a warped reference that moved with the organ, a moved prediction is not a success.
    moved = torch.roll(ref, 1, dims=2)
    assert slice_successes(ref, ref, moved, moved, 3) == (0, 3)
    # An organ the clean prediction already misses (Dice 0) is no trial.
    assert slice_successes(torch.zeros_like(ref), ref, adv, ref, 3) == (0, 0)


@pytest.fixture(scope="module")
def tiny_generator():
    config = AttackConfig(latent_dim=2, base_channels=4, control_spacing=8, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        generator = AttackGenerator(config)
        for p in generator.parameters():  # the decoders start at zero (identity): give them something to scale
            torch.nn.init.normal_(p, std=0.2)
    return generator.eval(), config


def test_generator_attack_native_and_scaled_to_rho(tiny_target, batch, tiny_generator):
    x, y = batch
    generator, config = tiny_generator
    native = generator_attack(x, y, tiny_target, None, torch.Generator().manual_seed(0), generator=generator,
                              config=config)
    again = generator_attack(x, y, tiny_target, None, torch.Generator().manual_seed(0), generator=generator,
                             config=config)
    assert torch.equal(native.adversarial, again.adversarial)  # the deviates come from the rng
    own = perceptibility_per_slice(native.adversarial, x)
    assert torch.all(own > 0)
    for rho in (0.02, 0.08):
        scaled = generator_attack(x, y, tiny_target, rho, torch.Generator().manual_seed(0), generator=generator,
                                  config=config)
        measured = perceptibility_per_slice(scaled.adversarial, x)
        assert torch.allclose(measured, torch.full_like(measured, rho), rtol=0.02, atol=0)
        # the same fields, one factor per slice: the bias keeps its shape
        ratio = scaled.bias.flatten(1) / native.bias.flatten(1).where(native.bias.flatten(1).abs() > 1e-6,
                                                                        torch.ones(1))
        keep = native.bias.flatten(1).abs() > 1e-3
        for n in range(3):
            assert ratio[n][keep[n]].std() < 1e-3 * ratio[n][keep[n]].abs().mean()
    report = evaluate_baseline(functools.partial(generator_attack, generator=generator, config=config),
                               tiny_target, [(x[:, 0].numpy(), y.numpy())], 0.05, batch_size=2)
    assert report["rho"] == pytest.approx(0.05, rel=0.02)
    assert report["config"]["baseline"] == "generator_attack"
    # the per-slice success rate is the count over the same batches, redone by hand
    rng = torch.Generator().manual_seed(0)
    successes = trials = 0
    for start in (0, 2):
        xb, yb = x[start:start + 2], y[start:start + 2]
        result = generator_attack(xb, yb, tiny_target, 0.05, rng, generator=generator, config=config)
        with torch.no_grad():
            pred_clean = tiny_target(xb).argmax(dim=1)
            pred_adv = tiny_target(result.adversarial).argmax(dim=1)
        s, t = slice_successes(pred_clean, yb, pred_adv, result.warped_labels, len(tiny_target.class_names))
        successes, trials = successes + s, trials + t
    assert trials > 0
    assert report["slice_success_rate"] == pytest.approx(successes / trials)
    with pytest.raises(TypeError):
        generator_attack(x, y, tiny_target, 0.05, torch.Generator(), generator=generator, config=config, steps=3)


def _air_tissue_bone():
    """Two 32 x 32 slices in a window's units: air at its bottom (left), bone at its top (right), tissue
    between, and an organ in the middle."""
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 1.6 - 0.8
    x[:, :, :, :6] = -1.0
    x[:, :, :, -4:] = 1.0
    y = torch.zeros(2, 32, 32, dtype=torch.long)
    y[:, 10:20, 10:20] = 1
    return x, y


@pytest.mark.parametrize("method", ["random", "optimised"])
def test_smooth_fields_act_as_a_window_target_sees_them(method, tiny_target):
    x, y = _air_tissue_bone()
    rng = torch.Generator().manual_seed(1)
    if method == "random":
        result = random_smooth_fields(x, y, 0.05, rng, fields="bias", input_range=(-1.0, 1.0))
    else:
        result = optimised_smooth_fields(x, y, tiny_target, 0.05, 2, rng, fields="bias", input_range=(-1.0, 1.0))
    assert result.bias[:, :, :, :6].abs().max() > 0  # the field is there ...
    assert torch.equal(result.adversarial[:, :, :, :6], x[:, :, :, :6])  # ... and leaves air and bone
    assert torch.equal(result.adversarial[:, :, :, -4:], x[:, :, :, -4:])
    assert result.adversarial.min() >= -1.0 and result.adversarial.max() <= 1.0
    assert perceptibility_per_slice(result.adversarial, x) == pytest.approx([0.05, 0.05], rel=1e-3)


@pytest.mark.parametrize("method", [pgd_l2, segpgd])
def test_pgd_acts_as_a_window_target_sees_it(method, tiny_target):
    x, y = _air_tissue_bone()
    free = method(x, y, tiny_target, 0.05, steps=3, rng=torch.Generator().manual_seed(1))
    assert not torch.equal(free.adversarial[:, :, :, :6], x[:, :, :, :6])  # without a range, air moves
    windowed = method(x, y, tiny_target, 0.05, steps=3, rng=torch.Generator().manual_seed(1),
                      input_range=(-1.0, 1.0))
    assert torch.equal(windowed.adversarial[:, :, :, :6], x[:, :, :, :6])  # with one, air and bone stay
    assert torch.equal(windowed.adversarial[:, :, :, -4:], x[:, :, :, -4:])
    assert windowed.adversarial.min() >= -1.0 and windowed.adversarial.max() <= 1.0
    assert torch.allclose(windowed.bias, windowed.adversarial - x)
    rho = perceptibility_per_slice(windowed.adversarial, x)
    assert float(rho.min()) > 0.045 and float(rho.max()) <= 0.05 + 1e-4


def test_latent_search_keeps_the_best_codes_on_the_budget(tiny_target, batch, tiny_generator):
    """``search_steps``: each slice's codes climb the target's capped per-organ CE, the fields stay at the rho,
    and the kept codes are never worse than the random ones they start from (the start is an iterate)."""
    x, y = batch
    generator, config = tiny_generator
    rho = 0.05

    def loss(result):
        with torch.no_grad():
            return per_slice_organ_ce(tiny_target(result.adversarial), result.warped_labels, None, 3, 3.0)

    start = generator_attack(x, y, tiny_target, rho, torch.Generator().manual_seed(0), generator=generator,
                             config=config)
    searched = generator_attack(x, y, tiny_target, rho, torch.Generator().manual_seed(0), generator=generator,
                                config=config, search_steps=4, search_lr=1.0)
    measured = perceptibility_per_slice(searched.adversarial, x)
    assert torch.allclose(measured, torch.full_like(measured, rho), rtol=0.02, atol=0)
    assert torch.all(loss(searched) >= loss(start) - 1e-5)
    assert torch.any(loss(searched) > loss(start) + 1e-4)
    with pytest.raises(ValueError, match="search_steps needs a rho"):
        generator_attack(x, y, tiny_target, None, torch.Generator(), generator=generator, config=config,
                         search_steps=2)
