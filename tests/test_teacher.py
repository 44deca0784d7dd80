"""The teacher term: per-image optimised fields made once per training slice, G pulled towards them."""

from __future__ import annotations

import math

import pytest
import torch

from napari_advseg.attack.baselines.smooth_fields import optimised_smooth_fields
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.teacher import TeacherCache, teacher_distance
from napari_advseg.attack.trainer import AttackTrainer
from napari_advseg.errors import AdvsegError

from test_trainer import TINY, tiny_data, tiny_target

TEACHER = dict(TINY, lambda_teacher=5.0, teacher_steps=2, teacher_rho=0.05)


def test_the_cache_makes_each_slice_once_and_as_the_peer_does():
    images, labels = tiny_data()
    x, y = torch.from_numpy(images)[:, None], torch.from_numpy(labels)
    target = tiny_target()
    config = AttackConfig(**TEACHER)
    cache = TeacherCache(config, target, None, None, (6, 24, 24))
    calls = []
    model = target.model
    target.model = lambda v: (calls.append(len(v)), model(v))[1]
    index = torch.tensor([3, 1, 3])
    phi, bias = cache.fields(index, x[index], y[index])
    assert phi.shape == (3, 2, 6, 6) and bias.shape == (3, 1, 6, 6)
    assert torch.equal(phi[0], phi[2]) and cache.done.tolist() == [False, True, False, True, False, False]
    made = len(calls)
    assert made > 0 and set(calls) == {2}  # the two new slices together, each once
    again, _ = cache.fields(torch.tensor([1, 3]), x[[1, 3]], y[[1, 3]])
    assert len(calls) == made and torch.equal(again, phi[1:])  # nothing made again
    # the same fields as the peer of the same start, pooled over 4 x 4 pixels
    target.model = model
    peer = optimised_smooth_fields(x[[3, 1]], y[[3, 1]], target, 0.05, 2,
                                   torch.Generator().manual_seed(config.seed * 7_919 + 17), control_spacing=4)
    expected = torch.nn.functional.avg_pool2d(peer.displacement, 4, ceil_mode=True)
    assert torch.allclose(phi[:2], expected, atol=1e-6)
    assert float(phi.abs().max()) > 0


def test_teacher_distance_is_the_cosine_distance_of_the_pooled_fields():
    phi = torch.randn(2, 2, 8, 8)
    bias = torch.randn(2, 1, 8, 8)
    pooled_phi = torch.nn.functional.avg_pool2d(phi, 4)
    pooled_b = torch.nn.functional.avg_pool2d(bias, 4)
    same = teacher_distance(3.0 * phi, 0.5 * bias, pooled_phi, pooled_b, True, True)  # any size, same direction
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    opposite = teacher_distance(-phi, -bias, pooled_phi, pooled_b, True, True)
    assert float(opposite) == pytest.approx(2.0, abs=1e-6)
    none = teacher_distance(torch.zeros_like(phi), torch.zeros_like(bias), pooled_phi, pooled_b, True, True)
    assert float(none) == pytest.approx(1.0)
    only_b = teacher_distance(torch.zeros_like(phi), bias, pooled_phi, pooled_b, False, True)
    assert float(only_b) == pytest.approx(0.0, abs=1e-6)


def test_the_teacher_term_steers_g_to_the_teachers_fields():
    images, labels = tiny_data()
    config = AttackConfig(**TEACHER)
    trainer = AttackTrainer(config, tiny_target(), images, labels, device="cpu")
    idx = trainer.slice_pool
    x, y = trainer.images[idx], trainer.labels[idx]
    teacher = trainer.teacher.fields(idx, x, y)
    eps = torch.zeros(len(x), config.latent_dim)
    optimiser = torch.optim.Adam(trainer.generator.parameters(), lr=1e-2)
    distances = []
    for _ in range(80):  # the teacher term alone
        out = trainer.generator(x, eps, eps)
        distance = teacher_distance(out.displacement, out.bias, *teacher, True, True)
        optimiser.zero_grad()
        distance.backward()
        optimiser.step()
        distances.append(distance.item())
    assert distances[0] > 0.7 and min(distances[-5:]) < 0.35


def test_training_with_a_teacher_reports_it_and_resumes_exactly(tmp_path):
    images, labels = tiny_data()
    off = list(AttackTrainer(AttackConfig(**TINY, steps=2), tiny_target(), images, labels, device="cpu").run())
    assert all(r["teacher"] == 0.0 for r in off)
    config = AttackConfig(**TEACHER, steps=6, seed=3)
    straight = AttackTrainer(config, tiny_target(), images, labels, device="cpu")
    records = list(straight.run())
    assert all(math.isfinite(r["teacher"]) and 0 < r["teacher"] <= 2 for r in records)
    first = AttackTrainer(config, tiny_target(), images, labels, device="cpu")
    list(first.run(steps=3))
    checkpoint = first.save_checkpoint(tmp_path / "g.pt")
    resumed = AttackTrainer.resume(checkpoint, tiny_target(), images, labels, device="cpu")
    assert torch.equal(resumed.teacher.done, first.teacher.done) and bool(first.teacher.done.any())
    list(resumed.run())
    for key, value in straight.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[key]), key
    assert [r["teacher"] for r in straight.history] == [r["teacher"] for r in resumed.history]


def test_a_teacher_is_refused_for_a_3d_target_and_bad_values_are_refused():
    from test_slab_target import slab_target, volume

    images, labels = volume()
    with pytest.raises(AdvsegError, match="2D target only"):
        AttackTrainer(AttackConfig(**TEACHER), slab_target(), images, labels, device="cpu")
    for bad in ({"lambda_teacher": -1.0}, {"teacher_steps": 0}, {"teacher_rho": 0.0}):
        with pytest.raises(AdvsegError):
            AttackConfig(**bad)
