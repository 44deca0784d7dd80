"""The slice explorer behind the napari widget: decoding latent codes on one slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.explore import SliceExplorer, displacement_vectors
from napari_advseg.errors import AdvsegError
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D


def _explorer():
    torch.manual_seed(0)
    # no edge gate, no phi budget and no gradient cap: the decoded fields themselves (tests of those in
    # test_latent_effect.py and test_trainer.py)
    cfg = AttackConfig(base_channels=4, control_spacing=4, latent_dim=3, phi_edge_gate=None, phi_rho_max=None,
                       phi_gradient_max=None)
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


def _one_pass(explorer, image, labels, hu, scale, eps_phi, eps_b, temperature):
    """The explorer's former single-pass render, written out with the same public pieces."""
    from napari_advseg.attack.apply import network_input
    from napari_advseg.attack.fields import fold_fraction, perceptibility, warp_labels
    from napari_advseg.evaluation.metrics import dice_per_organ, organ_row

    generator, cfg, target = explorer.generator, explorer.config, explorer.target
    x = torch.as_tensor(image)[None, None]
    with torch.no_grad():
        h, stats = generator.encode(x)
        z_phi, z_b = generator.latent_codes(stats, torch.as_tensor(eps_phi, dtype=torch.float32)[None],
                                            torch.as_tensor(eps_b, dtype=torch.float32)[None], temperature)
        displacement, bias = generator.limit_rho(x, *generator.decode(h, z_phi, z_b, image.shape), None)
        x_adv, hu_adv = network_input(x, displacement, bias, cfg.bias_mode, True, True, None, hu[None], scale)
        clean = target(x).argmax(dim=1)
        adv = target(x_adv).argmax(dim=1)
    reference = torch.as_tensor(labels).long()[None]
    warped = warp_labels(reference, displacement)
    names = list(target.class_names)
    dice_clean, dice_adv = dice_per_organ(clean, reference, names), dice_per_organ(adv, warped, names)
    return {"adversarial": x_adv[0, 0].numpy(), "adversarial_hu": hu_adv[0], "displacement": displacement[0].numpy(),
            "bias": bias[0, 0].numpy(), "clean_segmentation": clean[0].to(torch.uint8).numpy(),
            "adversarial_segmentation": adv[0].to(torch.uint8).numpy(),
            "warped_reference": warped[0].to(torch.uint8).numpy(), "rho": float(perceptibility(x_adv, x)),
            "fold_fraction": fold_fraction(displacement),
            "organs": {n: organ_row(dice_clean[n], dice_adv[n]) for n in names[1:] if not np.isnan(dice_clean[n])}}


def test_two_stages_give_the_single_pass_result_even_after_other_codes():
    from napari_advseg.data.intensity import fit_intensity_scale
    from napari_advseg.data.phantom import make_phantom

    explorer = _explorer()
    phantom = make_phantom(2, (3, 40, 48))
    hu = phantom.hu[1].astype(np.float32)
    explorer.scale = scale = fit_intensity_scale(phantom.hu.astype(np.float32))
    image = scale.apply(hu)
    explorer.set_slice(image, phantom.labels[1], hu=hu)
    eps_phi, eps_b = np.array([2.0, -1.0, 0.5]), np.array([-2.5, 0.0, 1.0])
    expected = _one_pass(explorer, image, phantom.labels[1], hu, scale, eps_phi, eps_b, 0.8)
    assert expected["organs"] and np.abs(expected["displacement"]).max() > 0.1

    first = explorer.render_fields(eps_phi, eps_b, 0.8)
    assert first.adversarial_segmentation is None and first.organs == {}
    explorer.render_fields(-eps_phi, -eps_b)  # a newer code renders before the first one is segmented
    view = explorer.segment(first)
    for name, value in expected.items():
        got = getattr(view, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and np.array_equal(got, value), name
        else:
            assert got == value, name
    whole = explorer.render(eps_phi, eps_b, 0.8)
    for name in ("adversarial", "adversarial_segmentation", "warped_reference"):
        assert np.array_equal(getattr(whole, name), getattr(view, name)), name
    assert whole.organs == view.organs
    late = explorer.render_fields(eps_phi, eps_b, 0.8, folds=False)
    assert np.isnan(late.fold_fraction)
    assert explorer.segment(late).fold_fraction == expected["fold_fraction"]  # counted in stage two then


def test_render_needs_a_slice_and_codes_of_the_right_length():
    explorer = _explorer()
    with pytest.raises(AdvsegError, match="set_slice"):
        explorer.render_fields()
    explorer.set_slice(np.zeros((16, 16), np.float32))
    with pytest.raises(AdvsegError, match="expected 3 latent deviates, got 2"):
        explorer.render_fields(np.zeros(2))
