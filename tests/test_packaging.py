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


def _npe2_plugins(env: dict, cwd: Path, *python_args: str, python: str = sys.executable) -> dict:
    proc = subprocess.run([python, *python_args, "-m", "npe2", "list", "--format", "json"],
                          capture_output=True, text=True, timeout=240, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {entry["name"]: entry for entry in json.loads(proc.stdout)}


def _setuptools_table() -> dict:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_every_package_is_listed_and_the_sample_is_mapped():
    """pyproject.toml lists the packages by hand (the sample's mapped folder rules out `packages.find`):
    the list must hold every folder with an ``__init__.py`` and the sample, which lives at the top level only."""
    from napari_advseg.data.samples import SAMPLE_FILES

    table = _setuptools_table()
    on_disk = {".".join(path.parent.relative_to(REPO).parts) for path in PKG_DIR.rglob("__init__.py")
               if "__pycache__" not in path.parts}
    assert set(table["packages"]) == on_disk | {f"{PKG}.sample_data"}
    assert table["package-dir"] == {f"{PKG}.sample_data": "sample_data"}
    for name in SAMPLE_FILES.values():
        assert (REPO / "sample_data" / name).is_file(), name
    assert not (PKG_DIR / "sample_data").exists(), "the sample has one home: the repository's sample_data/"


def _copy_source(dest: Path) -> Path:
    """This tree without VCS data, environments or build leftovers (a build/ folder could carry stale modules)."""
    import shutil

    shutil.copytree(REPO, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache"))
    return dest


# Prints where the package and each shipped sample file are found, one path a line.
_WHERE = ("import napari_advseg; from napari_advseg.data.samples import SAMPLE_FILES, sample_file; "
          "print(napari_advseg.__file__); [print(sample_file(kind)) for kind in SAMPLE_FILES]")


def _assert_found_in(stdout: str, package_dir: Path, sample_dir: Path) -> None:
    """The package comes from ``package_dir`` and each sample file from ``sample_dir``, same bytes as ours."""
    import filecmp

    from napari_advseg.data.samples import SAMPLE_FILES

    lines = stdout.split()
    assert len(lines) == 1 + len(SAMPLE_FILES), stdout
    assert Path(lines[0]) == package_dir / "__init__.py", lines[0]
    for line, name in zip(lines[1:], SAMPLE_FILES.values()):
        assert Path(line) == sample_dir / name, line
        assert filecmp.cmp(line, REPO / "sample_data" / name, shallow=False), name


def test_built_wheel_carries_the_sample_and_the_manifest(tmp_path):
    """A wheel built from this tree, installed into a folder of its own and run without the editable
    install's path hook (python -S skips .pth files): the package, its sample files and npe2's view of
    the plugin all come from the wheel alone."""
    import os
    import sysconfig

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    source, wheels, target = _copy_source(tmp_path / "source"), tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=600, cwd=tmp_path)
    wheel = next(wheels.glob("napari_advseg-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    assert (target / PKG / "napari.yaml").read_bytes() == (REPO / "napari.yaml").read_bytes()
    assert not (target / "sample_data").exists()   # inside the package, not beside it

    env["PYTHONPATH"] = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    where = subprocess.run([sys.executable, "-S", "-c", _WHERE], capture_output=True, text=True, timeout=120,
                           env=env, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    _assert_found_in(where.stdout, target / PKG, target / PKG / "sample_data")
    plugins = _npe2_plugins(env, tmp_path, "-S")  # not from the repository: cwd is on sys.path
    assert "napari-advseg" in plugins
    assert plugins["napari-advseg"]["npe2"] is True


def test_editable_install_finds_the_top_level_sample_and_the_manifest(tmp_path):
    """``pip install -e`` of a copy of this tree into a fresh virtual environment, run from another folder:
    the package comes from the copy's napari_advseg/ and the sample from the copy's top-level sample_data/.

    The fresh environment has no pip or setuptools of its own: a ``.pth`` line puts this interpreter's
    site-packages after its own (a plain path: the editable hook of the development install is not run).
    """
    import os
    import sysconfig

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The development install (editable, from this checkout or the one whose venv runs the suite).
    plugins = _npe2_plugins(env, REPO)
    assert plugins["napari-advseg"]["npe2"] is True

    source, venv, elsewhere = _copy_source(tmp_path / "source"), tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, timeout=60, env=env).stdout.strip()
    (Path(site) / "_outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "--no-input", "install", "-q",
                              "--no-deps", "--no-build-isolation", "-e", str(source)],
                             capture_output=True, text=True, timeout=600, env=env, cwd=elsewhere)
    assert install.returncode == 0, install.stderr[-2000:]

    where = subprocess.run([python, "-c", _WHERE], capture_output=True, text=True, timeout=120, env=env,
                           cwd=elsewhere)
    assert where.returncode == 0, where.stderr
    _assert_found_in(where.stdout, source / PKG, source / "sample_data")
    plugins = _npe2_plugins(env, elsewhere, python=python)
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
