"""The shipped sample data (an artefact: present, small, passes the paper's bar) and the recipe that makes it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_advseg.cli import main
from napari_advseg.data.cases import load_case
from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir
from napari_advseg.models.target_load import load_target
from napari_advseg.io.json_write import strict_data
from napari_advseg.attack.checkpoint import load_generator
from napari_advseg.workflows import evaluate_case


def test_sample_files_exist_and_are_small():
    folder = sample_data_dir()
    sizes = {name: (folder / name).stat().st_size for name in SAMPLE_FILES.values()}
    assert sum(sizes.values()) < 20 * 2**20, sizes


def test_artefact_shipped_generator_passes_the_paper_bar():
    """An artefact check: the committed sample_data/ files (not the code that made them) pass the bar.

    ``test_make_sample_recipe_yields_an_attack`` checks the code that makes them.
    """
    target = load_target(sample_data_dir() / SAMPLE_FILES["target"], "cpu")
    generator, config, meta = load_generator(sample_data_dir() / SAMPLE_FILES["generator"], "cpu")
    case = load_case(normalisation=target.normalisation)
    assert meta["class_names"] == list(target.class_names)
    report = evaluate_case(generator, config, target, case, samples=2, seed=1)
    assert set(report["organs"]) == set(target.class_names[1:])   # every organ is in the sample volume
    for organ, row in report["organs"].items():
        assert row["dice_clean"] > 0.6, organ                       # the target segments the sample well
        assert row["drop"] >= 0.30, (organ, row)                    # the paper's success bar
    assert report["rho"] <= 0.08
    assert report["fold_fraction"] < 0.01


def test_the_recipe_is_the_shipped_generator_s_configuration():
    """`advseg make-sample` trains what is shipped: the recipe's options (and the defaults beside them) are
    the shipped generator's configuration, field for field; the recipe turns the slider terms on."""
    from napari_advseg.attack.config import SLIDER_OPTIONS_ON, AttackConfig
    from napari_advseg.data.sample_recipe import ATTACK_STEPS, SAMPLE_ATTACK_OPTIONS, SAMPLE_RHO_MAX

    _, shipped, _ = load_generator(sample_data_dir() / SAMPLE_FILES["generator"], "cpu")
    recipe = AttackConfig(steps=ATTACK_STEPS, seed=0, rho_max=SAMPLE_RHO_MAX, **SAMPLE_ATTACK_OPTIONS)
    differ = {k: (v, shipped.to_dict()[k]) for k, v in recipe.to_dict().items()
              if k != "bias_unit" and shipped.to_dict()[k] != v}
    assert not differ
    assert {k: SAMPLE_ATTACK_OPTIONS[k] for k in SLIDER_OPTIONS_ON} == SLIDER_OPTIONS_ON


def test_evaluate_with_no_arguments_uses_the_sample(tmp_path, capsys):
    code = main(["evaluate", "--samples", "1", "--device", "cpu", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "| U-Net, clean |" in out and "phantom_ct.nii.gz" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["organs"]) == 5


RECIPE_STEPS = 10
"""Generator steps of the recipe check: enough for the recipe's fields to reach their budget."""


def test_make_sample_recipe_trains_fields_away_from_the_identity(tmp_path, capsys):
    """The code behind sample_data/, at a small size: `advseg make-sample` on an 8-slice phantom, the
    generator trained on two subjects against the shipped U-Net. An untrained generator of the same
    recipe is the identity (rho 0); the trained one perturbs subject 0 up to the recipe's budget,
    without folds. Whether it lowers the Dice needs far more steps than a test affords: the shipped
    sample's own check is ``test_artefact_shipped_generator_passes_the_paper_bar``."""
    import shutil

    from napari_advseg.attack.trainer import AttackTrainer

    shutil.copy(sample_data_dir() / SAMPLE_FILES["target"], tmp_path / SAMPLE_FILES["target"])
    code = main(["make-sample", "--out", str(tmp_path), "--reuse-target", "--steps", str(RECIPE_STEPS),
                 "--shape", "8,128,128", "--attack-subjects", "2", "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "sample.json").read_text())["report"]

    target = load_target(tmp_path / SAMPLE_FILES["target"], "cpu")
    _, config, meta = load_generator(tmp_path / SAMPLE_FILES["generator"], "cpu")
    assert meta["step"] == RECIPE_STEPS
    case = load_case(tmp_path / SAMPLE_FILES["ct"], tmp_path / SAMPLE_FILES["labels"], target.normalisation)
    untrained = AttackTrainer(config, target, case.images, case.labels, "cpu").generator
    baseline = evaluate_case(untrained, config, target, case, samples=4, seed=0)
    assert baseline["rho"] < 1e-6 and baseline["mean_drop"] == pytest.approx(0.0, abs=1e-9)
    assert 0.03 < report["rho"] - baseline["rho"] and report["rho"] <= config.rho_max + 0.005
    assert report["fold_fraction"] < 0.01


def test_make_sample_resumes_its_generator(tmp_path, capsys):
    """`make-sample --resume-generator` continues the folder's generator.pt to --steps in all (tiny sizes)."""
    import shutil

    shutil.copy(sample_data_dir() / SAMPLE_FILES["target"], tmp_path / SAMPLE_FILES["target"])
    common = ["make-sample", "--out", str(tmp_path), "--reuse-target", "--shape", "4,64,64", "--attack-subjects", "1",
              "--device", "cpu", "--quiet"]
    assert main(common + ["--steps", "3", "--resume-generator"]) == 2  # nothing to resume yet
    assert "no generator to resume" in capsys.readouterr().err
    assert main(common + ["--steps", "2"]) == 0
    summary = json.loads((tmp_path / "sample.json").read_text())
    first = summary["attack_train_seconds"]
    # the files written are the ones evaluated: the checkpoint reloads and gives the same report
    target = load_target(tmp_path / SAMPLE_FILES["target"], "cpu")
    generator, config, meta = load_generator(tmp_path / SAMPLE_FILES["generator"], "cpu")
    assert meta["step"] == 2
    again = evaluate_case(generator, config, target, load_case(tmp_path / SAMPLE_FILES["ct"],
                                                               tmp_path / SAMPLE_FILES["labels"],
                                                               target.normalisation), samples=4, seed=0)
    # sample.json is strict JSON: an undefined drop (clean Dice 0) is null there
    np.testing.assert_equal(strict_data(again["organs"]), summary["report"]["organs"])
    assert main(common + ["--steps", "4", "--resume-generator"]) == 0, capsys.readouterr().err
    _, config, meta = load_generator(tmp_path / SAMPLE_FILES["generator"], "cpu")
    assert meta["step"] == 4
    assert json.loads((tmp_path / "config.json").read_text()) == config.to_dict()  # the run's resolved config
    assert json.loads((tmp_path / "sample.json").read_text())["attack_train_seconds"] > first
