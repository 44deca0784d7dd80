"""The one training driver (attack/training.py): save on every way out, exact resume, both faces use it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import napari_advseg.attack.training as training
from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.checkpoint import load_checkpoint
from napari_advseg.attack.trainer import AttackTrainer
from napari_advseg.attack.training import train_generator, training_events
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D

TINY = dict(batch_size=2, critic_steps=1, base_channels=4, critic_channels=4, control_spacing=4, latent_dim=2)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(5)
    target = make_target(UNet2D(base_channels=4, depth=2), device="cpu")
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 24, 24)).astype(np.float32)
    labels = np.zeros((4, 24, 24), np.int64)
    labels[:, 5:15, 6:16] = 1
    return target, images, labels


def test_closing_the_events_early_saves_the_steps_done(setup, tmp_path):
    target, images, labels = setup
    report: dict = {}
    events = training_events(AttackConfig(**TINY, steps=10), target, images, labels, tmp_path / "g.pt",
                             device="cpu", report=report)
    kinds = [next(events)["kind"], next(events)["kind"], next(events)["kind"]]
    assert kinds == ["ready", "step", "step"]
    events.close()  # what Stop and closing napari do to the worker's generator
    assert report["step"] == 2 and report["new_steps"] == 2 and report["saved"] == str(tmp_path / "g.pt")
    assert load_checkpoint(tmp_path / "g.pt")["step"] == 2
    # the run's resolved configuration lies beside its checkpoint, for the widget's runs as for the CLI's
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["bias_unit"] > 0  # measured on the slices when training started, and recorded
    assert written == {**AttackConfig(**TINY, steps=10).to_dict(), "bias_unit": written["bias_unit"]}


def test_an_error_during_training_still_saves_then_propagates(setup, tmp_path, monkeypatch):
    target, images, labels = setup
    real_step = AttackTrainer.step

    def failing_step(self):
        if self.step_count == 3:
            raise RuntimeError("out of memory (simulated)")
        return real_step(self)

    monkeypatch.setattr(AttackTrainer, "step", failing_step)
    with pytest.raises(RuntimeError, match="simulated"):
        train_generator(AttackConfig(**TINY, steps=10), target, images, labels, tmp_path, device="cpu",
                        checkpoint_every=0)
    assert load_checkpoint(tmp_path / "generator.pt")["step"] == 3


def test_ctrl_c_in_the_progress_callback_saves(setup, tmp_path):
    target, images, labels = setup

    def interrupt(metrics):
        if metrics["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_generator(AttackConfig(**TINY, steps=10), target, images, labels, tmp_path, device="cpu",
                        progress=interrupt)
    assert load_checkpoint(tmp_path / "generator.pt")["step"] == 2


def test_resume_through_the_driver_is_exact(setup, tmp_path):
    target, images, labels = setup
    config = AttackConfig(**TINY, steps=4)
    straight, _ = train_generator(config, target, images, labels, tmp_path / "straight", device="cpu")
    train_generator(config, target, images, labels, tmp_path / "halves", device="cpu", steps=2,
                    checkpoint_every=1)
    resumed, path = train_generator(None, target, images, labels, tmp_path / "halves", device="cpu",
                                    resume=tmp_path / "halves" / "generator.pt", steps=4)
    assert resumed.step_count == 4 and load_checkpoint(path)["step"] == 4
    for key, value in straight.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[key]), key


def test_the_cli_and_the_widget_train_through_the_same_driver(setup, tmp_path, monkeypatch, tiny_files):
    from napari_advseg.cli import main
    from napari_advseg.data.cases import load_case
    from napari_advseg.models.target_load import load_target
    from napari_advseg.widgets._model import Snapshot
    from napari_advseg.widgets._tasks import training_run

    calls = []
    real = training.training_events

    def spy(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "training_events", spy)
    code = main(["train", "--ct", str(tiny_files["ct"]), "--labels", str(tiny_files["labels"]), "--target",
                 str(tiny_files["target"]), "--steps", "1", "--batch-size", "2", "--critic-steps", "1",
                 "--out", str(tmp_path / "cli"), "--device", "cpu", "--quiet"])
    assert code == 0 and len(calls) == 1

    target = load_target(tiny_files["target"], "cpu")
    case = load_case(tiny_files["ct"], tiny_files["labels"], target.normalisation)
    snapshot = Snapshot(case, target, None, None, None, "cpu")
    report: dict = {}
    events = list(training_run(snapshot, AttackConfig(**TINY, steps=1), tmp_path / "w.pt", report))
    assert len(calls) == 2
    assert [e["kind"] for e in events] == ["ready", "step"] and "trainer" not in events[0]
    assert report["saved"] == str(tmp_path / "w.pt")
