"""Setting the attack's strength: fields scaled to a rho, dose-response curves, ``advseg curve``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.explore import SliceExplorer
from napari_advseg.attack.fields import apply_fields, perceptibility_per_slice
from napari_advseg.attack.strength import MAX_FACTOR, dose_response, scale_to_rho
from napari_advseg.errors import AdvsegError
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.models.target import make_target


class Threshold(nn.Module):
    """A parameterless target: liver where the intensity is above 0.5."""

    def forward(self, x):
        return torch.cat((0.5 - x, x - 0.5), dim=1)


def _generator(latent_dim: int = 3) -> tuple[AttackGenerator, AttackConfig]:
    torch.manual_seed(0)
    config = AttackConfig(base_channels=4, control_spacing=4, latent_dim=latent_dim)
    generator = AttackGenerator(config)
    with torch.no_grad():  # the decoders start at zero: give them visible fields
        for p in generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return generator.eval(), config


def _fields(x: torch.Tensor, input_range=None):
    generator, _ = _generator()
    with torch.no_grad():
        out = generator(x, torch.randn(len(x), 3), torch.randn(len(x), 3), 1.0, input_range=input_range)
    return out.displacement, out.bias


def _rho(x, displacement, bias, input_range=None, use_phi=True, use_bias=True):
    adversarial = apply_fields(x, displacement if use_phi else None, bias if use_bias else None,
                               "additive", input_range)
    return perceptibility_per_slice(adversarial, x)


def test_scale_to_rho_lands_every_slice_up_and_down():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(4, 1, 32, 32)).astype(np.float32) + 2.0)
    displacement, bias = _fields(x)
    own = _rho(x, displacement, bias)
    assert own.min() > 0
    for level, direction in ((0.3 * float(own.min()), "down"), (0.02, None), (3.0 * float(own.max()), "up")):
        scaled = scale_to_rho(x, displacement, bias, level)
        assert bool(scaled.reached.all())
        assert torch.all((scaled.rho - level).abs() <= 0.01 * level), (level, scaled.rho)
        # the fields returned give that rho on their own (nothing hidden in the result)
        again = _rho(x, scaled.displacement, scaled.bias)
        assert torch.all((again - level).abs() <= 0.01 * level)
        assert torch.allclose(scaled.adversarial, apply_fields(x, scaled.displacement, scaled.bias))
        if direction == "down":
            assert torch.all(scaled.factor < 1)
        if direction == "up":
            assert torch.all(scaled.factor > 1)
    # one rho per slice; a switched-off field does not count
    levels = torch.tensor([0.01, 0.03, 0.06, 0.09])
    scaled = scale_to_rho(x, displacement, bias, levels, use_bias=False)
    assert torch.all((scaled.rho - levels).abs() <= 0.01 * levels)
    assert torch.all((_rho(x, scaled.displacement, scaled.bias, use_bias=False) - levels).abs() <= 0.01 * levels)


def test_scale_to_rho_clips_to_the_input_range_and_reports_what_it_cannot_reach():
    window = (-1.0, 1.0)
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.uniform(-0.5, 0.5, size=(3, 1, 32, 32)).astype(np.float32))
    displacement, bias = _fields(x, window)
    scaled = scale_to_rho(x, displacement, bias, 0.05, input_range=window)
    assert bool(scaled.reached.all()) and torch.all((scaled.rho - 0.05).abs() <= 0.0005)
    assert scaled.adversarial.min() >= -1.0 and scaled.adversarial.max() <= 1.0

    zero = scale_to_rho(x, torch.zeros_like(displacement), torch.zeros_like(bias), 0.05, input_range=window)
    assert not bool(zero.reached.any()) and torch.all(zero.rho == 0) and torch.all(zero.factor <= MAX_FACTOR)

    # a slice at the window's top with a brightening bias: clipping saturates, rho stays 0
    top = torch.ones(1, 1, 32, 32)
    saturated = scale_to_rho(top, torch.zeros(1, 2, 32, 32), torch.full((1, 1, 32, 32), 0.1), 0.05,
                             input_range=window)
    assert not bool(saturated.reached[0]) and float(saturated.rho[0]) == 0.0

    none = scale_to_rho(x, displacement, bias, 0.0, input_range=window)
    assert bool(none.reached.all()) and torch.all(none.factor == 0) and float(none.rho.max()) < 1e-5


@pytest.mark.parametrize("rho", [-0.1, float("nan"), [0.1, 0.2]])
def test_scale_to_rho_rejects_bad_levels(rho):
    x = torch.ones(3, 1, 8, 8)
    with pytest.raises(AdvsegError, match="rho"):
        scale_to_rho(x, torch.zeros(3, 2, 8, 8), torch.zeros(3, 1, 8, 8), rho)


def _threshold_explorer() -> tuple[SliceExplorer, np.ndarray]:
    generator, config = _generator()
    target = make_target(Threshold(), class_names=("background", "liver"))
    explorer = SliceExplorer(generator, config, target)
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 6:22] = 1
    explorer.set_slice(np.where(labels == 1, 0.6, 0.4).astype(np.float32), labels)
    return explorer, labels


def test_render_at_a_rho_reports_the_rho_reached():
    explorer, _ = _threshold_explorer()
    own = explorer.render(np.zeros(3), np.zeros(3))
    for rho in (0.25 * own.rho, 0.1, 2.0 * own.rho):
        view = explorer.render(np.zeros(3), np.zeros(3), rho=rho)
        assert abs(view.rho - rho) <= 0.01 * rho
    assert np.allclose(explorer.render(np.zeros(3), np.zeros(3), rho=None).adversarial, own.adversarial)


def test_dose_response_starts_at_the_clean_dice_and_falls():
    explorer, _ = _threshold_explorer()
    rhos = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
    steps = []
    curve = dose_response(explorer, rhos, progress=steps.append)
    assert curve.rhos == list(rhos) and len(steps) == len(rhos)
    assert set(curve.dice) == {"liver"} and curve.clean["liver"] == pytest.approx(1.0)
    dice = curve.dice["liver"]
    assert dice[0] == curve.clean["liver"]  # rho 0: the clean image
    assert all(curve.reached()) and curve.achieved[0] < 1e-5
    assert np.allclose(curve.achieved[1:], rhos[1:], rtol=0.01)
    assert dice[-1] < dice[0] - 0.03
    assert all(b <= a + 0.05 for a, b in zip(dice, dice[1:]))  # monotone up to a little noise
    assert json.loads(json.dumps(curve.to_dict()))["dice"]["liver"] == dice
    assert len(curve.folds) == len(rhos) and curve.folds[0] == 0.0 and all(0 <= f <= 1 for f in curve.folds)


def _strong_generator(tiny_files, folder):
    """A generator checkpoint on the tiny phantom whose fields are clearly non-zero."""
    from napari_advseg.attack.trainer import AttackTrainer
    from napari_advseg.data.cases import load_case
    from napari_advseg.io.atomic import save_torch
    from napari_advseg.models.target_load import load_target

    target = load_target(tiny_files["target"], "cpu")
    case = load_case(tiny_files["ct"], tiny_files["labels"], target.normalisation)
    trainer = AttackTrainer(AttackConfig(steps=1, batch_size=2, critic_steps=1, base_channels=8,
                                         phi_gradient_max=None), target, case.images, case.labels, "cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    path = folder / "strong.pt"
    save_torch(trainer.state_dict(), path)
    return path


def test_advseg_curve_and_sample_at_a_rho(tiny_files, tmp_path, capsys, one_thread):
    from napari_advseg.cli import main

    generator = _strong_generator(tiny_files, tmp_path)
    data = ["--ct", str(tiny_files["ct"]), "--labels", str(tiny_files["labels"]),
            "--target", str(tiny_files["target"]), "--generator", str(generator), "--device", "cpu", "--quiet"]
    out = tmp_path / "curve"
    assert main(["curve", *data, "--slices", "2-6", "--rhos", "0,0.02,0.05", "--samples", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rho reached" in printed and "curve.json" in printed
    curve = json.loads((out / "curve.json").read_text())
    assert set(curve) >= {"rhos", "achieved_rho", "fold_fraction", "dice", "clean_dice", "settings", "generator",
                          "target", "ct", "slices", "samples"}
    assert len(curve["fold_fraction"]) == 3 and curve["fold_fraction"][0] == 0.0
    assert all(0.0 <= f <= 1.0 for f in curve["fold_fraction"]) and "| folds |" in printed
    assert curve["rhos"] == [0.0, 0.02, 0.05] and curve["slices"] == [2, 3, 4, 5, 6]
    assert curve["generator"] == str(generator) and curve["settings"]["samples"] == 2
    assert np.allclose(curve["achieved_rho"], curve["rhos"], rtol=0.01, atol=1e-5)
    assert curve["dice"] and set(curve["dice"]) == set(curve["clean_dice"])
    for organ, values in curve["dice"].items():
        assert len(values) == 3 and values[0] == pytest.approx(curve["clean_dice"][organ])
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    sample = tmp_path / "sample"
    assert main(["sample", *data, "--slices", "3-4", "--rho", "0.04", "--out", str(sample)]) == 0
    sidecar = json.loads((sample / "sample.json").read_text())
    assert sidecar["rho_target"] == 0.04 and sidecar["rho"] == pytest.approx(0.04, rel=0.01)
    assert "reached of" not in capsys.readouterr().err
    assert main(["sample", *data, "--slices", "3", "--rho", "5", "--out", str(tmp_path / "far")]) == 0
    far = json.loads((tmp_path / "far" / "sample.json").read_text())["rho"]
    assert far < 4.95  # out of reach: said, with the rho reached
    assert f"warning: rho {far:.4f} reached of 5 asked" in capsys.readouterr().err

    assert main(["curve", *data, "--rhos", "0,-0.1", "--out", str(out)]) == 2
    assert "rho must be" in capsys.readouterr().err


def _bump(size: int = 32, amplitude: float = 3.0, width: float = 4.0) -> torch.Tensor:
    """A smooth displacement along columns, one Gaussian bump; its steepest slope is about -0.45."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    bump = amplitude * torch.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * width ** 2))
    return torch.stack((torch.zeros_like(bump), bump))[None]


