"""Tests of napari_advseg.models.unet, unet_patches and unet_training: the U-Net, its training, prediction and Dice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_advseg.errors import AdvsegError
from napari_advseg.evaluation.metrics import dice_scores
from napari_advseg.models.unet import UNet2D, predict_labels
from napari_advseg.models.unet_patches import PatchSampler
from napari_advseg.models.unet_training import fit_unet, soft_dice_loss, train_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def disks(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy slices with one bright disk each (class 1), float32 (n, size, size)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.3, (n, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int64)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.uniform(8, size - 8, 2)
        radius = rng.uniform(4, 7)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        labels[i][inside] = 1
        images[i][inside] += 1.0
    return images, labels




TINY = dict(n_classes=2, batch_size=8, patch_size=32, base_channels=4, depth=2, device="cpu")


# ----------------------------------------------------------------- network


@pytest.mark.parametrize("size", [(37, 50), (1, 1), (16, 16), (33, 17)])
@pytest.mark.parametrize("depth", [2, 3])
def test_output_shape_any_size(size, depth):
    model = UNet2D(1, 6, base_channels=4, depth=depth).eval()
    out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 6, *size)


def test_gradient_reaches_input():
    model = UNet2D(1, 6, base_channels=4, depth=3).eval()
    x = torch.randn(1, 1, 37, 50, requires_grad=True)
    model(x)[:, 2].sum().backward()
    assert x.grad is not None
    assert x.grad.shape == x.shape
    assert x.grad.abs().sum() > 0
    # every pixel influences the output (receptive field covers the small image)
    assert torch.isfinite(x.grad).all()


def test_arch_and_multichannel():
    model = UNet2D(in_channels=2, n_classes=3, base_channels=4, depth=2)
    assert model.arch == {"in_channels": 2, "n_classes": 3, "base_channels": 4, "depth": 2}
    assert model.n_classes == 3
    assert model.eval()(torch.zeros(1, 2, 9, 10)).shape == (1, 3, 9, 10)
    rebuilt = UNet2D(**model.arch)
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"n_classes": 0}, {"base_channels": 2.5}, {"in_channels": True}])
def test_invalid_arch(kwargs):
    with pytest.raises(ValueError):
        UNet2D(**kwargs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_scriptable_and_same_output():
    model = UNet2D(1, 6, base_channels=4, depth=2).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 1, 21, 30)
    torch.testing.assert_close(scripted(x), model(x))


# ----------------------------------------------------------------- loss


def test_soft_dice_loss_perfect_and_wrong():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 2:6, 2:6] = 1
    perfect = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 100.0
    assert soft_dice_loss(perfect, labels).item() < 1e-3
    wrong = torch.nn.functional.one_hot((labels + 1) % 3, 3).permute(0, 3, 1, 2).float() * 100.0
    assert soft_dice_loss(wrong, labels).item() > 0.5


# ----------------------------------------------------------------- training


def test_train_learns_disks():
    images, labels = disks(16, seed=0)
    test_images, test_labels = disks(8, seed=1)
    model = fit_unet(images, labels, steps=60, lr=1e-2, seed=0, **TINY)
    assert not model.training
    pred = predict_labels(model, test_images)
    scores = dice_scores(pred, test_labels, 2)
    assert scores[1] > 0.8, scores


def test_train_deterministic_for_a_seed():
    images, labels = disks(6, seed=0)
    runs = [fit_unet(images, labels, steps=6, lr=1e-2, seed=seed, **TINY) for seed in (3, 3, 4)]
    same = [torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values())]
    assert all(same)
    differ = [torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[2].state_dict().values())]
    assert not all(differ)


def test_train_is_a_generator_returning_the_model():
    images, labels = disks(4, seed=0)
    state = torch.random.get_rng_state()
    generator = train_unet(images, labels, steps=3, lr=1e-3, seed=0, **TINY)
    records = []
    with pytest.raises(StopIteration) as stop:
        while True:
            records.append(next(generator))
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        assert {"step", "steps", "loss", "lr", "ce", "dice_loss"} <= record.keys()
        assert record["steps"] == 3 and math.isfinite(record["loss"]) and record["lr"] > 0
    assert records[0]["lr"] == pytest.approx(1e-3)
    assert isinstance(stop.value.value, UNet2D)
    # training does not disturb the global torch random state
    assert torch.equal(torch.random.get_rng_state(), state)


def test_fit_unet_callback_and_progress():
    images, labels = disks(4, seed=0)
    seen = []
    model = fit_unet(images, labels, steps=2, progress=True, callback=seen.append, **TINY)
    assert isinstance(model, UNet2D) and len(seen) == 2


def test_train_continues_a_frozen_model():
    images, labels = disks(4, seed=0)
    model = UNet2D(1, 2, base_channels=4, depth=2)
    for p in model.parameters():
        p.requires_grad_(False)
    before = [p.clone() for p in model.parameters()]
    trained = fit_unet(images, labels, steps=2, lr=1e-2, model=model, **TINY)
    assert trained is model
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_rejects_bad_input_at_the_call():
    images, labels = disks(2, seed=0)
    with pytest.raises(AdvsegError, match="0..1"):
        train_unet(images, labels + 1, **TINY)
    with pytest.raises(AdvsegError, match="shape"):
        train_unet(images, labels[:, :16], **TINY)
    with pytest.raises(AdvsegError, match="output classes"):
        train_unet(images, labels, model=UNet2D(1, 6, 4, 2), **TINY)
    bad = images.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(AdvsegError, match="NaN"):
        train_unet(bad, labels, **TINY)


def test_patch_sampler_prefers_small_organs():
    rng = np.random.default_rng(0)
    images = np.zeros((4, 128, 128), np.float32)
    labels = np.zeros((4, 128, 128), np.int64)
    labels[:, 10:90, 10:90] = 1  # large organ
    labels[2, 110:114, 110:114] = 2  # tiny organ, one slice
    sampler = PatchSampler(images, labels, 3, 32, rng, augment=True)
    _, patches = sampler.batch(400)
    assert patches.shape == (400, 32, 32)
    with_small = (patches == 2).flatten(1).any(1).float().mean().item()
    assert with_small > 0.15  # uniform sampling would give about 1%


def test_patch_size_clipped_to_the_image():
    images, labels = disks(3, size=20, seed=0)
    sampler = PatchSampler(images, labels, 2, 96, np.random.default_rng(0), augment=True)
    x, y = sampler.batch(5)
    assert x.shape == (5, 1, 20, 20) and y.shape == (5, 20, 20)


# ----------------------------------------------------------------- prediction and scores


def test_predict_labels_shapes_and_mode():
    model = UNet2D(1, 3, base_channels=4, depth=2)
    model.train()
    images = np.random.default_rng(0).normal(size=(5, 13, 17)).astype(np.float32)
    pred = predict_labels(model, images, batch_size=2)
    assert pred.shape == (5, 13, 17) and pred.dtype == np.uint8 and pred.max() < 3
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(images)[:, None]).argmax(1).numpy()
    np.testing.assert_array_equal(pred, expected)
    np.testing.assert_array_equal(predict_labels(model, torch.from_numpy(images)), expected)
    np.testing.assert_array_equal(predict_labels(model, images[:, None]), expected)
    np.testing.assert_array_equal(predict_labels(model, images[0]), expected[0])
    np.testing.assert_array_equal(predict_labels(lambda x: model(x), images), expected)


def test_dice_scores():
    ref = np.zeros((2, 4, 4), np.int64)
    pred = np.zeros_like(ref)
    ref[0, :2, :2] = 1  # 4 voxels
    pred[0, :2, :1] = 1  # 2 voxels, both inside
    ref[1, 0, 0] = 2
    pred[1, 3, 3] = 3  # class 3 predicted but absent from the reference
    scores = dice_scores(pred, torch.from_numpy(ref), 4)
    assert set(scores) == {1, 2, 3}
    assert scores[1] == pytest.approx(2 * 2 / (2 + 4))
    assert scores[2] == 0.0
    assert math.isnan(scores[3])
    with pytest.raises(AdvsegError):
        dice_scores(pred[0], ref, 4)
