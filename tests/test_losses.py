"""Eq. 3, 4, 5 and the KL term, checked by hand."""

import math

import pytest
import torch

from napari_advseg.attack.losses import (attack_loss, critic_loss, gradient_penalty, kl_divergence, masked_cross_entropy,
                                  organ_mask, realism_loss)


def test_masked_cross_entropy_by_hand_3x3():
    # 2 classes on a 3x3 image; the mask keeps the centre and its right neighbour.
    logits = torch.zeros(1, 2, 3, 3)
    logits[0, 1, 1, 1] = math.log(3.0)   # centre: p(class 1) = 3/4
    logits[0, 0, 1, 2] = math.log(4.0)   # right:  p(class 0) = 4/5
    labels = torch.zeros(1, 3, 3, dtype=torch.long)
    labels[0, 1, 1] = 1
    labels[0, 1, 2] = 1                  # wrongly predicted: -log(1/5)
    mask = torch.zeros(1, 3, 3)
    mask[0, 1, 1] = mask[0, 1, 2] = 1.0
    expected = (-math.log(3 / 4) - math.log(1 / 5)) / 2
    assert masked_cross_entropy(logits, labels, mask).item() == pytest.approx(expected, rel=1e-6)
    # pixels outside the mask do not count
    logits2 = logits.clone()
    logits2[0, 1, 0, 0] = 50.0
    assert masked_cross_entropy(logits2, labels, mask).item() == pytest.approx(expected, rel=1e-6)


def test_masked_cross_entropy_empty_mask_is_zero():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4))
    assert loss.item() == 0.0
    loss.backward()  # still differentiable


def test_organ_mask_selects_and_dilates():
    y = torch.zeros(1, 9, 9, dtype=torch.long)
    y[0, 4, 4] = 2
    y[0, 0, 0] = 5
    assert organ_mask(y, [2], 0).sum().item() == 1
    assert organ_mask(y, [2], 1).sum().item() == 9
    assert organ_mask(y, None, 0).sum().item() == 2


def test_attack_loss_is_distance_to_gamma():
    assert attack_loss(torch.tensor(0.5), 2.0).item() == pytest.approx(1.5)
    assert attack_loss(torch.tensor(3.0), 2.0).item() == pytest.approx(1.0)
    assert attack_loss(torch.tensor(0.0), 0.0).item() == 0.0


def test_kl_zero_at_standard_normal_and_by_hand():
    assert kl_divergence(torch.zeros(4, 8), torch.zeros(4, 8)).item() == 0.0
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    expected = 0.5 * (1.0 + 0.0) + 0.5 * (2.0 - 1.0 - math.log(2.0))
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected)


def test_wgan_losses():
    real, adv = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert critic_loss(adv, real).item() == pytest.approx(-1.0 - 2.0)
    assert realism_loss(adv).item() == pytest.approx(1.0)


