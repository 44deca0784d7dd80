"""AttackConfig: documented fields, old checkpoints that keep loading, the one config of a run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_advseg.attack.config import _LEGACY_DEFAULTS, GROUPS, AttackConfig
from napari_advseg.attack.checkpoint import load_checkpoint, load_generator
from napari_advseg.attack.trainer import AttackTrainer
from napari_advseg.data.samples import sample_file
from napari_advseg.errors import AdvsegError
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D


def test_every_field_is_documented_in_a_group():
    for f in dataclasses.fields(AttackConfig):
        assert f.metadata["group"] in GROUPS, f.name
        assert f.metadata["help"] and "\n" not in f.metadata["help"], f.name
        assert isinstance(f.metadata["everyday"], bool), f.name
        default = getattr(AttackConfig(), f.name)
        if f.metadata["choices"]:
            assert default == f.metadata["choices"][0], f.name
            assert not set(f.metadata["legacy"]) & set(f.metadata["choices"]), f.name


def test_shipped_generator_config_round_trips():
    """The checkpoint written by the current release loads, and its config survives to_dict/from_dict."""
    path = sample_file("generator")
    recorded = load_checkpoint(path)["config"]
    config = AttackConfig.from_dict(recorded)
    assert AttackConfig.from_dict(config.to_dict()) == config
    for key, value in config.to_dict().items():
        if key in recorded:
            assert recorded[key] == value, key  # every recorded setting is kept as it was
    # options newer than the shipped file: absent from it, and read as what it was trained with (off)
    assert set(config.to_dict()) - set(recorded) <= {"lambda_teacher", "teacher_steps", "teacher_rho", "bias_response",
                                                      "neighbour_input", "neighbour_blend", "organ_temperature"}
    assert config.lambda_teacher == 0.0 and config.bias_response == "linear" and config.neighbour_input == 0
    assert not config.neighbour_blend
    # the realism defaults and the sample recipe (data/sample_recipe.py) it was trained with
    assert config.phi_gradient_max == 0.12 and config.lambda_spectrum == 1000.0
    assert config.attack_reduction == "organs_squared" and config.phi_rho_max == config.bias_rho_max == 0.08
    assert config.single_alone and config.lambda_mean == 20.0  # the slider terms on (SLIDER_OPTIONS_ON)
    _, loaded, _ = load_generator(path, "cpu")
    assert loaded == config


def test_old_checkpoint_without_the_newer_keys_loads_with_the_legacy_modes(tmp_path):
    """A checkpoint written before the newer options: its file lacks their keys and carries a retired one."""
    torch.manual_seed(0)
    target = make_target(UNet2D(base_channels=4, depth=2), device="cpu")
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 16, 16)).astype(np.float32)
    labels = np.zeros((2, 16, 16), np.int64)
    labels[:, 4:10, 4:10] = 1
    legacy = AttackConfig(batch_size=2, critic_steps=1, base_channels=4, critic_channels=4, control_spacing=4,
                          latent_dim=2, steps=1, **_LEGACY_DEFAULTS)
    trainer = AttackTrainer(legacy, target, images, labels, device="cpu")
    list(trainer.run())
    path = trainer.save_checkpoint(tmp_path / "old.pt")
    state = load_checkpoint(path)
    state["config"] = {k: v for k, v in state["config"].items() if k not in _LEGACY_DEFAULTS}
    state["config"]["single_phi_share"] = 0.75  # a retired option: dropped on loading
    torch.save(state, path)
    generator, config, _ = load_generator(path, "cpu")
    assert config == legacy
    assert (config.latent_decoder, config.phi_response, config.phi_integration) == ("concat", "linear", "direct")
    x = torch.from_numpy(images[:, None])
    out = generator(x, torch.zeros(2, 2), torch.zeros(2, 2))
    assert out.displacement.shape == (2, 2, 16, 16)
    with pytest.raises(AdvsegError, match="unknown attack configuration keys: lambda_reach"):
        AttackConfig.from_dict({**state["config"], "lambda_reach": 1.0})