def test_stronger_displacement_is_linear_up_to_one_and_does_not_fold_past_it():
    from napari_advseg.attack.fields import fold_fraction
    from napari_advseg.attack.strength import stronger_displacement

    u = _bump()
    assert fold_fraction(u) == 0.0
    for f in (0.0, 0.3, 1.0):
        assert torch.allclose(stronger_displacement(u, f), u * f)
    assert fold_fraction(u * 4) > 0.01  # multiplied, the bump folds the tissue
    stronger = stronger_displacement(u, 4.0)
    assert fold_fraction(stronger) == 0.0
    # it moves further, the same way, and is continuous at 1
    assert float(stronger[0, 1].max()) > 2 * float(u[0, 1].max())
    assert float(stronger[0, 0].abs().max()) < 0.2 * float(stronger[0, 1].max())
    assert torch.allclose(stronger_displacement(u, 1.001), u, atol=0.02)
    # per-slice factors
    both = stronger_displacement(torch.cat((u, u)), torch.tensor([0.5, 4.0]))
    assert torch.allclose(both[0], 0.5 * u[0]) and torch.allclose(both[1], stronger[0], atol=1e-5)


def test_scale_to_rho_strengthens_a_deformation_without_folding_it():
    from napari_advseg.attack.fields import fold_fraction

    cols = torch.arange(32, dtype=torch.float32).view(1, 1, 1, 32)
    x = 1.0 + cols / 32 + 0.5 * torch.sin(cols / 3)  # stripes for the warp to move
    u = _bump()
    own = float(_rho(x, u, torch.zeros(1, 1, 32, 32), use_bias=False))
    goal = 3 * own
    scaled = scale_to_rho(x, u, torch.zeros(1, 1, 32, 32), goal, use_bias=False)
    assert bool(scaled.reached.all()) and float(scaled.factor) > 2.5, scaled.factor
    assert abs(float(_rho(x, scaled.displacement, scaled.bias, use_bias=False)) - goal) <= 0.01 * goal
    assert fold_fraction(scaled.displacement) == 0.0
    assert fold_fraction(u * float(scaled.factor)) > 0.0


