"""The `advseg` parser: help and argument errors come from modules that load no torch, napari or matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "napari", "matplotlib", "nibabel", "pydicom", "qtpy")

_PROBE = """
import contextlib, io, json, sys
from napari_advseg.cli import main
from napari_advseg.cli.parser import build_parser

build_parser()
codes = []
for argv in {argvs!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
            codes.append(None)
        except SystemExit as exit:
            codes.append(exit.code)
print(json.dumps({{"codes": codes, "loaded": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def _probe(argvs: list[list[str]]) -> dict:
    code = _PROBE.format(argvs=argvs, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_and_argument_errors_load_no_heavy_module():
    helps = [["--help"], *([command, "--help"] for command in (
        "train-target", "train", "evaluate", "sweep", "sample", "curve", "harden", "robustness", "make-sample"))]
    errors = [["train", "--gamma", "strong"], ["nope"], ["sample"], ["sweep", "--gammas", "a,b"]]
    report = _probe(helps + errors)
    assert report["codes"] == [0] * len(helps) + [2] * len(errors)
    assert report["loaded"] == []


def test_the_cli_modules_import_no_heavy_module():
    code = ("import sys, napari_advseg.cli.parser, napari_advseg.cli.common, napari_advseg.attack.config, "
            "napari_advseg.defense.config, napari_advseg.data.sample_recipe; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
