"""The issue-4 harness in --quick mode, end to end, so it cannot rot (the full run is not part of CI)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The harness runs in a child process. Alone on 2 idle cores it takes about 15 s, but its torch threads
# spin-wait: while other processes load the cores, two threads ran 5.5x slower than on an idle machine
# and one thread 2.7x (4 busy loops beside it), and under parallel test suites the two-thread run passed
# the suite's 300 s per-test limit. One thread, and a limit of its own above the child's, keep a busy
# machine from failing what is a correctness test.
HARNESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    work = tmp_path_factory.mktemp("work")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "attack_benchmark.py"), "--quick",
                           "--results", str(results), "--work", str(work)],
                          capture_output=True, text=True, timeout=800, cwd=ROOT, env=HARNESS_ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return results, work, done.stdout


def test_quick_harness_writes_table1_beside_the_paper(quick_run):
    results, _, _ = quick_run
    sweep = json.loads((results / "tiny_sweep.json").read_text())
    assert sweep["command"].startswith("advseg sweep ")
    labels = [row["row"] for row in sweep["rows"]]
    assert labels == ["gamma 0.5", "gamma 3", "phi only (gamma 3)", "b only (gamma 3)"]
    for row in sweep["rows"]:
        assert math.isfinite(row["rho"]) and row["rho"] > 0
        assert row["fold_fraction"] < 0.05  # smooth fields: hardly any folding pixels
        assert row["train_seconds"] > 0 and row["split"] == "test"
    table = (results / "tiny_table1.md").read_text()
    assert "| gamma 0.5 |" in table and "| b only (gamma 3) |" in table
    # the table shows the figures the JSON holds (clean Dice of the first row, in %)
    first = sweep["rows"][0]["organs"]
    clean_cells = [f"{100 * first[organ]['dice_clean']:.2f}" for organ in first]
    assert "| U-Net, clean | " + " | ".join(clean_cells) + " |" in table
    target = json.loads((results / "tiny_target.json").read_text())
    assert set(target["test_dice"]) == {"liver", "spleen", "kidney_left", "kidney_right", "pancreas"}


def test_quick_harness_trains_for_a_smaller_rho(quick_run):
    results, work, _ = quick_run
    low = json.loads((results / "tiny_low_rho.json").read_text())
    assert [row["row"] for row in low["rows"]] == ["gamma 3, lambda_rho 80", "gamma 3, rho_max 0.06"]
    assert low["rows"][0]["split"] == "test"
    assert low["rows"][1]["rho"] <= 0.06 * 1.01  # the budget holds on the test slices
    assert low["commands"][0].startswith("advseg train ") and "--lambda-rho 80" in low["commands"][0]
    assert (work / "tiny" / "low_rho" / "lambda_rho_80" / "generator.pt").is_file()
    assert low["commands"][2].startswith("advseg train ") and "--rho-max 0.06" in low["commands"][2]
    summary = (results / "summary_quick.md").read_text()
    for heading in ("Table 1 on `tiny`", "Peers at matched rho on `tiny`", "Smaller rho on `tiny`",
                    "`tiny`: training speed", "`advseg sample` memory"):
        assert heading in summary


def test_quick_harness_compares_every_peer_at_matched_rho(quick_run):
    results, _, _ = quick_run
    peers = json.loads((results / "tiny_peers.json").read_text())
    entries = peers["entries"]
    assert entries[0]["method"] == "generator (its own rho)" and entries[0]["rho_level"] is None
    methods = {"generator", "random fields", "optimised fields, 1 step", "optimised fields, 2 steps", "PGD-L2",
               "SegPGD"}
    for level in (0.02, 0.06):
        at_level = {e["method"]: e for e in entries if e["rho_level"] == level}
        assert set(at_level) == methods | ({"generator trained at rho_max 0.06"} if level == 0.06 else set())
        for method, entry in at_level.items():
            # every method really is at the requested perceptibility
            assert entry["rho"] == pytest.approx(level, rel=0.03), method
            assert entry["seconds_per_slice"] > 0
            assert entry["time_ratio_to_generator"] == pytest.approx(
                entry["seconds_per_slice"] / at_level["generator"]["seconds_per_slice"])
        assert at_level["generator"]["time_ratio_to_generator"] == pytest.approx(1.0)
    budget = [e for e in entries if e["method"] == "generator trained at rho_max 0.06"]
    assert len(budget) == 1 and budget[0]["rho_level"] == 0.06
    assert budget[0]["rho"] == pytest.approx(0.06, rel=0.03)
    markdown = (results / "tiny_peers.md").read_text()
    assert "| 0.06 | SegPGD |" in markdown
    png = (results / "peers_quick.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_quick_harness_measures_speed_and_memory(quick_run):
    results, _, _ = quick_run
    speed = json.loads((results / "tiny_speed.json").read_text())
    assert speed["steps_per_second"] > 0
    assert speed["curve"] and speed["curve"][0]["step"] == 2
    assert all(b["train_seconds"] > a["train_seconds"] for a, b in zip(speed["curve"], speed["curve"][1:]))
    assert speed["curve_at_goal_rho"]
    assert all(p["rho"] <= speed["goal_rho"] * 1.01 for p in speed["curve_at_goal_rho"])
    memory = json.loads((results / "memory_quick.json").read_text())
    assert memory["exit_status"] == 0
    assert 0.1 < memory["peak_rss_gib"] < 8


def test_quick_harness_resumes_without_redoing_stages(quick_run):
    results, work, _ = quick_run
    before = (results / "tiny_sweep.json").stat().st_mtime_ns
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "attack_benchmark.py"), "--quick",
                           "--results", str(results), "--work", str(work), "--stages", "sweep"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=HARNESS_ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "$ advseg sweep" not in done.stdout
    assert (results / "tiny_sweep.json").stat().st_mtime_ns == before
