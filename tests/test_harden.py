"""Hardening a target: the run, its files, exact resume, the baselines and the robustness report."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
import torch

from napari_advseg.defense import (
    HardenConfig,
    Hardener,
    generator_path,
    harden_target,
    hardening_events,
    resume_path,
)
from napari_advseg.errors import AdvsegError


@pytest.fixture(scope="module")
def setup(tiny_files):
    from napari_advseg.data.cases import load_case
    from napari_advseg.models.target_load import load_target

    target = load_target(tiny_files["target"], "cpu")
    case = load_case(tiny_files["ct"], tiny_files["labels"], target.normalisation)
    train = case.part("train")[:2]
    test = case.part("test")[:2]
    return {"target": target, "train": train, "test": test, "files": tiny_files}


def _config(**changes):
    values = {"steps": 4, "batch_size": 2, "generator_steps": 1}
    values.update(changes)
    return HardenConfig(**values)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.dtype.is_floating_point])


def test_config_rejects_bad_settings():
    with pytest.raises(AdvsegError, match="unknown hardening method"):
        HardenConfig(method="magic")
    with pytest.raises(AdvsegError, match="mix"):
        HardenConfig(mix=1.5)
    with pytest.raises(AdvsegError, match="rho range"):
        HardenConfig(rho_low=0.1, rho_high=0.05)
    with pytest.raises(AdvsegError, match="only the 'generator' method"):
        HardenConfig(method="clean", rounds=2)
    assert HardenConfig.from_dict(HardenConfig(steps=7).to_dict()) == HardenConfig(steps=7)
    rounds = HardenConfig(steps=9, rounds=3)
    assert [rounds.round_of(s) for s in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_hardening_writes_a_loadable_target_with_its_settings_and_the_generators_hash(setup, tmp_path):
    from napari_advseg.io.atomic import file_sha256
    from napari_advseg.models.target_load import load_target

    out = tmp_path / "hardened.pt"
    events = []
    hardener, path, report = harden_target(_config(), setup["target"], *setup["train"], out,
                                           generator=setup["files"]["generator"], device="cpu",
                                           test=setup["test"], progress=events.append)
    assert path == out and out.is_file() and resume_path(out).is_file()
    assert [e["step"] for e in events] == [1, 2, 3, 4] and {e["kind"] for e in events} == {"step"}
    first = events[0]["metrics"]
    assert 0.02 <= first["rho"] <= 0.10 and 0.0 <= first["dice_adversarial"] <= 1.0
    hardened = load_target(out, "cpu")
    record = hardened.metrics["hardening"]
    assert record["complete"] and record["step"] == 4
    assert record["config"] == _config().to_dict()
    assert record["generator"]["sha256"] == file_sha256(setup["files"]["generator"])
    assert record["original"]["sha256"] == file_sha256(setup["files"]["target"])
    assert set(hardened.metrics["test_dice"]) == set(setup["target"].class_names[1:])
    # it was trained: different weights from the original, which is left unchanged
    original_before = _weights(setup["target"].model)
    assert not torch.equal(_weights(hardened.model), original_before)
    assert torch.equal(_weights(setup["target"].model), original_before)
    x = torch.as_tensor(setup["test"][0][:1])[:, None]
    assert hardened(x).shape == (1, len(hardened.class_names), *x.shape[2:])


@pytest.mark.parametrize("method", ["clean", "random_fields", "optimised_fields"])
def test_every_baseline_method_trains_at_the_same_step_budget(setup, tmp_path, method):
    out = tmp_path / f"{method}.pt"
    hardener, _, _ = harden_target(_config(method=method, steps=2), setup["target"], *setup["train"], out,
                                   device="cpu")
    assert hardener.step_count == 2 and hardener.complete
    rhos = [m["rho"] for m in hardener.history]
    if method == "clean":
        assert all(math.isnan(r) for r in rhos) and all(math.isnan(m["dice_adversarial"]) for m in hardener.history)
    else:
        assert all(0.02 <= r <= 0.10 for r in rhos)


def test_adversarial_part_is_at_the_drawn_rho_with_labels_warped(setup):
    from napari_advseg.attack.fields import perceptibility_per_slice, warp_labels
    from napari_advseg.attack.checkpoint import generator_from_state
    from napari_advseg.defense.sources import adversarial_part, load_generator_state

    state = load_generator_state(setup["files"]["generator"], setup["target"])
    generator = generator_from_state(state, torch.device("cpu"))
    organ_pixels = (setup["train"][1] > 0).reshape(len(setup["train"][1]), -1).sum(axis=1)
    pick = np.argsort(organ_pixels)[-2:]  # the two slices with the most organ
    x = torch.as_tensor(setup["train"][0][pick])[:, None]
    y = torch.as_tensor(setup["train"][1][pick]).long()
    for method in ("generator", "random_fields", "optimised_fields"):
        result = adversarial_part(HardenConfig(method=method), x, y, setup["target"], 0.05,
                                  torch.Generator().manual_seed(0), generator)
        np.testing.assert_allclose(perceptibility_per_slice(result.adversarial, x).numpy(), 0.05, rtol=0.02)
        # the labels move with the anatomy: the reference warped by the same displacement
        assert torch.equal(result.warped_labels, warp_labels(y, result.displacement))


def test_resume_continues_exactly_through_a_generator_round(setup, tmp_path):
    """Stopped after step 1 (before the round-2 generator training) and resumed: the same weights as one run."""
    config = _config(steps=4, rounds=2)
    generator = setup["files"]["generator"]
    straight, _, _ = harden_target(config, setup["target"], *setup["train"], tmp_path / "a.pt",
                                   generator=generator, device="cpu")
    out = tmp_path / "b.pt"
    with contextlib.closing(hardening_events(config, setup["target"], *setup["train"], out, generator=generator,
                                             device="cpu")) as events:
        for event in events:
            if event["kind"] == "step" and event["step"] == 1:
                break  # Stop: the finally block writes the files
    from napari_advseg.models.target_load import load_target

    assert load_target(out, "cpu").metrics["hardening"]["complete"] is False
    kinds = []
    resumed, _, _ = harden_target(None, setup["target"], *setup["train"], out, device="cpu", resume=True,
                                  progress=lambda e: kinds.append(e["kind"]))
    assert kinds == ["step", "generator", "step", "step"]
    assert resumed.step_count == straight.step_count == 4
    assert torch.equal(_weights(resumed.model), _weights(straight.model))
    assert generator_path(out).is_file()
    assert load_target(out, "cpu").metrics["hardening"]["final_generator"]["path"] == str(generator_path(out))


def test_resume_refuses_another_target_or_a_missing_state(setup, tmp_path):
    from napari_advseg.models.target_files import save_target
    from napari_advseg.models.target_load import load_target
    from napari_advseg.models.unet import UNet2D

    out = tmp_path / "h.pt"
    harden_target(_config(method="clean", steps=1), setup["target"], *setup["train"], out, device="cpu")
    torch.manual_seed(1)
    other = save_target(tmp_path / "other.pt", UNet2D(base_channels=4, depth=2))
    with pytest.raises(AdvsegError, match="another file"):
        Hardener.resume(out, load_target(other, "cpu"), *setup["train"], device="cpu")
    with pytest.raises(AdvsegError, match="not found"):
        Hardener.resume(tmp_path / "none.pt", setup["target"], *setup["train"], device="cpu")


def test_only_a_project_unet_can_be_hardened(setup, tmp_path):
    from napari_advseg.models.target import make_target

    scripted = make_target(torch.nn.Conv2d(1, 6, 1), validate=False)
    with pytest.raises(AdvsegError, match="only a project U-Net"):
        Hardener(_config(method="clean"), scripted, *setup["train"], device="cpu")
    with pytest.raises(AdvsegError, match="needs a generator"):
        Hardener(_config(), setup["target"], *setup["train"], device="cpu")


def test_robustness_report_has_every_key_and_writes_its_files(setup, tmp_path):
    from napari_advseg.evaluation.robustness import (ROBUSTNESS_ATTACKS, format_robustness, robustness_report,
                                                     write_robustness)
    from napari_advseg.models.target_load import load_target

    out = tmp_path / "hardened.pt"
    harden_target(_config(steps=2), setup["target"], *setup["train"], out, generator=setup["files"]["generator"],
                  device="cpu")
    targets = [setup["target"], load_target(out, "cpu")]
    report = robustness_report(targets, setup["train"], setup["test"], rhos=(0.04, 0.08), attacker=None,
                               new_generator_steps=1, samples=1, work_dir=tmp_path / "work", device="cpu")
    assert report["rhos"] == [0.04, 0.08] and len(report["networks"]) == 2
    original, hardened = report["networks"]
    assert original["hardening"] is None and hardened["hardening"]["method"] == "generator"
    assert original["attacks"]["hardening_generator"] == {"skipped": "no generator",
                                                          "source": "no hardening generator and no attacker given"}
    assert hardened["attacks"]["hardening_generator"]["generator"] == str(setup["files"]["generator"])
    for net in report["networks"]:
        assert set(net["attacks"]) == set(ROBUSTNESS_ATTACKS)
        assert set(net["clean"]) == set(setup["target"].class_names[1:])
        for key, attack in net["attacks"].items():
            if "skipped" in attack:
                continue
            assert set(attack["rhos"]) == {"0.04", "0.08"}
            for row in attack["rhos"].values():
                assert set(row) == {"dice", "mean_dice", "mean_drop", "rho_measured", "fold_fraction"}
                assert set(row["dice"]) == set(net["clean"])
                assert abs(row["rho_measured"] - float(next(r for r, v in attack["rhos"].items() if v is row))) \
                    < 0.01
    # the clean Dice is the network's own on the held-out slices
    from napari_advseg.evaluation.metrics import network_dice

    for net, target in zip(report["networks"], targets):
        expected = network_dice(target, *setup["test"], target.class_names)
        assert net["clean"] == pytest.approx({o: v for o, v in expected.items() if v is not None})
    paths = write_robustness(tmp_path / "report", report)
    assert json.loads(paths["json"].read_text())["networks"][1]["name"] == "hardened"
    markdown = paths["markdown"].read_text()
    assert "| unet | original |" in markdown and "(e) PGD-L2" in markdown
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the new generators are kept and reused: a second report trains nothing
    kept = sorted((tmp_path / "work").glob("*/generator.pt"))
    assert len(kept) == 2
    stamps = [p.stat().st_mtime_ns for p in kept]
    robustness_report(targets[:1], setup["train"], setup["test"], rhos=(0.04,), new_generator_steps=1, samples=1,
                      work_dir=tmp_path / "work", device="cpu")
    assert [p.stat().st_mtime_ns for p in kept] == stamps
    # no new generator asked for: attack (b) is left out, not scored with an untrained generator
    report = robustness_report(targets[:1], setup["train"], setup["test"], rhos=(0.04,), new_generator_steps=0,
                               samples=1, work_dir=tmp_path / "none", device="cpu")
    assert report["networks"][0]["attacks"]["new_generator"] == {"skipped": "not trained (new generator steps 0)"}
    assert not list((tmp_path / "none").glob("*/generator.pt"))
    assert "| (b) new generator trained against it | - | skipped: not trained" in format_robustness(report)


def test_cli_harden_then_robustness(tiny_files, tmp_path, capsys, one_thread):
    from napari_advseg.cli import main

    data = ["--ct", str(tiny_files["ct"]), "--labels", str(tiny_files["labels"]), "--device", "cpu", "--quiet"]
    out = tmp_path / "h.pt"
    assert main(["harden", *data, "--target", str(tiny_files["target"]), "--steps", "2", "--batch-size", "2",
                 "--out", str(out)]) == 2
    assert "needs --generator" in capsys.readouterr().err
    assert main(["harden", *data, "--target", str(tiny_files["target"]), "--out", str(out), "--resume"]) == 2
    assert "no run to continue" in capsys.readouterr().err
    assert main(["harden", *data, "--target", str(tiny_files["target"]), "--generator",
                 str(tiny_files["generator"]), "--steps", "2", "--batch-size", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hardened (generator, 2 steps" in text and "original:" in text and "hardened:" in text
    assert main(["harden", *data, "--target", str(tiny_files["target"]), "--steps", "3", "--out", str(out),
                 "--resume"]) == 0
    from napari_advseg.models.target_load import load_target

    assert load_target(out, "cpu").metrics["hardening"]["step"] == 3
    report_dir = tmp_path / "report"
    assert main(["robustness", *data, "--target", str(tiny_files["target"]), "--target", str(out), "--rhos", "0.05",
                 "--new-generator-steps", "1", "--samples", "1", "--out", str(report_dir)]) == 0
    assert "| h | generator, 3 steps |" in capsys.readouterr().out
    assert {p.name for p in report_dir.iterdir()} >= {"robustness.json", "robustness.md", "robustness.png"}


def test_attack_a_is_the_hardening_generator_or_else_the_attacker(setup, tmp_path):
    from napari_advseg.evaluation.robustness import hardening_generator_of
    from napari_advseg.models.target_load import load_target

    attacker = str(setup["files"]["generator"])
    clean = tmp_path / "clean.pt"
    harden_target(_config(method="clean", steps=1), setup["target"], *setup["train"], clean, device="cpu")
    assert hardening_generator_of(load_target(clean, "cpu"), attacker) == (
        attacker, "the attacker given (hardened without a generator)")
    assert hardening_generator_of(setup["target"], attacker) == (attacker, "the attacker given (not hardened)")
    game = tmp_path / "game.pt"
    harden_target(_config(steps=2, rounds=2), setup["target"], *setup["train"], game, generator=attacker,
                  device="cpu")
    assert hardening_generator_of(load_target(game, "cpu"), None) == (str(generator_path(game)),
                                                                      "hardening record (final_generator)")
    generator_path(game).unlink()
    assert hardening_generator_of(load_target(game, "cpu"), attacker)[0] is None  # never silently another


def test_quick_hardening_benchmark_reports_the_goals(tmp_path):
    """bench/hardening.py --quick, end to end, so the script behind docs/hardening.md cannot rot."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, str(root / "bench" / "hardening.py"), "--quick", "--work",
                           str(tmp_path / "work"), "--results", str(results)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = (results / "summary_quick.md").read_text()
    for goal in ("clean Dice within 1 point", "(b) new generator, mean Dice drop", "better than every baseline on (b)",
                 "better than every baseline on (d)", "within 15 minutes"):
        assert goal in summary
    report = json.loads((results / "robustness_quick.json").read_text())
    assert [net["name"] for net in report["networks"]] == [
        "unet", "hardened_generator", "hardened_clean", "hardened_random_fields", "hardened_optimised_fields"]
    times = json.loads((results / "hardening_times_quick.json").read_text())
    assert set(times) == {"generator", "clean", "random_fields", "optimised_fields"}


def test_cli_robustness_on_the_shipped_data_attacks_with_the_shipped_generator(tmp_path, capsys, one_thread):
    from napari_advseg.cli import main
    from napari_advseg.data.samples import sample_file

    out = tmp_path / "report"
    assert main(["robustness", "--target", str(sample_file("target")), "--rhos", "0.06", "--new-generator-steps", "1",
                 "--samples", "1", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    (net,) = json.loads((out / "robustness.json").read_text())["networks"]
    attack_a = net["attacks"]["hardening_generator"]
    assert attack_a["generator"] == str(sample_file("generator"))
    assert attack_a["source"] == "the attacker given (not hardened)"
    assert 0.0 <= attack_a["rhos"]["0.06"]["mean_dice"] <= 1.0