class _Linear(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return self.scale * x.flatten(1).sum(dim=1)


def test_gradient_penalty_by_hand():
    real = torch.randn(3, 1, 2, 2)
    fake = torch.randn(3, 1, 2, 2)
    mix = torch.rand(3, 1, 1, 1)
    # D(x) = s * sum(x): gradient s everywhere, norm s * sqrt(4) = 2s
    assert gradient_penalty(_Linear(0.5), real, fake, mix).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_penalty(_Linear(1.0), real, fake, mix).item() == pytest.approx(1.0, abs=1e-6)
    # the penalty is differentiable with respect to the critic (double backward)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1))
    gp = gradient_penalty(critic, real, fake, mix)
    gp.backward()
    assert critic[1].weight.grad is not None


def test_per_organ_attack_loss_by_hand():
    from napari_advseg.attack.losses import per_organ_attack_loss

    # organ 1 predicted perfectly confident-wrong, organ 2 right: each organ counts once
    logits = torch.zeros(1, 3, 3, 3)
    labels = torch.zeros(1, 3, 3, dtype=torch.long)
    labels[0, 0, 0] = 1
    labels[0, 2, 2] = 2
    logits[0, 0, 0, 0] = math.log(4.0)                 # organ 1: p = 1/6 -> CE log 6
    logits[0, 2, 2, 2] = math.log(4.0)                 # organ 2: p = 4/6 -> CE log 1.5
    loss = per_organ_attack_loss(logits, labels, [1, 2, 3], gamma=2.0, dilation=0)
    expected = (abs(2.0 - math.log(6.0)) + abs(2.0 - math.log(1.5))) / 2   # organ 3 absent: skipped
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert per_organ_attack_loss(logits, torch.zeros_like(labels), [1], 2.0, 0).item() == pytest.approx(2.0)


def test_slice_organ_attack_loss_counts_each_slice_organ_once():
    from napari_advseg.attack.losses import per_organ_attack_loss, slice_organ_attack_loss

    # slice 0: organ 1 over 4 pixels, confident-wrong; slice 1: organ 1 over 1 pixel, right, and organ 2, right
    logits = torch.zeros(2, 3, 3, 3)
    labels = torch.zeros(2, 3, 3, dtype=torch.long)
    labels[0, :2, :2] = 1
    logits[0, 0, :2, :2] = math.log(4.0)               # p(organ 1) = 1/6: CE log 6 on each of 4 pixels
    labels[1, 2, 2] = 1
    logits[1, 1, 2, 2] = math.log(4.0)                 # p = 4/6: CE log 1.5
    labels[1, 0, 0] = 2
    logits[1, 2, 0, 0] = math.log(4.0)                 # CE log 1.5
    gamma = 2.0
    loss = slice_organ_attack_loss(logits, labels, [1, 2, 3], gamma, dilation=0)
    pairs = [abs(gamma - math.log(6.0)), abs(gamma - math.log(1.5)), abs(gamma - math.log(1.5))]
    assert loss.item() == pytest.approx(sum(pairs) / 3, rel=1e-6)
    # the batch-pooled reduction weighs organ 1 by its pixels: 4 of the 5 at CE log 6
    pooled = per_organ_attack_loss(logits, labels, [1, 2, 3], gamma, dilation=0)
    organ_1 = (4 * math.log(6.0) + math.log(1.5)) / 5
    assert pooled.item() == pytest.approx((abs(gamma - organ_1) + abs(gamma - math.log(1.5))) / 2, rel=1e-6)
    assert slice_organ_attack_loss(logits, torch.zeros_like(labels), [1], gamma, 0).item() == pytest.approx(gamma)


def test_squared_per_organ_attack_loss_pulls_the_least_attacked_organ_hardest():
    from napari_advseg.attack.losses import per_organ_attack_loss

    logits = torch.zeros(1, 3, 3, 3)
    labels = torch.zeros(1, 3, 3, dtype=torch.long)
    labels[0, 0, 0] = 1
    labels[0, 2, 2] = 2
    logits[0, 0, 0, 0] = math.log(4.0)                 # organ 1: CE log 6 (attacked)
    logits[0, 2, 2, 2] = math.log(4.0)                 # organ 2: CE log 1.5 (nearly intact)
    logits.requires_grad_(True)
    loss = per_organ_attack_loss(logits, labels, [1, 2], gamma=2.0, dilation=0, squared=True)
    expected = ((2.0 - math.log(6.0)) ** 2 + (2.0 - math.log(1.5)) ** 2) / (2 * 2.0) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # the pull on each organ's true-class logit grows with its distance from gamma
    pull_attacked, pull_intact = logits.grad[0, 1, 0, 0].item(), logits.grad[0, 2, 2, 2].item()
    assert pull_intact > pull_attacked > 0
    assert per_organ_attack_loss(logits.detach(), torch.zeros_like(labels), [1], 2.0, 0,
                                 squared=True).item() == pytest.approx(1.0)  # nothing present: CE 0


def test_slice_softmin_attack_loss_pulls_each_slices_least_attacked_organ():
    from napari_advseg.attack.losses import slice_softmin_attack_loss

    # slice 0: organ 1 confident-wrong (CE log 6), organ 2 nearly right (CE log 1.5); slice 1: no organ
    logits = torch.zeros(2, 3, 3, 3)
    labels = torch.zeros(2, 3, 3, dtype=torch.long)
    labels[0, 0, 0] = 1
    labels[0, 2, 2] = 2
    logits[0, 0, 0, 0] = math.log(4.0)
    logits[0, 2, 2, 2] = math.log(4.0)
    logits.requires_grad_(True)
    gamma, t = 3.0, 0.3
    loss = slice_softmin_attack_loss(logits, labels, [1, 2, 3], gamma, dilation=0, temperature=t)
    ce = torch.tensor([math.log(6.0), math.log(1.5)])
    soft = -t * torch.logsumexp(-ce / t, dim=0)
    assert soft.item() < math.log(1.5)  # a soft minimum lies below the smallest CE
    assert loss.item() == pytest.approx((gamma - soft).item(), rel=1e-6)  # the organless slice is left out
    loss.backward()
    # the pull on the nearly intact organ is the larger: d loss / d CE_k = -softmax(-CE / t)_k
    assert -logits.grad[0, 2, 2, 2].item() < -logits.grad[0, 1, 0, 0].item() < 0
    assert logits.grad[1].abs().sum().item() == 0
    # an organ past gamma is capped: it adds no pull
    past = torch.zeros(1, 3, 3, 3)
    past[0, 0, 0, 0] = 10.0                             # organ 1: CE about 10 > gamma
    capped = past.clone().requires_grad_(True)
    slice_softmin_attack_loss(capped, labels[:1], [1, 2], gamma, 0, t).backward()
    assert capped.grad[0, :, 0, 0].abs().sum().item() == 0
    assert slice_softmin_attack_loss(logits.detach(), torch.zeros_like(labels), [1], gamma, 0, t).item() == gamma
