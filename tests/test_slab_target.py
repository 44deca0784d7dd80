"""Slab targets (3D networks as Targets): whole-stack calls, slab training, scored slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_advseg.attack.apply import attack_slices, slices_to_run
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.trainer import AttackTrainer
from napari_advseg.evaluation.baselines import evaluate_baseline
from napari_advseg.evaluation.report import evaluate_attack
from napari_advseg.models.target import Target, freeze, slices_per_call
from napari_advseg.models.unet import predict_labels

NAMES = ("background", "liver", "spleen")
TINY = dict(batch_size=2, critic_steps=1, base_channels=4, critic_channels=4, control_spacing=4, latent_dim=3)


class Slab3D(nn.Module):
    """A 3D convolution over a call's slices read as z; records the size of every call."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv3d(1, len(NAMES), 3, padding=1)
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(int(x.shape[0]))
        return self.conv(x.permute(1, 0, 2, 3)[None])[0].permute(1, 0, 2, 3) * 4.0


def slab_target(depth: int = 3) -> Target:
    return Target(freeze(Slab3D()), NAMES, {"mode": "zscore"}, "memory", None, torch.device("cpu"),
                  slab_depth=depth)


def volume(n=9, size=16):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int64)
    labels[2:7, 4:10, 4:10] = 1
    labels[5:8, 10:14, 2:6] = 2
    return images, labels


def moved_generator(config):
    """A generator moved off its identity start (so its fields are not zero)."""
    from napari_advseg.attack.generator import AttackGenerator

    torch.manual_seed(0)
    generator = AttackGenerator(config).eval()
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return generator


def test_a_slab_target_gets_whole_stacks_and_a_2d_one_batches():
    target = slab_target()
    assert target.volumetric and slices_per_call(target, 9, 2) == 9
    images, labels = volume()
    predict_labels(target, images, batch_size=2)
    assert target.model.calls == [9]
    two_d = Target(target.model, NAMES, {"mode": "zscore"}, "memory", None, torch.device("cpu"))
    assert not two_d.volumetric and slices_per_call(two_d, 9, 2) == 2
    run, run_labels, scored = slices_to_run(target, images, labels, [2, 5, 8])
    assert len(run) == 9 and list(scored) == [2, 5, 8]
    run, run_labels, scored = slices_to_run(two_d, images, labels, [2, 5, 8])
    assert len(run) == 3 and scored is None and np.array_equal(run_labels, labels[[2, 5, 8]])


def test_training_draws_slabs_with_one_code_and_keeps_held_out_labels_out(tmp_path):
    images, labels = volume()
    config = AttackConfig(**TINY, steps=2, seed=3, z_smooth=1.0)
    trainer = AttackTrainer(config, slab_target(4), images, labels, device="cpu", scored=[0, 1, 3, 4, 6, 7])
    assert int(trainer.labels[[2, 5, 8]].max()) == 0 and int(trainer.labels[[3, 6]].max()) > 0
    assert labels[5].max() > 0  # the caller's labels are not changed
    assert trainer.slice_pool.tolist() == [0, 1, 2, 3, 4, 5]  # slab starts whose slab holds an organ
    x, y = trainer._batch()
    start = int(np.flatnonzero([np.array_equal(x[0, 0].numpy(), im) for im in images])[0])
    assert torch.equal(x[:, 0], torch.as_tensor(images[start:start + 4]))
    eps_phi, eps_b = trainer._noise(4)
    assert torch.equal(eps_phi, eps_phi[:1].expand(4, -1)) and not torch.equal(eps_phi, eps_b)
    trainer.target.model.calls.clear()
    metrics = trainer.step()
    assert np.isfinite(metrics["attack_ce"]) and set(trainer.target.model.calls) == {4}


