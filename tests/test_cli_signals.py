"""SIGTERM and SIGINT stop a background `advseg train` after a step, save the generator and exit 143 / 130.

The child ignores SIGINT as a job started in the background by a non-interactive shell does; the command
must handle it anyway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from napari_advseg.attack.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_background_training_and_saves(signum, status, tiny_files, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, "-m", "napari_advseg.cli", "train", "--ct", tiny_files["ct"], "--labels",
               tiny_files["labels"], "--target", tiny_files["target"], "--steps", "100000", "--batch-size", "2",
               "--critic-steps", "1", "--checkpoint-every", "1", "--device", "cpu", "--threads", "1", "--quiet",
               "--out", out]
    child = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, start_new_session=True, preexec_fn=_ignore_sigint)
    try:
        deadline = time.monotonic() + 240
        while not (out / "generator.pt").is_file():  # the first step is done and saved
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no step within the time allowed"
            time.sleep(0.2)
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == status, stderr
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("stopped at step ") and f"saved {out / 'generator.pt'}" in last, stdout
    checkpoint = load_checkpoint(out / "generator.pt")
    assert checkpoint["step"] > 0
    assert int(last.split()[3].rstrip(",")) == checkpoint["step"]
