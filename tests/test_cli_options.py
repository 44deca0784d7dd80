"""The attack's command-line options come from AttackConfig; --config files; the run folder's config.json."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_advseg.attack.config import AttackConfig
from napari_advseg.cli import main
from napari_advseg.cli.options import attack_fields, config_from, load_config_file
from napari_advseg.cli.parser import build_parser
from napari_advseg.errors import AdvsegError


def parse(*argv: str) -> AttackConfig:
    return config_from(build_parser().parse_args(["train", *argv]))


def test_no_flags_give_the_defaults():
    assert parse() == AttackConfig()


@pytest.mark.parametrize("name", sorted(attack_fields()))
def test_every_settable_field_has_a_flag_of_its_own_name(name):
    field = attack_fields()[name]
    default = getattr(AttackConfig(), name)
    flag = "--" + name.replace("_", "-")
    if isinstance(default, bool):
        assert getattr(parse(f"--no-{flag[2:]}" if default else flag), name) is (not default)
        return
    if field.metadata["choices"]:
        value, text = field.metadata["choices"][-1], field.metadata["choices"][-1]
    elif name == "organs":
        value, text = ["liver", "pancreas"], "liver,pancreas"
    elif name in ("control_spacing", "phi_control_spacing"):  # powers of two
        value = 16 if name == "control_spacing" else 4
        text = str(value)
    elif isinstance(default, int):
        value, text = default + 1, str(default + 1)
    elif name == "jacobian_ceiling":  # above 1 and the floor
        value, text = 1.5, "1.5"
    else:
        value = 0.5 if default in (None, 0.0) else default / 2
        text = repr(value)
    assert getattr(parse(flag, text), name) == value


def test_legacy_modes_and_retired_options_are_not_flags(capsys):
    for argv in (["--latent-decoder", "concat"], ["--phi-response", "linear"], ["--phi-integration", "direct"],
                 ["--single-phi-share", "0.75"], ["--single-probe", "alone"], ["--lr", "0.001"],
                 ["--lambda-kl-ph", "0"]):
        with pytest.raises(SystemExit) as exit:
            parse(*argv)
        assert exit.value.code == 2, argv
        assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("off", ["0", "none", "None", "0.0"])
def test_every_optional_limit_turns_off_the_same_way(off):
    limits = [f.name for f in dataclasses.fields(AttackConfig) if f.metadata["zero_is_off"]]
    assert set(limits) >= {"rho_max", "phi_rho_max", "bias_rho_max", "phi_edge_gate"}
    argv = [arg for name in limits for arg in ("--" + name.replace("_", "-"), off)]
    config = parse(*argv)
    assert all(getattr(config, name) is None for name in limits)
    # 'none' for the other optional fields means their fallback; their 0 stays a number
    assert parse("--lambda-kl-phi", "none").lambda_kl_phi is None
    assert parse("--lambda-kl-phi", "0").lambda_kl_phi == 0.0


def test_bad_values_are_argument_errors(capsys):
    for argv in (["--rho-max", "big"], ["--steps", "1.5"], ["--fields", "neither"]):
        with pytest.raises(SystemExit):
            parse(*argv)
        err = capsys.readouterr().err
        assert f"error: argument {argv[0]}" in err and argv[1] in err, argv


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_file_sits_between_defaults_and_flags(tmp_path, suffix):
    path = tmp_path / f"attack{suffix}"
    if suffix == ".toml":
        path.write_text('gamma = 2.0\nsteps = 300\nrho_max = 0\nphi_edge_gate = "none"\norgans = ["liver"]\n'
                        "single_alone = false\n")
    else:
        path.write_text(json.dumps({"gamma": 2.0, "steps": 300, "rho_max": 0, "phi_edge_gate": None,
                                    "organs": ["liver"], "single_alone": False}))
    config = parse("--config", str(path), "--steps", "5")
    assert config.gamma == 2.0                 # from the file
    assert config.steps == 5                   # the flag wins over the file
    assert config.rho_max is None and config.phi_edge_gate is None  # 0 and none: off, as on the command line
    assert config.organs == ["liver"] and config.single_alone is False
    assert config.lambda_rho == AttackConfig().lambda_rho  # the default where neither sets it


def test_config_file_errors_are_one_line(tmp_path, capsys):
    cases = {
        "unknown.toml": ("gamma = 2.0\nsingle_phi_share = 0.75\n", "unknown attack option 'single_phi_share'"),
        "legacy.json": (json.dumps({"latent_decoder": "concat"}), "kept only so that old checkpoints load"),
        "type.json": (json.dumps({"steps": "many"}), "steps"),
        "broken.toml": ("gamma = \n", "not valid TOML"),
        "config.yaml": ("gamma: 2\n", ".toml or .json"),
    }
    for name, (text, needle) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(AdvsegError, match=needle.replace("(", r"\(")):
            load_config_file(path)
    code = main(["train", "--config", str(tmp_path / "unknown.toml"), "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "single_phi_share" in err
    assert not (tmp_path / "run").exists()


def test_a_run_folder_config_json_is_a_config_file(tmp_path):
    from napari_advseg.attack.checkpoint import write_run_config

    config = AttackConfig(gamma=1.5, rho_max=0.05, organs=["spleen"], lambda_kl_phi=0.1)
    path = write_run_config(tmp_path / "run", config)
    assert path.name == "config.json" and json.loads(path.read_text()) == config.to_dict()
    assert parse("--config", str(path)) == config


def test_sliders_on_turns_the_four_slider_terms_on_and_a_single_flag_still_wins(tmp_path):
    from napari_advseg.attack.config import SLIDER_OPTIONS_OFF, SLIDER_OPTIONS_ON

    assert {name: getattr(AttackConfig(), name) for name in SLIDER_OPTIONS_OFF} == SLIDER_OPTIONS_OFF  # defaults
    assert parse("--sliders", "off") == AttackConfig()
    on = parse("--sliders", "on")
    assert {name: getattr(on, name) for name in SLIDER_OPTIONS_ON} == SLIDER_OPTIONS_ON
    assert on.replace(**SLIDER_OPTIONS_OFF) == AttackConfig()  # nothing else changes
    assert parse("--sliders", "on", "--lambda-mean", "5").lambda_mean == 5.0
    assert parse("--sliders", "on", "--lambda-mean", "5").lambda_alone == 1.0
    path = tmp_path / "c.json"
    path.write_text(json.dumps(SLIDER_OPTIONS_ON))
    assert parse("--config", str(path), "--sliders", "off") == AttackConfig()  # over the file
    assert parse("--config", str(path)).single_alone is True