def test_sample_and_the_robustness_report_give_one_image_at_a_rho(one_thread):
    """The shipped generator at rho 0.08, for the same slices and latent deviates: the image ``advseg sample``
    scores (``attack_slices``) is the image the robustness report's generator attack gives."""
    from napari_advseg.attack.apply import attack_slices
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.checkpoint import load_generator
    from napari_advseg.data.cases import load_case
    from napari_advseg.data.samples import sample_file
    from napari_advseg.models.target_load import load_target

    target = load_target(sample_file("target"), "cpu")
    generator, config, _ = load_generator(sample_file("generator"), "cpu")
    case = load_case(None, None, target.normalisation, target.class_names)
    middle = case.volume.n_slices // 2
    images = case.images[middle - 1:middle + 1, 16:112, 16:112]
    labels = case.labels[middle - 1:middle + 1, 16:112, 16:112]
    sampled = next(attack_slices(generator, config, target, images, labels, batch_size=2,
                                 rng=torch.Generator().manual_seed(4), rho=0.08))
    x, y = torch.as_tensor(images)[:, None], torch.as_tensor(labels).long()
    report = generator_attack(x, y, target, 0.08, torch.Generator().manual_seed(4), generator=generator,
                              config=config)
    assert torch.allclose(sampled.adversarial, report.adversarial, rtol=0, atol=1e-6)
    assert torch.allclose(sampled.displacement, report.displacement, rtol=0, atol=1e-6)
    assert torch.allclose(sampled.rho, torch.full((2,), 0.08), rtol=0.01, atol=0)
    assert torch.equal(sampled.warped_reference, report.warped_labels)
