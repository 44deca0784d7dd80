"""The differentiable sliding window and resampling equal the frameworks' own arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_advseg.models.resample import new_shape_for_spacing, resize_like_nnunet, separate_z_axis
from napari_advseg.models.sliding_window import monai_starts, nnunet_gaussian, nnunet_starts, round_to, sliding_window


@pytest.mark.parametrize("order", [1, 3])
def test_resize_equals_scikit_image(order):
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 7, 13, 11))
    ours = resize_like_nnunet(torch.tensor(data, dtype=torch.float32), (9, 20, 6), order=order, separate_axis=None)
    reference = resize(data[0], (9, 20, 6), order=order, mode="edge", anti_aliasing=False)  # clip=True
    assert np.abs(ours[0].numpy() - reference).max() < 1e-5


def test_separate_z_resize_equals_slice_by_slice_then_nearest():
    from scipy.ndimage import map_coordinates
    from skimage.transform import resize

    rng = np.random.default_rng(1)
    data = rng.normal(size=(5, 12, 10))
    new = (8, 9, 15)
    slices = np.stack([resize(s, new[1:], order=3, mode="edge", anti_aliasing=False) for s in data])
    grid = np.mgrid[:new[0], :new[1], :new[2]].astype(float)
    grid[0] = (grid[0] + 0.5) * data.shape[0] / new[0] - 0.5
    reference = map_coordinates(slices, grid, order=0, mode="nearest")
    ours = resize_like_nnunet(torch.tensor(data[None], dtype=torch.float32), new, order=3, separate_axis=0)
    assert np.abs(ours[0].numpy() - reference).max() < 1e-5


def test_anisotropy_picks_the_coarse_axis():
    assert separate_z_axis((5.0, 0.8, 0.8), (1.5, 0.8, 0.8)) == 0
    assert separate_z_axis((2.0, 0.8, 0.8), (1.5, 0.8, 0.8)) is None
    assert separate_z_axis((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), force=True) is None  # all axes equally coarse
    assert new_shape_for_spacing((20, 40, 44), (2.5, 1.2, 1.1), (3.0, 1.5, 1.5)) == (17, 32, 32)


def test_steps_match_the_frameworks():
    assert nnunet_starts((17, 64, 100), (16, 32, 32), 0.5) == [[0, 1], [0, 16, 32], [0, 14, 27, 41, 54, 68]]
    assert monai_starts((17, 64, 100), (16, 32, 32), 0.25) == [[0, 1], [0, 24, 32], [0, 24, 48, 68]]
    monai_utils = pytest.importorskip("monai.data.utils")
    slices = monai_utils.dense_patch_slices((17, 64, 100), (16, 32, 32), (12, 24, 24))
    starts = [sorted({s[d].start for s in slices}) for d in range(3)]
    assert starts == monai_starts((17, 64, 100), (16, 32, 32), 0.25)


def test_steps_equal_nnunets_own():
    sliding = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    for size, patch, step in [((17, 64, 100), (16, 32, 32), 0.5), ((40, 33), (32, 32), 0.3), ((96,), (96,), 0.5)]:
        assert nnunet_starts(size, patch, step) == sliding.compute_steps_for_sliding_window(size, patch, step)
    reference = sliding.compute_gaussian((16, 32, 32), 1 / 8, 10, device=torch.device("cpu"))
    assert torch.equal(nnunet_gaussian((16, 32, 32)), reference.float())


def test_gaussian_is_nnunets_half_precision_map():
    weights = nnunet_gaussian((16, 32, 32))
    assert weights.dtype == torch.float32 and float(weights.max()) == pytest.approx(10.0, rel=1e-3)
    assert float(weights.min()) > 0
    assert torch.equal(weights, weights.half().float())


def test_sliding_window_is_exact_for_a_pointwise_network_and_has_gradients():
    conv = torch.nn.Conv2d(1, 3, 1)
    x = torch.randn(2, 1, 50, 37, requires_grad=True)
    out = sliding_window(x, conv, (32, 32), lambda s, p: nnunet_starts(s, p, 0.5), nnunet_gaussian((32, 32)),
                         mirror_axes=(0, 1))
    assert out.shape == (2, 3, 50, 37)
    assert torch.allclose(out, conv(x), atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_small_images_are_padded_and_cropped_back():
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(1, 1, 10, 12)
    out = sliding_window(x, conv, (16, 16), lambda s, p: monai_starts(s, p, 0.5), None)
    padded = torch.nn.functional.pad(x, [2, 2, 3, 3])
    assert torch.allclose(out, conv(padded)[..., 3:13, 2:14], atol=1e-6)


def test_round_to_rounds_values_and_keeps_gradients():
    x = torch.tensor([1.0001, 2.0], requires_grad=True)
    y = round_to(x, torch.float16)
    assert y[0].item() == 1.0
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(2))
