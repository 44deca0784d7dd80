"""Tests for napari_advseg.data.intensity: z-score and window scaling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_advseg.data.intensity import IntensityScale, fit_intensity_scale, scale_for
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


def _old_window(low, high):
    """The window scaling as a [-1, 1] window has always been computed (centre, half width)."""
    return IntensityScale("window", (low + high) / 2.0, (high - low) / 2.0, low, high)


@pytest.mark.parametrize("window", [(-200.0, 300.0), (-175.0, 250.0), (-160.3, 240.7), (-1024.0, 3071.0)])
def test_default_window_range_is_bit_identical(window):
    hu = np.random.default_rng(5).normal(0.0, 500.0, size=(4, 9, 9)).astype(np.float32)
    for scale in (fit_intensity_scale(hu, "window", window),
                  scale_for(hu, {"mode": "window", "window": list(window)}),
                  scale_for(hu, {"mode": "window", "window": list(window), "range": [-1, 1]})):
        assert scale == _old_window(*window)
        assert np.array_equal(scale.apply(hu), _old_window(*window).apply(hu))


def test_zscore_default_is_unchanged():
    hu = np.random.default_rng(6).normal(40.0, 300.0, size=(5, 6, 7)).astype(np.float32)
    scale = scale_for(hu, None)
    assert scale == IntensityScale("zscore", float(np.mean(hu, dtype=np.float64)), float(np.std(hu, dtype=np.float64)))
    assert scale == scale_for(hu, {"mode": "zscore"})


def test_window_to_unit_range_like_monai():
    scale = scale_for(np.zeros(2), {"mode": "window", "window": [-175, 250], "range": [0, 1]})
    hu = np.array([-1000.0, -175.0, 37.5, 250.0, 900.0])
    np.testing.assert_allclose(scale.apply(hu), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    inside = np.array([-175.0, 0.0, 100.0, 250.0], np.float32)
    np.testing.assert_allclose(scale.to_hu(scale.apply(inside)), inside, atol=1e-3)
    assert IntensityScale.from_dict(json.loads(json.dumps(scale.to_dict()))) == scale


def test_ct_scheme_like_nnunet():
    scale = scale_for(np.zeros(2), {"mode": "ct", "clip": [-958, 327], "mean": 82.9, "std": 136.9})
    assert (scale.mode, scale.clip_low, scale.clip_high) == ("ct", -958.0, 327.0)
    hu = np.array([-2000.0, -958.0, 82.9, 327.0, 2000.0], np.float32)
    expected = (np.clip(hu, -958.0, 327.0) - np.float32(82.9)) / np.float32(136.9)
    np.testing.assert_allclose(scale.apply(hu), expected, rtol=1e-6)
    # to_hu inverts apply inside the clip range only
    np.testing.assert_allclose(scale.to_hu(scale.apply(hu)), [-958.0, -958.0, 82.9, 327.0, 327.0], atol=1e-3)
    assert IntensityScale.from_dict(json.loads(json.dumps(scale.to_dict()))) == scale


def test_none_keeps_hounsfield_units():
    scale = scale_for(np.zeros(2), {"mode": "none"})
    hu = np.array([-1024.0, 0.0, 3071.0], np.float32)
    assert np.array_equal(scale.apply(hu), hu) and np.array_equal(scale.to_hu(hu), hu)
    assert IntensityScale.from_dict(scale.to_dict()) == scale


def test_new_mode_errors():
    with pytest.raises(AdvsegError, match="output range"):
        scale_for(np.zeros(2), {"mode": "window", "window": [0, 1], "range": [1, 0]})
    with pytest.raises(AdvsegError, match="clip"):
        scale_for(np.zeros(2), {"mode": "ct", "mean": 0, "std": 1})
    with pytest.raises(AdvsegError, match="mean and std"):
        scale_for(np.zeros(2), {"mode": "ct", "clip": [-1, 1]})
    with pytest.raises(AdvsegError, match="positive scale"):
        scale_for(np.zeros(2), {"mode": "ct", "clip": [-1, 1], "mean": 0, "std": 0})


@pytest.mark.parametrize("bad, match", [
    ({"mode": "window", "window": [0, 1], "range": [0]}, "range"),
    ({"mode": "ct", "clip": [5, -5], "mean": 0, "std": 1}, "clip"),
    ({"mode": "ct", "clip": [-5, 5], "std": 1}, "mean"),
    ({"mode": "ct", "clip": [-5, 5], "mean": 0, "std": -2}, "std"),
    ({"mode": "minmax"}, "unknown normalisation mode"),
])
def test_check_normalisation_names_the_bad_value(bad, match):
    from napari_advseg.models.target_meta import check_normalisation

    with pytest.raises(ValueError, match=match):
        check_normalisation(bad)


def test_check_normalisation_cleans_new_modes():
    from napari_advseg.models.target_meta import check_normalisation

    assert check_normalisation({"mode": "ct", "clip": [-958, 327], "mean": 82, "std": 136}) == \
        {"mode": "ct", "clip": [-958.0, 327.0], "mean": 82.0, "std": 136.0}
    assert check_normalisation({"mode": "window", "window": [-175, 250]}) == {"mode": "window", "window": [-175.0, 250.0]}
    assert check_normalisation({"mode": "none"}) == {"mode": "none"}
