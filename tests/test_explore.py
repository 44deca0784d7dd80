"""The slice explorer behind the napari widget: decoding latent codes on one slice."""

from __future__ import annotations

import numpy as np
import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.explore import SliceExplorer, displacement_vectors
from napari_advseg.models.generator import AttackGenerator
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D


def _explorer():
    torch.manual_seed(0)
    cfg = AttackConfig(base_channels=4, control_spacing=4, latent_dim=3)
    generator = AttackGenerator(cfg)
    with torch.no_grad():  # make the decoders non-trivial (they start at zero)
        for p in generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    generator.eval()
    target = make_target(UNet2D(base_channels=4, depth=2), device="cpu")
    return SliceExplorer(generator, cfg, target)


def test_sliders_change_the_image_and_switches_zero_fields():
    explorer = _explorer()
    image = np.random.default_rng(0).normal(size=(24, 28)).astype(np.float32)
    labels = np.zeros((24, 28), np.uint8)
    labels[5:15, 5:15] = 1
    explorer.set_slice(image, labels)
    a = explorer.render(np.zeros(3), np.zeros(3))
    b = explorer.render(np.array([2.0, 0, 0]), np.array([0, -2.0, 0]))
    assert a.adversarial.shape == (24, 28) and a.displacement.shape == (2, 24, 28)
    assert not np.allclose(a.adversarial, b.adversarial)
    assert a.adversarial_segmentation.shape == (24, 28) and a.adversarial_segmentation.dtype == np.uint8
    assert set(a.organs) == {"liver"} and set(a.organs["liver"]) >= {"dice_clean", "dice_adv", "drop", "success"}
    assert a.rho > 0
    off = explorer.render(np.zeros(3), np.zeros(3), use_phi=False, use_bias=False)
    assert np.abs(off.displacement).max() == 0 and np.abs(off.bias).max() == 0
    assert np.allclose(off.adversarial, image, atol=1e-6)
    assert np.array_equal(off.warped_reference, labels)
    quick = explorer.render(np.zeros(3), np.zeros(3), segment=False)
    assert quick.adversarial_segmentation is None and np.allclose(quick.adversarial, a.adversarial)
    stats = explorer.latent_mean_and_sigma()
    assert stats["mu_phi"].shape == (3,) and (stats["sigma_b"] > 0).all()


def test_displacement_vectors_bounded_and_in_data_order():
    field = np.zeros((2, 300, 200), np.float32)
    field[0] = 1.5   # every pixel reads from 1.5 rows below
    vectors, magnitude = displacement_vectors(field, max_arrows=2000)
    assert vectors.shape[1:] == (2, 2) and 0 < len(vectors) <= 2000
    assert np.allclose(vectors[:, 1, 0], 1.5) and np.allclose(vectors[:, 1, 1], 0)
    assert np.allclose(magnitude, 1.5)
    assert vectors[:, 0, 0].max() < 300 and vectors[:, 0, 1].max() < 200


def test_explorer_respects_the_rho_budget():
    from napari_advseg.attack.fields import perceptibility

    explorer = _explorer()
    explorer.generator.config = explorer.config = explorer.config.replace(rho_max=0.01)
    image = np.random.default_rng(1).normal(size=(24, 28)).astype(np.float32) + 2.0
    explorer.set_slice(image, None)
    for eps in (np.zeros(3), np.full(3, 3.0), np.full(3, -3.0)):
        result = explorer.render(eps, eps)
        x = torch.as_tensor(image)[None, None]
        adv = torch.as_tensor(np.asarray(result.adversarial, dtype=np.float32)).reshape(x.shape)
        assert float(perceptibility(adv, x)) <= 0.01 * 1.01
