"""Tests for napari_advseg.data.intensity: z-score and window scaling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_advseg.data.intensity import IntensityScale, fit_intensity_scale
from napari_advseg.errors import AdvsegError


def test_zscore_scale_round_trip():
    hu = np.random.default_rng(2).normal(40.0, 300.0, size=(6, 7, 8)).astype(np.float32)
    scale = fit_intensity_scale(hu)
    assert scale.mode == "zscore" and scale.clip_low is None and scale.clip_high is None
    x = scale.apply(hu)
    assert x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-4
    np.testing.assert_allclose(scale.to_hu(x), hu, atol=1e-3)
    again = IntensityScale.from_dict(json.loads(json.dumps(scale.to_dict())))
    assert again == scale


def test_window_scale_clips_and_maps_to_unit_range():
    scale = fit_intensity_scale(np.zeros(3), mode="window", window=(-200.0, 300.0))
    assert (scale.offset, scale.scale, scale.clip_low, scale.clip_high) == (50.0, 250.0, -200.0, 300.0)
    hu = np.array([-1000.0, -200.0, 50.0, 300.0, 3000.0])
    np.testing.assert_allclose(scale.apply(hu), [-1.0, -1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(scale.to_hu(scale.apply(hu)), [-200.0, -200.0, 50.0, 300.0, 300.0])
    assert IntensityScale.from_dict(scale.to_dict()) == scale


def test_intensity_scale_errors():
    with pytest.raises(AdvsegError, match="mode"):
        fit_intensity_scale(np.arange(5.0), mode="minmax")
    with pytest.raises(AdvsegError, match="constant"):
        fit_intensity_scale(np.full((3, 3, 3), -1000.0))
    with pytest.raises(AdvsegError):
        fit_intensity_scale(np.arange(5.0), mode="window", window=(300.0, -200.0))
    with pytest.raises(AdvsegError):
        fit_intensity_scale(np.array([0.0, np.nan]))
    with pytest.raises(AdvsegError):
        IntensityScale("zscore", 0.0, 0.0)
    with pytest.raises(AdvsegError, match="missing scale"):
        IntensityScale.from_dict({"mode": "zscore", "offset": 1.0})
    with pytest.raises(AdvsegError, match="unknown"):
        IntensityScale.from_dict({"mode": "zscore", "offset": 1.0, "scale": 2.0, "gamma": 1})
    with pytest.raises(AttributeError):
        IntensityScale("zscore", 0.0, 1.0).offset = 3.0  # type: ignore[misc]
