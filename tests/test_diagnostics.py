"""Honest diagnostics: a warning when the target misreads the given labels, and when the attack term is stuck."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from napari_advseg.attack.config import AttackConfig
from napari_advseg.attack.training import StallWatch, train_generator, training_events
from napari_advseg.cli import main
from napari_advseg.data.cases import load_case
from napari_advseg.evaluation.diagnostics import clean_dice_warning, organ_slices
from napari_advseg.models.target import make_target
from napari_advseg.models.target_load import load_target

TINY = dict(batch_size=2, critic_steps=1, base_channels=4, critic_channels=4, control_spacing=4, latent_dim=2)


def test_organ_slices_spreads_up_to_count_over_the_slices_with_organs():
    labels = np.zeros((20, 4, 4), np.uint8)
    labels[5:15, 1, 1] = 1
    index = organ_slices(labels, 4)
    assert len(index) == 4 and index[0] == 5 and index[-1] == 14
    assert organ_slices(np.zeros((3, 4, 4), np.uint8)).size == 0


def test_an_untrained_target_on_the_phantom_is_warned_about(tiny_files):
    target = load_target(tiny_files["target"], "cpu")
    case = load_case(tiny_files["ct"], tiny_files["labels"], target.normalisation)
    message = clean_dice_warning(target, case.images, case.labels)
    assert message is not None
    assert message.startswith("clean Dice ") and "wrong normalisation?" in message
    assert "zscore intensities per volume" in message and "liver" in message and "\n" not in message
    assert clean_dice_warning(target, case.images, None) is None  # label-free: nothing to check


def test_the_shipped_target_on_the_shipped_sample_is_not_warned_about():
    from napari_advseg.data.samples import sample_file

    target = load_target(sample_file("target"), "cpu")
    case = load_case(None, None, target.normalisation, target.class_names)
    assert clean_dice_warning(target, case.images, case.labels) is None


def test_the_commands_print_the_warning_once_on_stderr(tiny_files, tmp_path, capsys):
    code = main(["evaluate", "--ct", str(tiny_files["ct"]), "--labels", str(tiny_files["labels"]),
                 "--target", str(tiny_files["target"]), "--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("advseg: warning: clean Dice")]
    assert len(lines) == 1 and "wrong normalisation?" in lines[0] and "warning" not in out


def test_stall_watch_warns_once_on_a_flat_stream_far_from_gamma():
    watch = StallWatch(gamma=3.0, window=10)
    messages = [watch.add(0.12 + 0.001 * (i % 2)) for i in range(30)]
    hits = [i for i, m in enumerate(messages) if m is not None]
    assert hits == [9]
    assert "has not moved in 10 steps" in messages[9] and "gamma 3" in messages[9]
    assert "lambda_atk" in messages[9] and "normalisation" in messages[9]


def test_stall_watch_is_quiet_while_the_ce_rises_or_near_gamma_or_off():
    rising = StallWatch(gamma=3.0, window=10)
    assert all(rising.add(0.1 * 1.05 ** i) is None for i in range(40))
    near = StallWatch(gamma=3.0, window=10)
    assert all(near.add(2.5) is None for _ in range(40))
    off = StallWatch(gamma=3.0, window=0)
    assert all(off.add(0.1) is None for _ in range(40))


class ConstantLogits(nn.Module):
    """A target that ignores its input: the same (uniform) logits everywhere, so the attack cannot move."""

    def __init__(self, n_classes: int = 6):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def forward(self, x):
        return self.bias.view(1, -1, 1, 1) + 0.0 * x


def _stuck_setup():
    target = make_target(ConstantLogits(), device="cpu")
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 24, 24)).astype(np.float32)
    labels = np.zeros((4, 24, 24), np.int64)
    labels[:, 5:15, 6:16] = 1
    return target, images, labels


def test_a_target_that_ignores_its_input_gets_one_stall_warning_from_the_driver(tmp_path):
    target, images, labels = _stuck_setup()
    config = AttackConfig(**TINY, steps=8, gamma=10.0)
    events = list(training_events(config, target, images, labels, tmp_path / "g.pt", device="cpu", stall_steps=4))
    warnings = [e for e in events if e["kind"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["step"] == 4
    assert "the attack term has not moved in 4 steps" in warnings[0]["message"]
    assert [e["kind"] for e in events].count("step") == 8

    lines: list[str] = []
    train_generator(config, target, images, labels, tmp_path / "run", device="cpu", stall_steps=4, warn=lines.append)
    assert len(lines) == 1 and "gamma 10" in lines[0]
