"""Eq. 1, 2 and 7: warping, smoothness, folding, perceptibility."""

import math

import pytest
import torch

from napari_advseg.attack.fields import (apply_fields, cap_gradient, dilate_mask, fold_fraction, integrate_velocity,
                                         jacobian_determinant, perceptibility, perceptibility_per_slice, smoothness,
                                         largest_gradient, upsample_field, warp_image, warp_labels)


def test_warp_by_zero_is_identity():
    x = torch.randn(2, 1, 13, 17)
    assert torch.allclose(warp_image(x, torch.zeros(2, 2, 13, 17)), x, atol=1e-6)
    y = torch.randint(0, 6, (2, 13, 17))
    assert torch.equal(warp_labels(y, torch.zeros(2, 2, 13, 17)), y)


def test_warp_by_whole_pixels_shifts():
    # T(x; phi)(p) = x(p + phi(p)): dx = +1 reads the right-hand neighbour.
    x = torch.arange(5 * 6, dtype=torch.float32).reshape(1, 1, 5, 6)
    phi = torch.zeros(1, 2, 5, 6)
    phi[:, 1] = 1.0
    out = warp_image(x, phi)
    assert torch.allclose(out[0, 0, :, :-1], x[0, 0, :, 1:])
    assert torch.allclose(out[0, 0, :, -1], x[0, 0, :, -1])  # border padding
    phi = torch.zeros(1, 2, 5, 6)
    phi[:, 0] = -2.0
    out = warp_image(x, phi)
    assert torch.allclose(out[0, 0, 2:], x[0, 0, :-2])


def test_warp_half_pixel_is_bilinear():
    x = torch.tensor([[[[0.0, 10.0, 20.0]]]])
    phi = torch.zeros(1, 2, 1, 3)
    phi[:, 1] = 0.5
    assert torch.allclose(warp_image(x, phi), torch.tensor([[[[5.0, 15.0, 20.0]]]]))


def test_warp_labels_stays_integer_and_in_set():
    y = torch.randint(0, 6, (3, 20, 20), dtype=torch.uint8)
    phi = 3.0 * torch.randn(3, 2, 20, 20)
    out = warp_labels(y, phi)
    assert out.dtype == torch.uint8
    assert set(out.unique().tolist()) <= set(range(6))
    phi = torch.zeros(1, 2, 20, 20)
    phi[:, 0] = 0.4  # rounds to the same pixel with nearest sampling
    assert torch.equal(warp_labels(y[:1], phi), y[:1])


def test_apply_fields_modes():
    x = torch.rand(1, 1, 4, 4)
    b = torch.full((1, 1, 4, 4), 0.5)
    assert torch.allclose(apply_fields(x, None, b, "additive"), x + 0.5)
    assert torch.allclose(apply_fields(x, None, b, "multiplicative"), x * math.exp(0.5))
    assert torch.equal(apply_fields(x, None, None), x)
    with pytest.raises(ValueError):
        apply_fields(x, None, b, "other")


def test_smoothness_by_hand():
    f = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    # rows: (2-0)^2, (4-1)^2 -> mean 6.5; cols: (1-0)^2, (4-2)^2 -> mean 2.5
    assert smoothness(f).item() == pytest.approx(9.0)
    assert smoothness(torch.ones(1, 2, 5, 5)).item() == 0.0


def test_jacobian_identity_and_fold():
    assert torch.allclose(jacobian_determinant(torch.zeros(1, 2, 6, 6)), torch.ones(1, 5, 5))
    # a constant shift does not change the determinant
    assert torch.allclose(jacobian_determinant(torch.full((1, 2, 6, 6), 3.0)), torch.ones(1, 5, 5))
    # dx = -2 * column: x -> x - 2x = -x, a mirror: determinant -1 everywhere, all folded
    phi = torch.zeros(1, 2, 6, 6)
    phi[:, 1] = -2.0 * torch.arange(6.0).view(1, 6)
    assert torch.allclose(jacobian_determinant(phi), -torch.ones(1, 5, 5))
    assert fold_fraction(phi) == 1.0
    # uniform stretch dy = 0.5 * row: det = 1.5
    phi = torch.zeros(1, 2, 6, 6)
    phi[:, 0] = 0.5 * torch.arange(6.0).view(6, 1)
    assert torch.allclose(jacobian_determinant(phi), torch.full((1, 5, 5), 1.5))
    assert fold_fraction(phi) == 0.0


def test_integrated_velocity_is_a_translation_for_a_constant_and_does_not_fold():
    assert torch.count_nonzero(integrate_velocity(torch.zeros(1, 2, 8, 8))) == 0
    shift = torch.full((1, 2, 8, 8), 1.5)
    torch.testing.assert_close(integrate_velocity(shift), shift)       # exp of a constant velocity is that shift
    # a smooth field with 9 px swings over 16 px: used directly as a displacement it folds
    torch.manual_seed(0)
    velocity = 9.0 * upsample_field(torch.randn(2, 2, 5, 5), (64, 64))
    assert fold_fraction(velocity) > 0.05
    integrated = integrate_velocity(velocity)
    assert fold_fraction(integrated) == 0.0
    assert integrated.abs().max() > 3.0                                  # still a large deformation
    torch.testing.assert_close(integrate_velocity(velocity, steps=0), velocity)


def test_perceptibility_by_hand():
    x = torch.ones(2, 1, 2, 2)          # ||x_n|| = 2
    adv = x.clone()
    adv[0, 0, 0, 0] += 1.0              # slice 0: 1 / 2
    adv[1] += 0.5                       # slice 1: sqrt(4 * 0.25) / 2 = 0.5
    assert torch.allclose(perceptibility_per_slice(adv, x), torch.tensor([0.5, 0.5]))
    assert perceptibility(x, x).item() == 0.0


def test_upsample_keeps_constant_and_size():
    coarse = torch.full((1, 2, 4, 4), 1.5)
    up = upsample_field(coarse, (32, 32))
    assert up.shape == (1, 2, 32, 32)
    assert torch.allclose(up, torch.full_like(up, 1.5))


def test_dilate_mask():
    m = torch.zeros(1, 7, 7, dtype=torch.bool)
    m[0, 3, 3] = True
    assert dilate_mask(m, 1).sum().item() == 9
    assert dilate_mask(m, 0).sum().item() == 1


def test_cap_gradient_bounds_the_steepest_change_and_the_jacobian():
    g = torch.Generator().manual_seed(0)
    steep = upsample_field(torch.randn(3, 2, 8, 8, generator=g) * 4.0, (64, 64))
    gentle = steep * (0.05 / float(largest_gradient(steep).max()))
    assert torch.all(largest_gradient(steep) > 0.5)
    capped = cap_gradient(steep, 0.1)
    assert torch.allclose(largest_gradient(capped), torch.full((3,), 0.1), atol=1e-6)
    # the scaling keeps each slice's pattern, only its size changes
    ratio = capped / steep
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-6)
    assert torch.equal(cap_gradient(gentle, 0.1), gentle)  # already within the cap: unchanged
    det = jacobian_determinant(integrate_velocity(capped))
    assert float(det.min()) > math.exp(-0.2) - 0.02 and float(det.max()) < math.exp(0.2) + 0.02
    # one pixel per pixel of steepness before the cap folds or nearly folds the same field
    assert float(jacobian_determinant(integrate_velocity(steep)).min()) < 0.5
