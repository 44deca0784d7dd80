"""One latent code per volume: fields that change smoothly along z, on a small phantom with the shipped G."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_advseg.attack.apply import attack_volume, run_attack_volume
from napari_advseg.attack.sampling import read_sample
from napari_advseg.attack.checkpoint import load_generator
from napari_advseg.cli import main
from napari_advseg.data.cases import phantom_case
from napari_advseg.data.samples import sample_file
from napari_advseg.errors import AdvsegError
from napari_advseg.evaluation.continuity import volume_discontinuity
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.models.target_load import load_target


@pytest.fixture(scope="module")
def shipped():
    """The shipped U-Net and generator and a 16-slice 64 x 64 phantom."""
    target = load_target(sample_file("target"), "cpu")
    generator, config, _ = load_generator(sample_file("generator"), "cpu")
    return target, generator, config, phantom_case(3, target.normalisation, shape=(16, 64, 64))


def _attack(shipped, **kwargs):
    target, generator, config, case = shipped
    kwargs.setdefault("config", config)
    return run_attack_volume(attack_volume(generator, kwargs.pop("config"), target, case, **kwargs))


def _figures(result):
    return volume_discontinuity(result.displacement, result.bias, result.slices)


def test_one_code_per_volume_is_smoother_than_codes_per_slice(shipped, one_thread):
    for seed in (0, 1):
        before = _figures(_attack(shipped, seed=seed, latent="slice"))
        after = _figures(_attack(shipped, seed=seed))  # latent="volume" is the default
        assert after["bias"] < 0.8 * before["bias"], (seed, before, after)
        # one code per volume: far smaller jumps of the deformation between neighbouring slices (the shipped
        # generator: 0.52 and 0.59 times those with a code per slice, seeds 0 and 1)
        assert after["displacement"] < 0.7 * before["displacement"], (seed, before, after)
        # the fields are as strong as before: the code changed, not the generator's reach
        assert after["displacement_in_plane"] > 0.5 * before["displacement_in_plane"]


def test_one_code_means_one_set_of_deviates_and_a_seed_repeats_it(shipped, one_thread):
    _, generator, _, case = shipped
    with torch.no_grad():
        _, stats = generator.encode(torch.as_tensor(case.images)[:, None])

    def deviates(result):
        z_phi = torch.tensor(result.z_phi)
        return ((z_phi - stats.mu_phi) / torch.exp(0.5 * stats.logvar_phi)).numpy()

    one = _attack(shipped, seed=5, latent="volume")
    eps = deviates(one)
    assert np.allclose(eps, eps[0], atol=1e-3)  # z = mu(x) + sigma(x) eps with one eps for every slice
    per_slice = deviates(_attack(shipped, seed=5, latent="slice"))
    assert np.abs(per_slice - per_slice[0]).max() > 0.5
    again = _attack(shipped, seed=5, latent="volume")
    assert np.array_equal(again.bias, one.bias) and np.array_equal(again.displacement, one.displacement)
    other = _attack(shipped, seed=6, latent="volume")
    assert not np.allclose(other.bias, one.bias)


def test_smoothing_along_z_lowers_the_discontinuity_within_the_budget(shipped, one_thread):
    target, generator, config, case = shipped
    config = config.replace(rho_max=0.05)
    budgeted = AttackGenerator(config).eval()  # the shipped weights under a budget its fields exceed
    budgeted.load_state_dict(generator.state_dict())
    with_budget = (target, budgeted, config, case)
    plain = _attack(with_budget, seed=0)
    # unbudgeted, the shipped fields reach well past 0.05 (0.079 here: air is not pushed below -1024 HU)
    assert max(plain.rho) <= 0.05 * 1.01 and max(_attack(shipped, seed=0).rho) > 0.07
    smoothed = _attack(with_budget, seed=0, z_smooth=1.0)
    assert _figures(smoothed)["bias"] < 0.7 * _figures(plain)["bias"]
    assert _figures(smoothed)["displacement"] < 0.7 * _figures(plain)["displacement"]
    assert max(smoothed.rho) <= 0.05 * 1.01
    # only the slices asked for are smoothed together, and the others stay untouched
    part = _attack(shipped, seed=0, z_smooth=1.0, slices=[2, 3, 4, 9, 10])
    assert np.all(part.bias[[0, 1, 5, 6, 7, 8]] == 0) and np.all(part.bias[[2, 9]] != 0)
    with pytest.raises(AdvsegError, match="cannot be negative"):
        _attack(shipped, z_smooth=-1.0)
    with pytest.raises(AdvsegError, match="latent must be one of volume, slice"):
        _attack(shipped, latent="slices")


def test_cli_latent_flag_and_sidecar(tiny_files, tmp_path, capsys, one_thread):
    data = ["--ct", tiny_files["ct"], "--labels", tiny_files["labels"], "--device", "cpu", "--quiet", "--seed", "2"]
    figures = {}
    for name, flags in {"volume": [], "slice": ["--latent", "slice"],
                        "smooth": ["--latent", "volume", "--z-smooth", "1.5"]}.items():
        assert main([str(a) for a in ["sample", *data, "--out", tmp_path / name, *flags]]) == 0
        sidecar = json.loads((tmp_path / name / "sample.json").read_text())
        assert sidecar["latent"] == ("slice" if name == "slice" else "volume")
        assert sidecar["z_smooth"] == (1.5 if name == "smooth" else 0.0)
        written = read_sample(tmp_path / name)
        figures[name] = volume_discontinuity(written["displacement"], written["bias"], written["slices"])
    assert figures["volume"]["bias"] < figures["slice"]["bias"]
    assert figures["volume"]["displacement"] < 0.7 * figures["slice"]["displacement"]   # measured 0.59
    assert figures["smooth"]["bias"] < figures["volume"]["bias"]
    for bad in (["--latent", "both"], ["--z-smooth", "-1"]):
        with pytest.raises(SystemExit):
            main([str(a) for a in ["sample", *data, "--out", tmp_path / "bad", *bad]])
    assert "--latent" in capsys.readouterr().err


def test_apply_to_whole_volume_with_codes_per_slice(shipped, one_thread):
    from napari_advseg.widgets._model import Snapshot
    from napari_advseg.widgets._tasks import volume_run

    target, generator, config, case = shipped
    snapshot = Snapshot(case, target, generator, config, None, "cpu")
    sliders = np.full(config.latent_dim, 2.0)

    def applied(latent):
        stream = volume_run(snapshot, sliders, sliders, 1.0, True, True, latent=latent)
        while True:
            try:
                next(stream)
            except StopIteration as stop:
                return stop.value[0]

    # one code: the sliders' code on every slice; codes per slice: fresh deviates from seed 0, sliders unused
    assert np.array_equal(applied("volume"),
                          _attack(shipped, eps_phi=sliders, eps_b=sliders).adversarial_hu)
    assert np.array_equal(applied("slice"), _attack(shipped, seed=0, latent="slice").adversarial_hu)
