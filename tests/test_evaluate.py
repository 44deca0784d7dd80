"""Dice edge cases, the success rule, reports and the Table-1 formatting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.attack.config import AttackConfig
from napari_advseg.evaluation.metrics import OverlapCounter, dice_from_counts, dice_per_organ, organ_row
from napari_advseg.evaluation.report import evaluate_attack, format_table
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.models.target import make_target
from napari_advseg.models.unet import UNet2D


def test_dice_edge_cases():
    assert math.isnan(dice_from_counts(0, 0, 0))     # absent from the reference: left out
    assert math.isnan(dice_from_counts(0, 5, 0))     # predicted but absent from the reference: left out too
    assert dice_from_counts(0, 0, 4) == 0.0          # present, missed entirely
    assert dice_from_counts(4, 4, 4) == 1.0
    assert dice_from_counts(1, 2, 2) == pytest.approx(0.5)


def test_dice_per_organ_by_hand():
    ref = np.zeros((2, 4, 4), np.uint8)
    pred = np.zeros((2, 4, 4), np.uint8)
    ref[0, :2, :2] = 1          # liver 4 voxels
    pred[0, :2, :1] = 1         # 2 voxels predicted, both right: 2*2/(2+4)
    ref[1, 3, 3] = 5
    pred[1, 0, 0] = 5           # pancreas missed: 0
    pred[1, 2, 2] = 2           # spleen predicted but absent from the reference: NaN
    dice = dice_per_organ(pred, ref, ORGAN_CLASSES)
    assert dice["liver"] == pytest.approx(4 / 6)
    assert dice["pancreas"] == 0.0
    assert math.isnan(dice["spleen"]) and math.isnan(dice["kidney_left"])


def test_overlap_counter_accumulates_like_one_volume():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 6, (5, 8, 8))
    pred = rng.integers(0, 6, (5, 8, 8))
    counter = OverlapCounter(6)
    for z in range(5):
        counter.add(pred[z], ref[z])
    whole = dice_per_organ(pred, ref, ORGAN_CLASSES)
    for c, value in counter.dice().items():
        assert value == pytest.approx(whole[ORGAN_CLASSES[c]])


def test_success_rule_is_thirty_percent():
    assert organ_row(0.9, 0.63)["success"]           # exactly 30 % down
    assert not organ_row(0.9, 0.64)["success"]
    row = organ_row(0.8, 0.2)
    assert row["drop"] == pytest.approx(0.75) and row["success"]
    assert not organ_row(0.0, 0.0)["success"]


def test_evaluate_attack_report_keys_and_identity_generator():
    torch.manual_seed(0)
    target = make_target(UNet2D(base_channels=4, depth=2), device="cpu")
    cfg = AttackConfig(base_channels=4, control_spacing=4, latent_dim=2)
    generator = AttackGenerator(cfg).eval()      # untrained: identity fields
    images = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[:, 4:10, 4:10] = 1
    labels[0, 12:14, 12:14] = 3
    report = evaluate_attack(generator, cfg, target, [(images, labels)], samples=2, seed=0)
    assert set(report) >= {"organs", "rho", "fold_fraction", "config", "samples"}
    assert set(report["organs"]) == {"liver", "kidney_left"}          # absent organs left out
    assert set(report["absent_organs"]) == {"spleen", "kidney_right", "pancreas"}
    for row in report["organs"].values():
        assert set(row) >= {"dice_clean", "dice_adv", "drop", "success"}
        assert row["dice_adv"] == pytest.approx(row["dice_clean"])    # identity attack changes nothing
        assert not row["success"]
    assert report["rho"] == pytest.approx(0.0, abs=1e-5) and report["fold_fraction"] == 0.0
    table = format_table([("gamma 2", report), ("gamma 3", report)])
    lines = table.splitlines()
    assert lines[0] == ("| row | liver | kidney_left | rho | b stripe | b < 32 px | det J | folds | "
                        "organs >= 30 % |")
    # an untrained G's fields are zero: no realism figures to give
    assert report["realism"]["bias_slices"] == 0 and report["realism"]["jacobian_min"] is None
    assert "| 0.000 | n/a | n/a | n/a | 0.00 % | 0/2 |" in lines[4]
    assert lines[2].startswith("| U-Net, clean |") and lines[3].startswith("| 30 % decrease |")
    assert len(lines) == 6 and "0/2" in lines[4]
