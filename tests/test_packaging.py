"""Packaging checks: core modules stay GUI-free, the napari manifest and the
console script are wired up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG_DIR = REPO / "napari_advseg"
PKG = "napari_advseg"

# Top-level modules a core module must never pull in.
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui")

# napari-facing modules, allowed to import the GUI stack.
GUI_SUBPACKAGES = {"widgets", "_napari"}


def _is_gui_path(rel: Path) -> bool:
    return bool(rel.parts) and rel.parts[0] in GUI_SUBPACKAGES


def core_modules() -> list[str]:
    """Every importable module under napari_advseg/ except the GUI ones."""
    names = []
    for path in sorted(PKG_DIR.rglob("*.py")):
        rel = path.relative_to(PKG_DIR)
        if "__pycache__" in rel.parts or _is_gui_path(rel):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__main__":
            continue  # running it would execute the command line
        if parts[-1] == "__init__":
            parts = parts[:-1]
        # only directories that are packages
        if not all((PKG_DIR.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(len(parts))):
            continue
        names.append(".".join([PKG, *parts]))
    return names


_PROBE = r"""
import importlib, json, sys
gui = tuple(sys.argv[1].split(","))
def loaded():
    return {m.split(".")[0] for m in sys.modules if m.split(".")[0] in gui}
before = loaded()
report = {"preloaded": sorted(before), "pulled": {}, "errors": {}}
for name in sys.argv[2:]:
    seen = loaded()
    try:
        importlib.import_module(name)
    except BaseException as exc:
        import traceback
        report["errors"][name] = "".join(traceback.format_exception(exc))
    new = loaded() - seen
    if new:
        report["pulled"][name] = sorted(new)
print("@@REPORT@@" + json.dumps(report))
"""


def test_core_modules_found():
    mods = core_modules()
    assert PKG in mods
    assert all(".widgets" not in m and "._napari" not in m for m in mods)
    # every concept folder of the core is checked
    for sub in ("io", "data", "models", "attack", "evaluation"):
        assert f"{PKG}.{sub}" in mods


def test_core_modules_do_not_import_gui():
    """Core modules need only numpy/torch/nibabel: importing them (in a fresh
    interpreter) must not load Qt, napari or magicgui."""
    mods = core_modules()
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(GUI_MODULES), *mods],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@REPORT@@"))
    report = json.loads(line[len("@@REPORT@@"):])
    assert not report["preloaded"], f"GUI modules loaded before any import: {report['preloaded']}"
    assert not report["errors"], "core modules failed to import:\n" + "\n".join(
        f"--- {k}\n{v}" for k, v in report["errors"].items()
    )
    assert not report["pulled"], (
        "core modules import GUI packages (module -> first GUI packages it loaded): "
        f"{report['pulled']}"
    )


def test_napari_manifest_has_one_source():
    """The manifest lives at the top of the repository; the package's copy is a link to it."""
    top, packaged = REPO / "napari.yaml", PKG_DIR / "napari.yaml"
    assert top.is_file() and not top.is_symlink()
    assert packaged.is_symlink() and packaged.resolve() == top.resolve()


def _npe2_plugins(env: dict, cwd: Path, *python_args: str) -> dict:
    proc = subprocess.run([sys.executable, *python_args, "-m", "npe2", "list", "--format", "json"],
                          capture_output=True, text=True, timeout=240, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {entry["name"]: entry for entry in json.loads(proc.stdout)}


@pytest.mark.slow
def test_editable_install_and_built_wheel_expose_the_manifest_to_npe2(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The development (editable) install.
    plugins = _npe2_plugins(env, REPO)
    assert "napari-advseg" in plugins
    assert plugins["napari-advseg"]["npe2"] is True

    # A wheel built from this tree, installed into a folder of its own and run without the editable
    # install's path hook (python -S skips .pth files): npe2 must find the plugin in the wheel alone.
    import shutil

    # Build from a copy of the source alone: a build/ folder left in the checkout could carry stale modules.
    source, wheels, target = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=600, cwd=tmp_path)
    wheel = next(wheels.glob("napari_advseg-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    assert (target / PKG / "napari.yaml").read_bytes() == (REPO / "napari.yaml").read_bytes()
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join([str(target), site])
    probe = ("import napari_advseg; from napari_advseg.data.samples import SAMPLE_FILES, sample_file; "
             "print(napari_advseg.__file__); [print(sample_file(kind)) for kind in SAMPLE_FILES]")
    where = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, timeout=120,
                           env=env, cwd=tmp_path)
    lines = where.stdout.split()
    assert where.returncode == 0 and len(lines) == 5, where.stdout + where.stderr
    # the package and its shipped sample (CT, labels, U-Net, generator) come from the wheel
    assert all(line.startswith(str(target)) for line in lines), lines
    plugins = _npe2_plugins(env, tmp_path, "-S")  # not from the repository: cwd is on sys.path
    assert "napari-advseg" in plugins
    assert plugins["napari-advseg"]["npe2"] is True


def test_napari_manifest():
    yaml = pytest.importorskip("yaml")
    manifest = PKG_DIR / "napari.yaml"
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert data["name"] == "napari-advseg"
    assert "contributions" in data


def test_napari_manifest_valid_and_installed():
    """npe2 accepts the manifest and finds it through the entry point."""
    npe2 = pytest.importorskip("npe2")
    from importlib import metadata

    import napari_advseg

    manifest = npe2.PluginManifest.from_file(PKG_DIR / "napari.yaml")
    assert manifest.name == "napari-advseg"

    try:
        dist_version = metadata.version("napari-advseg")
    except metadata.PackageNotFoundError:
        pytest.skip("napari-advseg is not installed (run scripts/setup.sh)")
    assert dist_version == napari_advseg.__version__
    eps = metadata.entry_points(group="napari.manifest")
    assert any(ep.name == "napari-advseg" and ep.value == "napari_advseg:napari.yaml" for ep in eps)


def test_cli_help():
    if not (PKG_DIR / "cli" / "__init__.py").exists():
        pytest.skip("napari_advseg/cli/ is not written yet")
    script = Path(sys.executable).with_name("advseg")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "import sys; from napari_advseg.cli import main; sys.exit(main())"]
    proc = subprocess.run(cmd + ["--help"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()
