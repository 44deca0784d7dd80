"""What makes the attack ask the same of every target: the attack gradient rescaled per slice at the target's
input (attack_gradient = "normalised"), and the bias field's unit taken from the slices (bias_unit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_advseg.attack.attack_gradient import normalise_gradient, sensitivity
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.generator_loss import GeneratorLoss
from napari_advseg.attack.trainer import AttackTrainer
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D

from test_trainer import TINY, tiny_data, tiny_target


def test_forward_is_the_identity_and_backward_has_the_set_sensitivity():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    weights = torch.randn(3, 1, 8, 8) * torch.tensor([1e-6, 1.0, 1e3]).view(3, 1, 1, 1)
    y = normalise_gradient(x, 2.5)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    # each slice's gradient keeps its direction and gets N ||g_n|| ||x_n|| = 2.5, whatever its raw size
    assert torch.allclose(sensitivity(grad, x.detach()), torch.full((3,), 2.5), rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity(grad.flatten(1), weights.flatten(1), dim=1)
    assert torch.allclose(cos, torch.ones(3), atol=1e-6)


def test_a_slice_without_gradient_stays_without():
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    mask = torch.zeros(2, 1, 4, 4)
    mask[1] = 1.0
    (grad,) = torch.autograd.grad((normalise_gradient(x, 1.0) * mask).sum(), x)
    assert torch.count_nonzero(grad[0]) == 0 and torch.isfinite(grad).all()


def _attack_gradient(config, target, x, y):
    loss = GeneratorLoss(config, target, None, None, [1, 5])
    x = x.clone().requires_grad_(True)
    _, atk = loss.attack_term(x, y)
    (grad,) = torch.autograd.grad(atk, x)
    return grad


def test_the_generator_sees_the_same_signal_from_a_target_whose_logits_are_scaled_down():
    """A target that is the same network with logits / 100 passes back a far smaller raw gradient; normalised,
    the two steer the generator equally (up to the direction the softened softmax changes)."""
    images, labels = tiny_data(n=2)
    x, y = torch.from_numpy(images[:, None]), torch.from_numpy(labels)
    torch.manual_seed(1)
    net = UNet2D(base_channels=4, depth=2)
    sharp = make_target(net, device="cpu")

    class Soft(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, v):
            return self.inner(v) / 100.0

    soft = make_target(Soft(net), device="cpu")
    raw = AttackConfig(**TINY, attack_gradient="raw")
    normalised = AttackConfig(**TINY, attack_gradient="normalised", attack_sensitivity=0.7)
    g_sharp, g_soft = _attack_gradient(raw, sharp, x, y), _attack_gradient(raw, soft, x, y)
    assert g_soft.norm() < 0.05 * g_sharp.norm()
    n_sharp, n_soft = _attack_gradient(normalised, sharp, x, y), _attack_gradient(normalised, soft, x, y)
    assert torch.allclose(sensitivity(n_sharp, x), torch.full((2,), 0.7), rtol=1e-4)
    assert torch.allclose(sensitivity(n_soft, x), torch.full((2,), 0.7), rtol=1e-4)


def test_training_with_the_normalised_gradient_is_finite_and_recorded(tmp_path):
    images, labels = tiny_data()
    cfg = AttackConfig(**TINY, steps=2, attack_gradient="normalised")
    trainer = AttackTrainer(cfg, tiny_target(), images, labels, "cpu")
    records = list(trainer.run(checkpoint_path=tmp_path / "g.pt"))
    assert all(np.isfinite(r["loss_generator"]) for r in records)
    saved = torch.load(tmp_path / "g.pt", weights_only=True)
    assert saved["config"]["attack_gradient"] == "normalised"


def test_checkpoints_without_the_key_load_as_raw():
    data = AttackConfig().to_dict()
    del data["attack_gradient"]
    assert AttackConfig.from_dict(data).attack_gradient == "raw"


def test_the_bias_unit_is_the_slices_rms_and_bounds_the_bias(tmp_path):
    images, labels = tiny_data()
    window = (images - images.min()) / (images.max() - images.min())  # a [0, 1] input, as a window would give
    cfg = AttackConfig(**TINY, steps=1, b_max=0.5)
    assert cfg.bias_unit is None
    trainer = AttackTrainer(cfg, tiny_target(), window, labels, "cpu")
    rms = float(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
    assert trainer.config.bias_unit == pytest.approx(rms, rel=1e-5)
    assert trainer.config.bias_bound == pytest.approx(0.5 * rms, rel=1e-5)
    list(trainer.run(checkpoint_path=tmp_path / "g.pt"))
    assert torch.load(tmp_path / "g.pt", weights_only=True)["config"]["bias_unit"] == pytest.approx(rms, rel=1e-5)
    x = torch.from_numpy(window[:2, None])
    with torch.no_grad():  # no budget: the decoded bias itself stays within b_max * bias_unit
        out = trainer.generator(x, torch.randn(2, 3) * 50, torch.randn(2, 3) * 50)
    assert out.bias.abs().max() <= 0.5 * rms + 1e-6
    assert AttackTrainer(AttackConfig(**TINY, steps=1, bias_mode="multiplicative"), tiny_target(), window,
                         labels, "cpu").config.bias_unit == 1.0


def test_slice_organs_reduction_trains_and_is_recorded(tmp_path):
    """attack_reduction = "slice_organs": the attack term is the per-slice organ mean of the losses module, the
    generator trains on it, and the checkpoint records it."""
    from napari_advseg.attack.losses import slice_organ_attack_loss

    images, labels = tiny_data()
    cfg = AttackConfig(**TINY, steps=2, attack_reduction="slice_organs", attack_gradient="raw")
    target = tiny_target()
    x = torch.as_tensor(images[:2])[:, None].float()
    y = torch.as_tensor(labels[:2]).long()
    _, atk = GeneratorLoss(cfg, target, None, None, [1, 5]).attack_term(x, y)
    with torch.no_grad():
        expected = slice_organ_attack_loss(target(x), y, [1, 5], cfg.gamma, cfg.mask_dilation)
    assert atk.item() == pytest.approx(expected.item(), rel=1e-6)
    assert abs(expected.item() - cfg.gamma) > 1e-3  # organs present: not the empty batch's constant
    trainer = AttackTrainer(cfg, target, images, labels, "cpu")
    records = list(trainer.run(checkpoint_path=tmp_path / "g.pt"))
    assert all(np.isfinite(r["loss_generator"]) for r in records)
    assert torch.load(tmp_path / "g.pt", weights_only=True)["config"]["attack_reduction"] == "slice_organs"
