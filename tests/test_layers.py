"""The package's layers read top-down: a module imports only from its own layer or below.

Every import statement of every module under napari_advseg/ is read with
``ast`` (function-level imports included, relative imports resolved), and an
import that points to a higher layer fails the test, naming the file and the
import. The faces (command line, widgets, napari entry points) form the top
layer: they may import anything, and no core module may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG_DIR = REPO / "napari_advseg"
PKG = "napari_advseg"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors", "device", "organs", "seeding"),
    ("io",),
    ("data",),
    ("models",),
    ("attack",),
    ("evaluation",),
    ("defense",),
    ("workflows",),
    ("cli", "widgets", "_napari"),
)
"""Bottom to top: the first part of a module's name below ``napari_advseg`` ("" for the package itself)."""

FACES = len(LAYERS) - 1

def layer_of(module: str) -> int:
    """The layer of a dotted module name inside the package."""
    parts = module.split(".")
    assert parts[0] == PKG, module
    head = parts[1] if len(parts) > 1 else ""
    for rank, names in enumerate(LAYERS):
        if head in names:
            return rank
    raise AssertionError(f"{module}: no layer for {head!r}; add it to LAYERS in tests/test_layers.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    """Whether a dotted name inside the package is a module or package (not a name defined in one)."""
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every package module that ``path`` (the module ``name``) imports, at any depth."""
    name = module_name(path) if name is None else name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # ``from pkg import submodule`` imports the submodule
                full = f"{source}.{alias.name}"
                found.append((node.lineno, full if source.startswith(PKG) and _is_module(full) else source))
    return [(line, mod) for line, mod in found if mod == PKG or mod.startswith(PKG + ".")]


def package_files() -> list[Path]:
    return sorted(p for p in PKG_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    files = package_files()
    assert len(files) > 50
    for path in files:
        layer_of(module_name(path))
    for sub in ("io", "data", "models", "attack", "evaluation", "defense", "widgets", "_napari"):
        assert (PKG_DIR / sub / "__init__.py").is_file(), sub


def test_the_import_finder_sees_every_kind_of_import(tmp_path):
    """Function-level, relative and ``from package import module`` imports are all found."""
    probe = tmp_path / "probe.py"
    probe.write_text("import napari_advseg.io.atomic\n"
                     "from napari_advseg import workflows\n"
                     "def late():\n"
                     "    from ..evaluation import metrics\n"
                     "    from .fields import apply_fields\n", encoding="utf-8")
    found = [mod for _, mod in imported_modules(probe, f"{PKG}.attack.probe")]
    assert found == ["napari_advseg.io.atomic", "napari_advseg.workflows", "napari_advseg.evaluation.metrics",
                     "napari_advseg.attack.fields"]


def test_imports_point_down_only():
    """No module imports from a layer above its own; the core never imports a face."""
    wrong = []
    for path in package_files():
        own = layer_of(module_name(path))
        for line, mod in sorted(set(imported_modules(path))):
            if layer_of(mod) > own:
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {mod} "
                             f"(layer {LAYERS[layer_of(mod)][0] or PKG} above {LAYERS[own][0] or PKG})")
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_the_core_never_imports_a_face():
    wrong = [f"{path.relative_to(REPO)}:{line} imports {mod}"
             for path in package_files() if layer_of(module_name(path)) < FACES
             for line, mod in imported_modules(path) if layer_of(mod) == FACES]
    assert not wrong, "core modules that import a face:\n" + "\n".join(wrong)