def test_slab_training_resumes_exactly(tmp_path):
    images, labels = volume()
    config = AttackConfig(**TINY, steps=4, seed=9, z_smooth=1.0)
    straight = AttackTrainer(config, slab_target(), images, labels, device="cpu")
    list(straight.run())
    first = AttackTrainer(config, slab_target(), images, labels, device="cpu")
    list(first.run(steps=2))
    checkpoint = first.save_checkpoint(tmp_path / "g.pt")
    resumed = AttackTrainer.resume(checkpoint, slab_target(), images, labels, device="cpu")
    list(resumed.run())
    assert [h["attack_ce"] for h in straight.history] == [h["attack_ce"] for h in resumed.history]
    for key, value in straight.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[key]), key


def test_z_smoothing_in_training_is_differentiable_and_flattens_z():
    images, labels = volume()
    config = AttackConfig(**TINY, z_smooth=2.0)
    trainer = AttackTrainer(config, slab_target(5), images, labels, device="cpu")
    with torch.no_grad():  # G starts at the identity: move it off
        for p in trainer.generator.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.as_tensor(images[:5])[:, None]
    raw = trainer.generator(x, *trainer._noise(5), input_range=None)
    smooth = trainer._along_z(raw, x)
    jumps = [float((f[1:] - f[:-1]).abs().mean().detach()) for f in (raw.bias, smooth.bias)]
    assert jumps[0] > 0
    assert jumps[1] < jumps[0]
    smooth.bias.sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in trainer.generator.parameters())


def test_evaluation_and_baselines_call_the_whole_volume_and_score_the_chosen_slices():
    images, labels = volume()
    target = slab_target()
    config = AttackConfig(**TINY, z_smooth=1.0)
    generator = moved_generator(config)
    results = list(attack_slices(generator, config, target, images, labels, batch_size=2,
                                 rng=torch.Generator().manual_seed(0)))
    assert len(results) == 1 and results[0].pred_adv.shape == (9, 16, 16)
    assert float(results[0].rho.min()) > 0
    target.model.calls.clear()
    report = evaluate_attack(generator, config, target, [(images, labels, [2, 5, 8])], samples=1)
    assert report["slices"] == 3 and set(target.model.calls) == {9}
    target.model.calls.clear()
    baseline = evaluate_baseline("pgd_l2", target, [(images, labels, [2, 5, 8])], 0.05, batch_size=2,
                                 options={"steps": 2})
    assert baseline["slices"] == 3 and set(target.model.calls) == {9}


@pytest.mark.parametrize("slices", [None, [2, 3, 4]])
def test_attack_volume_runs_the_target_on_the_whole_volume(slices):
    from napari_advseg.attack.apply import attack_volume, run_attack_volume
    from napari_advseg.data.cases import make_case
    from napari_advseg.io.geometry import volume_from_array

    images, labels = volume()
    hu = (images * 100.0).astype(np.float32)
    case = make_case(volume_from_array(hu, (3.0, 1.0, 1.0)), labels.astype(np.uint8), {"mode": "zscore"})
    target = slab_target()
    config = AttackConfig(**TINY, z_smooth=1.0)
    generator = moved_generator(config)
    result = run_attack_volume(attack_volume(generator, config, target, case, slices=slices, rho=0.05))
    attacked = np.arange(9) if slices is None else np.asarray(slices)
    assert set(target.model.calls) == {9}
    assert len(result.rho) == len(attacked) and np.allclose(result.rho, 0.05, atol=0.01)
    others = np.setdiff1d(np.arange(9), attacked)
    assert np.array_equal(result.adversarial_hu[others], hu[others])
    assert not np.array_equal(result.adversarial_hu[attacked], hu[attacked])


