"""guide "gradient": G's encoder reads the target's gradient at the clean slice beside the slice."""

from __future__ import annotations

import math

import pytest
import torch

from napari_advseg.attack.baselines.registry import generator_attack
from napari_advseg.attack.checkpoint import load_generator
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.guide import GUIDE_CLIP, target_guide
from napari_advseg.attack.trainer import AttackTrainer
from napari_advseg.errors import AdvsegError

from test_trainer import TINY, tiny_data, tiny_target

GUIDED = dict(TINY, guide="gradient")


def test_the_guide_is_the_targets_gradient_scaled_per_slice():
    images, _ = tiny_data()
    x = torch.from_numpy(images)[:, None]
    target = tiny_target()
    guide = target_guide(target, x, dilation=1, batch_size=4)  # two batches
    assert guide.shape == x.shape and not guide.requires_grad
    assert float(guide.abs().max()) <= GUIDE_CLIP
    assert all(0.5 < float(g.pow(2).mean().sqrt()) <= 1.0 + 1e-5 for g in guide)  # unit RMS before the clip
    # the direction is the gradient's own
    xi = x[:1].clone().requires_grad_(True)
    logits = target(xi)
    predicted = logits.argmax(1)
    mask = (predicted > 0).float()
    mask = torch.nn.functional.max_pool2d(mask[:, None], 3, 1, 1)[:, 0]
    ce = (torch.nn.functional.cross_entropy(logits, predicted, reduction="none") * mask).sum()
    (grad,) = torch.autograd.grad(ce, xi)
    cosine = torch.nn.functional.cosine_similarity(grad.flatten(), guide[0].flatten(), dim=0)
    assert float(cosine) > 0.9


def test_a_guided_generator_trains_samples_and_reads_the_guide(tmp_path):
    images, labels = tiny_data()
    target = tiny_target()
    trainer = AttackTrainer(AttackConfig(**GUIDED, steps=3), target, images, labels, "cpu")
    assert trainer.generator.encoder.body[0][0].in_channels == 2
    assert trainer.guides.shape == (6, 1, 24, 24)
    assert all(math.isfinite(r["loss_generator"]) for r in trainer.run())
    path = trainer.save_checkpoint(tmp_path / "g.pt")

    generator, config, _ = load_generator(path, "cpu", target=target)
    x = torch.from_numpy(images)[:2, None]
    eps = torch.zeros(2, config.latent_dim)
    with torch.no_grad():
        own = generator(x, eps, eps)
        other = generator(x, eps, eps, guide=-trainer.guides[:2])
    assert torch.allclose(own.bias, generator(x, eps, eps, guide=trainer.guides[:2]).bias, atol=1e-5)
    assert not torch.allclose(own.bias, other.bias)  # the fields depend on the guide
    result = generator_attack(x, torch.from_numpy(labels)[:2], target, 0.05, torch.Generator().manual_seed(0),
                              generator=generator, config=config)
    assert torch.isfinite(result.adversarial).all() and not torch.equal(result.adversarial, x)

    alone, _, _ = load_generator(path, "cpu")
    with pytest.raises(AdvsegError, match="reads its target's gradient"):
        alone(x, eps, eps)


def test_a_guide_is_refused_for_a_3d_target():
    from test_slab_target import slab_target, volume

    images, labels = volume()
    with pytest.raises(AdvsegError, match="2D target only"):
        AttackTrainer(AttackConfig(**GUIDED), slab_target(), images, labels, device="cpu")
    with pytest.raises(AdvsegError, match="guide must be one of"):
        AttackConfig(guide="both")
