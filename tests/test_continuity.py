"""The inter-slice discontinuity measure and the smoothing along z, on synthetic arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_advseg.attack.volume_fields import smooth_along_z
from napari_advseg.errors import AdvsegError
from napari_advseg.evaluation.continuity import field_discontinuity, volume_discontinuity


def smooth_field(rng: np.random.Generator, shape=(32, 32), components: int | None = None) -> np.ndarray:
    """A smooth random in-plane field: a few low-frequency waves with random amplitudes and phases."""
    y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    out = np.zeros(shape + ((components,) if components else ()), np.float32)
    for _ in range(4):
        fy, fx = rng.uniform(0.5, 2.0, size=2) * 2 * np.pi / np.array(shape)
        wave = np.sin(fy * y + fx * x + rng.uniform(0, 2 * np.pi))
        out += (wave[..., None] * rng.normal(size=components) if components else wave * rng.normal())
    return out


def test_a_field_constant_along_z_has_no_discontinuity():
    rng = np.random.default_rng(0)
    bias = np.repeat(smooth_field(rng)[None], 6, axis=0)
    displacement = np.repeat(smooth_field(rng, components=2)[None], 6, axis=0)
    figures = volume_discontinuity(displacement, bias)
    assert figures["bias"] == 0.0 and figures["displacement"] == 0.0
    assert figures["bias_in_plane"] > 0.0 and figures["displacement_in_plane"] > 0.0
    assert figures["pairs"] == 5


def test_fields_drawn_per_slice_have_a_large_discontinuity():
    rng = np.random.default_rng(1)
    bias = np.stack([smooth_field(rng) for _ in range(6)])
    displacement = np.stack([smooth_field(rng, components=2) for _ in range(6)])
    figures = volume_discontinuity(displacement, bias)
    assert figures["bias"] > 3.0 and figures["displacement"] > 3.0
    # a slowly drifting field is far more continuous than independent ones
    drift = np.stack([smooth_field(np.random.default_rng(2)) * (1.0 + 0.02 * z) for z in range(6)])
    assert field_discontinuity(drift)["ratio"] < 0.1 * figures["bias"]


def test_exact_value_of_a_ramp():
    # f = 2 z + y: through the plane 2 per step; in-plane (|df/dy| + |df/dx|) / 2 = (1 + 0) / 2
    z, y, _ = np.meshgrid(np.arange(4), np.arange(5), np.arange(3), indexing="ij")
    figures = field_discontinuity((2 * z + y).astype(np.float32))
    assert figures == {"ratio": pytest.approx(4.0), "through_plane": pytest.approx(2.0),
                       "in_plane": pytest.approx(0.5), "pairs": 3}
    # the displacement's difference is a vector norm: (3, 4) per step through the plane -> 5
    vector = np.stack([3 * z + y, 4 * z], axis=-1).astype(np.float32)
    figures = field_discontinuity(vector, vector=True)
    assert figures["through_plane"] == pytest.approx(5.0) and figures["in_plane"] == pytest.approx(0.5)


def test_only_attacked_slices_count():
    rng = np.random.default_rng(3)
    bias = np.zeros((8, 16, 16), np.float32)
    bias[2:5] = smooth_field(rng, (16, 16))  # the attacked slices share one field; the rest hold none
    assert field_discontinuity(bias, slices=[2, 3, 4]) == {
        "ratio": 0.0, "through_plane": 0.0, "in_plane": pytest.approx(field_discontinuity(bias[2:3])["in_plane"]),
        "pairs": 2}
    assert field_discontinuity(bias)["ratio"] > 0.0  # the edges of the attacked block jump
    # a gap is no pair: slices 3 and 6 are not neighbours
    assert field_discontinuity(bias, slices=[2, 3, 6])["pairs"] == 1
    lone = field_discontinuity(bias, slices=[3])
    assert lone["pairs"] == 0 and math.isnan(lone["ratio"])


def test_bad_input_is_refused():
    with pytest.raises(AdvsegError, match=r"\(Z, Y, X, C\)"):
        field_discontinuity(np.zeros((4, 4, 4)), vector=True)
    with pytest.raises(AdvsegError, match="0..3"):
        field_discontinuity(np.zeros((4, 4, 4)), slices=[1, 4])


def test_smoothing_along_z_keeps_constants_and_respects_gaps():
    rng = np.random.default_rng(4)
    constant = torch.as_tensor(np.repeat(smooth_field(rng, (8, 8))[None, None], 7, axis=0))
    assert torch.allclose(smooth_along_z(constant, range(7), 1.5), constant, atol=1e-6)
    noise = torch.as_tensor(rng.normal(size=(7, 1, 8, 8)).astype(np.float32))
    smoothed = smooth_along_z(noise, range(7), 1.0)
    assert field_discontinuity(smoothed[:, 0].numpy())["ratio"] < 0.5 * field_discontinuity(noise[:, 0].numpy())["ratio"]
    # slices 0-2 and 10-13 are two runs: neither sees the other
    index = [0, 1, 2, 10, 11, 12, 13]
    two_runs = torch.cat([torch.zeros(3, 1, 2, 2), torch.ones(4, 1, 2, 2)])
    assert torch.equal(smooth_along_z(two_runs, index, 2.0), two_runs)
    assert torch.equal(smooth_along_z(noise, range(7), 0.0), noise)
    with pytest.raises(AdvsegError, match="7 fields for 3"):
        smooth_along_z(noise, [0, 1, 2], 1.0)