def test_the_generator_as_a_peer_draws_one_code_per_volume_and_smooths_along_z():
    from napari_advseg.attack.baselines.registry import generator_attack
    from napari_advseg.attack.volume_fields import smooth_along_z

    images, labels = volume()
    x, y = torch.from_numpy(images)[:, None], torch.from_numpy(labels)
    config = AttackConfig(**TINY, z_smooth=1.0)
    generator = moved_generator(config)
    flat = slab_target()
    flat.slab_depth = None   # the same network read as a 2D target: a code per slice, no smoothing
    in_3d = generator_attack(x, y, slab_target(), None, torch.Generator().manual_seed(0), generator=generator,
                             config=config)
    in_2d = generator_attack(x, y, flat, None, torch.Generator().manual_seed(0), generator=generator,
                             config=config)
    # the 3D peer is G's output for one code (the first draw) smoothed along z
    eps = torch.Generator().manual_seed(0)
    eps_phi = torch.randn(1, config.latent_dim, generator=eps).expand(9, -1)
    eps_b = torch.randn(1, config.latent_dim, generator=eps).expand(9, -1)
    with torch.no_grad():
        out = generator(x, eps_phi, eps_b, input_range=None)
    expected = smooth_along_z(out.bias, range(9), 1.0)
    assert torch.allclose(in_3d.bias, expected, atol=1e-6)

    def jump(field):  # mean change between neighbouring slices
        return float((field[1:] - field[:-1]).abs().mean())

    assert jump(in_3d.bias) < 0.5 * jump(in_2d.bias)
    assert jump(in_3d.displacement) < 0.5 * jump(in_2d.displacement)


@pytest.mark.parametrize("name", ["random_fields", "optimised_fields_1"])
def test_smooth_field_peers_of_a_3d_target_are_smooth_along_z_and_on_the_budget(name):
    from napari_advseg.attack.baselines.registry import ATTACKS
    from napari_advseg.attack.fields import perceptibility_per_slice

    images, labels = volume()
    x, y = torch.from_numpy(images)[:, None], torch.from_numpy(labels)
    flat = slab_target()
    flat.slab_depth = None   # the same network as a 2D target: each slice's fields on their own
    options = {"steps": 3} if name.startswith("optimised") else {}
    in_3d = ATTACKS[name](x, y, slab_target(), 0.05, torch.Generator().manual_seed(0), **options)
    in_2d = ATTACKS[name](x, y, flat, 0.05, torch.Generator().manual_seed(0), **options)

    def jump(field):  # mean change between neighbouring slices, relative to the field's size
        return float((field[1:] - field[:-1]).abs().mean() / field.abs().mean())

    for result in (in_3d, in_2d):
        assert torch.allclose(perceptibility_per_slice(result.adversarial, x), torch.full((9,), 0.05), rtol=0.02)
    assert jump(in_3d.bias) < 0.7 * jump(in_2d.bias)
    assert jump(in_3d.displacement) < 0.7 * jump(in_2d.displacement)


class ReadsLabelsInContext(nn.Module):
    """Segments the intensity bands of ``volume`` right only when a call holds ``depth`` slices or more (a 3D
    network without its z context segments nothing)."""

    def __init__(self, depth: int):
        super().__init__()
        self.depth = depth
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(int(x.shape[0]))
        logits = torch.stack([torch.zeros_like(x[:, 0]), x[:, 0] - 0.5, -x[:, 0] - 0.5], 1) * 10.0
        if x.shape[0] < self.depth:
            logits[:, 0] += 100.0
        return logits


def test_clean_dice_check_gives_a_3d_target_consecutive_slices_of_its_slab_depth():
    from napari_advseg.evaluation.diagnostics import CHECK_SLICES, clean_dice_warning

    _, labels = volume(n=30)
    labels[2:28, 4:10, 4:10] = 1
    labels[2:28, 10:14, 2:6] = 2
    images = np.where(labels == 1, 1.0, np.where(labels == 2, -1.0, 0.0)).astype(np.float32)
    depth = CHECK_SLICES + 4
    network = ReadsLabelsInContext(depth)
    target = Target(freeze(network), NAMES, {"mode": "zscore"}, "memory", None, torch.device("cpu"),
                    slab_depth=depth)
    assert clean_dice_warning(target, images, labels) is None
    assert network.calls == [depth]
    # the same network as a 2D target gets the organ slices one batch at a time and misses
    flat = Target(freeze(ReadsLabelsInContext(depth)), NAMES, {"mode": "zscore"}, "memory", None,
                  torch.device("cpu"))
    warning = clean_dice_warning(flat, images, labels)
    assert warning is not None and f"{CHECK_SLICES} organ slices" in warning
