"""Realism figures of attack fields on fields whose answers are known, and in the reports that carry them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_advseg.attack.baselines.smooth_fields import random_smooth_fields
from napari_advseg.attack.realism import (
    SHORT_WAVELENGTH_PX,
    RealismTally,
    bias_spectrum_shares,
    jacobian_range,
    power_spectrum,
    spectrum_excess,
)
from napari_advseg.evaluation.baselines import evaluate_baseline
from napari_advseg.evaluation.report import format_table
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D

SIZE = 64
ROOT = Path(__file__).resolve().parents[1]


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64),
                          indexing="ij")


def _sinusoid(wavelength: float, along: str = "columns", phase: float = 0.3) -> torch.Tensor:
    rows, cols = _grid()
    coordinate = cols if along == "columns" else rows
    return (0.2 * torch.sin(2 * math.pi * coordinate / wavelength + phase))[None, None]


@pytest.mark.parametrize("along", ["columns", "rows"])
def test_short_sinusoid_is_one_wave_all_at_short_wavelength(along):
    assert SHORT_WAVELENGTH_PX == 32
    (peak, short), = bias_spectrum_shares(_sinusoid(8.0, along))
    assert peak == pytest.approx(1.0, abs=1e-9)    # f and -f are one wave
    assert short == pytest.approx(1.0, abs=1e-9)
    # the decision pinned: one FFT bin alone holds half of the sinusoid's power
    power = power_spectrum(_sinusoid(8.0, along))[0]
    assert float(power.max() / power.sum()) == pytest.approx(0.5, abs=1e-9)


def test_long_sinusoid_has_no_short_wavelength_power_and_no_stripe():
    (stripe, short), = bias_spectrum_shares(_sinusoid(64.0))
    assert stripe == pytest.approx(0.0, abs=1e-9)   # a long wave is shading, not stripes
    assert short == pytest.approx(0.0, abs=1e-9)
    (_, at_limit), = bias_spectrum_shares(_sinusoid(SHORT_WAVELENGTH_PX))  # 32 px is not shorter than 32 px
    assert at_limit == pytest.approx(0.0, abs=1e-9)


def test_shares_of_a_mixture_and_their_scale_invariance():
    # power 1 : 4 between a 64 px wave and an 8 px wave (amplitudes 1 : 2), plus an offset that does not count
    mixture = _sinusoid(64.0) + 2 * _sinusoid(8.0, "rows") + 5.0
    (stripe, short), = bias_spectrum_shares(mixture)
    assert stripe == pytest.approx(0.8, abs=1e-9) and short == pytest.approx(0.8, abs=1e-9)
    (stripe_scaled, short_scaled), = bias_spectrum_shares(-7.0 * mixture.float())
    assert stripe_scaled == pytest.approx(stripe, abs=1e-5) and short_scaled == pytest.approx(short, abs=1e-5)


def test_noise_is_short_and_spread_a_smooth_field_is_long():
    rng = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 1, SIZE, SIZE, generator=rng)
    x = torch.rand(4, 1, SIZE, SIZE, generator=rng) + 1.0
    y = torch.zeros(4, SIZE, SIZE, dtype=torch.long)
    smooth = random_smooth_fields(x, y, 0.05, rng, control_spacing=16, fields="bias").bias
    noise_shares = bias_spectrum_shares(noise)
    smooth_shares = bias_spectrum_shares(smooth)
    assert all(short > 0.9 and stripe < 0.01 for stripe, short in noise_shares)
    # control points 16 px apart: most power at wavelengths of 32 px and more, far less short power than noise
    assert np.mean([short for _, short in smooth_shares]) < 0.5
    assert max(short for _, short in smooth_shares) < min(short for _, short in noise_shares) - 0.3


def test_shading_has_no_stripe_share_and_stripes_on_shading_do():
    rows, cols = _grid()
    shading = torch.exp(-((rows - 25) ** 2 + (cols - 35) ** 2) / (2 * 20.0 ** 2))[None, None]
    ramp = (0.3 * rows + 0.1 * cols)[None, None] / SIZE
    striped = shading + 2.0 * _sinusoid(8.0)   # 8 px stripes of 0.4 peak to peak on the blob
    (stripe_shading, _), (stripe_ramp, _), (stripe_striped, _) = bias_spectrum_shares(
        torch.cat((shading, ramp, striped)))
    # the ramp's share is its border jump (the periodogram sees a sawtooth); stripes stand far above both
    assert stripe_shading < 0.01 and stripe_ramp < 0.1
    assert stripe_striped > 0.3


def test_identity_and_uniform_scaling_jacobians():
    assert torch.equal(jacobian_range(torch.zeros(2, 2, 8, 8)), torch.ones(2, 2, dtype=torch.float64))
    rows, cols = _grid()
    s = 1.3
    centre = (SIZE - 1) / 2
    scaling = torch.stack(((s - 1) * (rows - centre), (s - 1) * (cols - centre)))[None]  # p -> s p about the centre
    low, high = jacobian_range(scaling)[0].tolist()
    assert low == pytest.approx(s * s) and high == pytest.approx(s * s)
    squeeze = torch.stack((torch.zeros_like(rows), -0.5 * (cols - centre)))[None]  # columns squeezed to half
    assert jacobian_range(squeeze)[0].tolist() == pytest.approx([0.5, 0.5])


def test_tally_skips_absent_fields_and_gathers_batches():
    tally = RealismTally()
    tally.add(None, None)
    assert tally.report() == {"bias_stripe_share": None, "bias_short_share": None, "bias_slices": 0,
                              "short_wavelength_px": SHORT_WAVELENGTH_PX, "jacobian_min": None,
                              "jacobian_max": None, "deformation_slices": 0}
    tally.add(torch.zeros(3, 2, SIZE, SIZE), torch.zeros(3, 1, SIZE, SIZE))  # fields switched off: not counted
    assert tally.report()["bias_slices"] == 0 and tally.report()["jacobian_min"] is None
    rows, cols = _grid()
    bias = torch.cat((_sinusoid(8.0), torch.full((1, 1, SIZE, SIZE), 0.4, dtype=torch.float64), _sinusoid(64.0)))
    phi = torch.zeros(3, 2, SIZE, SIZE, dtype=torch.float64)
    phi[0, 1] = -0.5 * cols            # squeezed to half along columns
    phi[2, 0] = 0.25 * rows            # stretched by 1.25 along rows
    tally.add(phi[:2], bias[:2])       # the constant bias slice and the still slice are skipped
    tally.add(phi[2:], bias[2:])
    report = tally.report()
    assert report["bias_slices"] == 2 and report["deformation_slices"] == 2
    assert report["bias_stripe_share"] == pytest.approx(0.5, abs=1e-9)  # the 8 px wave 1, the 64 px wave 0
    assert report["bias_short_share"] == pytest.approx(0.5, abs=1e-9)  # mean of 1 and 0
    assert report["jacobian_min"] == pytest.approx(0.5) and report["jacobian_max"] == pytest.approx(1.25)
    with pytest.raises(ValueError, match="bias must be"):
        tally.add(None, torch.zeros(2, 2, 8, 8))


def test_baseline_reports_carry_realism_and_the_table_shows_it():
    torch.manual_seed(0)
    target = make_target(UNet2D(base_channels=4, depth=2), device="cpu")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 32, 32)).astype(np.float32)
    labels = np.zeros((3, 32, 32), np.uint8)
    labels[:, 8:20, 8:20] = 1
    smooth = evaluate_baseline("random_fields", target, [(images, labels)], 0.05, options={"control_spacing": 8})
    pgd = evaluate_baseline("pgd_l2", target, [(images, labels)], 0.05, options={"steps": 1})
    assert smooth["realism"]["bias_slices"] == 3 and smooth["realism"]["deformation_slices"] == 3
    assert 0.0 < smooth["realism"]["jacobian_min"] < 1.0 < smooth["realism"]["jacobian_max"]
    # PGD's perturbation is pixel noise: mostly short wavelengths; it has no deformation
    assert pgd["realism"]["bias_short_share"] > 0.8 > smooth["realism"]["bias_short_share"]
    assert pgd["realism"]["jacobian_min"] is None and pgd["realism"]["deformation_slices"] == 0
    lines = format_table([("random fields", smooth), ("PGD-L2", pgd)]).splitlines()
    assert lines[0] == "| row | liver | rho | b stripe | b < 32 px | det J | folds | organs >= 30 % |"
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    realism = smooth["realism"]
    assert (f"| {100 * realism['bias_stripe_share']:.1f} % | {100 * realism['bias_short_share']:.1f} % | "
            f"{realism['jacobian_min']:.2f}..{realism['jacobian_max']:.2f} |") in lines[4]
    assert "| n/a | 0.00 % |" in lines[5]   # PGD: no det J, no folds


def test_realism_bench_quick_mode(tmp_path):
    """bench/realism.py --quick end to end, so the script behind docs/results.md cannot rot."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "realism.py"), "--quick", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "realism_quick.json").read_text())
    methods = [row["method"] for group in result["groups"] for row in group["rows"]]
    assert methods == ["generator", "random smooth fields", "optimised fields, 2 steps", "generator (its own rho)",
                       "generator, z_b[0] +3 SD (its own rho)"]
    for group in result["groups"]:
        for row in group["rows"]:
            if group["rho_level"] is not None:
                assert row["rho"] == pytest.approx(group["rho_level"], rel=0.02)
            assert row["realism"]["bias_slices"] > 0 and row["realism"]["deformation_slices"] > 0
            assert set(row["against_random"]) == {"bias_stripe_share", "bias_short_share", "jacobian_min",
                                                  "jacobian_max"}
        reference = group["reference"]   # the random fields lie in their own range
        if group["rho_level"] is not None:
            assert all(check["verdict"] == "yes" for check in reference["against_random"].values())
    assert "| generator, z_b[0] +3 SD (its own rho) | own |" in done.stdout
    assert (tmp_path / "realism_quick.md").read_text().startswith("# Realism of the fields")
    assert (tmp_path / "realism_quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spectrum_excess_costs_only_past_its_limits_and_steers_towards_them():
    # the mixture's shares are 0.8 / 0.8 (test above): free at limits above them, costed below
    mixture = (_sinusoid(64.0) + 2 * _sinusoid(8.0, "rows")).float()
    assert float(spectrum_excess(mixture, 0.85, 0.85)) == 0.0
    assert float(spectrum_excess(mixture, 0.5, 0.9)) == pytest.approx(0.3 ** 2, rel=1e-4)
    assert float(spectrum_excess(mixture, 0.9, 0.6)) == pytest.approx(0.2 ** 2, rel=1e-4)
    assert float(spectrum_excess(torch.zeros(2, 1, 16, 16), 0.1, 0.1)) == 0.0  # flat slices cost nothing
    # a gradient step on the cost moves power out of the short wave
    field = mixture.clone().requires_grad_(True)
    spectrum_excess(field, 0.5, 0.9).backward()
    stepped = (field - 20.0 * field.grad).detach()
    (_, short_before), = bias_spectrum_shares(mixture)
    (_, short_after), = bias_spectrum_shares(stepped)
    assert short_after < short_before - 0.01
