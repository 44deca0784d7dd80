#!/usr/bin/env bash
# Set up everything napari-advseg needs, idempotently:
#   (a) Debian packages for napari/Qt on a virtual screen (Xvfb, xcb, Mesa GL),
#       installed only when missing (root, or sudo without a password);
#   (b) a virtual environment in .venv at the project root;
#   (c) torch==2.13.0 first (a CPU build), then this project, editable, with
#       its [testing] extra (pytest, pytest-qt, napari[pyqt5], MONAI and what
#       nnU-Net's predictor imports), then nnunetv2 and
#       dynamic-network-architectures without their dependencies: they pull
#       timm and torchvision, and torchvision's wheels are CUDA builds whose
#       native library does not load beside the CPU torch.
# A re-run with nothing changed only checks and returns.
#
# Environment:
#   PYTHON=python3          interpreter used to create .venv
#   ADVSEG_FORCE_SETUP=1    redo the pip step even if it looks up to date
#   ADVSEG_SKIP_APT=1       never touch system packages
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }

TORCH_PIN="torch==2.13.0"
# Installed with --no-deps: their own dependencies minus timm/torchvision are in [testing].
NO_DEPS_PACKAGES=("dynamic-network-architectures>=0.4.4,<0.5" "nnunetv2>=2.5,<3")
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.napari-advseg-setup"

# ---------------------------------------------------------------- (a) system
APT_PACKAGES=(
    xvfb xauth
    libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-randr0
    libxcb-render-util0 libxcb-image0 libxcb-shape0 libxcb-xkb1
    libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
    # OpenGL for napari's vispy canvas: libgl1/libegl1 are only the GLVND
    # dispatchers; the Mesa packages provide the software (llvmpipe) driver.
    libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libegl-mesa0
)

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_system_packages() {
    if [[ "${ADVSEG_SKIP_APT:-0}" == 1 ]]; then
        log "ADVSEG_SKIP_APT=1: not checking system packages"
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        log "no dpkg/apt-get (not Debian?): skipping system packages;" \
            "install Xvfb, xcb and Mesa GL libraries yourself for the GUI tests"
        return 0
    fi
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            log "missing system packages: ${missing[*]}"
            log "not root and no password-less sudo: skipping them" \
                "(GUI tests need them; ask an administrator to apt-get install them)"
            return 0
        fi
    fi
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ------------------------------------------------------------------ (b) venv
create_venv() {
    if [[ -x "$PY" ]] && "$PY" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    local base="${PYTHON:-python3}"
    if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        log "$base is missing or older than Python 3.11; set PYTHON=/path/to/python3.11"
        exit 1
    fi
    log "creating $VENV with $("$base" --version 2>&1)"
    rm -rf "$VENV"
    "$base" -m venv "$VENV"
}

# ------------------------------------------------------------------- (c) pip
# What the pip step depends on: if none of it changed since the last good
# run, and the installed project still imports, there is nothing to do.
# Only the install-relevant tables of pyproject.toml count, so editing the
# pytest settings does not trigger a reinstall.
fingerprint() {
    {
        echo "$TORCH_PIN"
        echo "${NO_DEPS_PACKAGES[*]}"
        "$PY" - <<'PYFP'
import json, sys, tomllib
with open("pyproject.toml", "rb") as f:
    cfg = tomllib.load(f)
tool = cfg.get("tool", {})
print(sys.version)
print(json.dumps([cfg.get("build-system"), cfg.get("project"), tool.get("setuptools")], sort_keys=True))
PYFP
    } | sha256sum | cut -d' ' -f1
}

up_to_date() {
    [[ "${ADVSEG_FORCE_SETUP:-0}" != 1 ]] || return 1
    [[ -f "$STAMP" ]] || return 1
    [[ "$(cat "$STAMP")" == "$(fingerprint)" ]] || return 1
    "$PY" - <<'PYCHECK' >/dev/null 2>&1
import importlib.metadata as md
assert md.version("torch").startswith("2.13.0")
md.version("napari-advseg"); md.version("napari"); md.version("pytest-qt")
md.version("nnunetv2"); md.version("dynamic-network-architectures"); md.version("monai")
import napari_advseg
PYCHECK
}

pip_install() {
    if up_to_date; then
        log "Python environment up to date ($("$PY" -c 'import torch, napari; print("torch", torch.__version__, "napari", napari.__version__)' 2>/dev/null || echo "?"))"
        return 0
    fi
    local pip=("$PY" -m pip --disable-pip-version-check --no-input)
    # torch first, pinned: its CPU build lies on this machine's disk. Left to
    # resolve `torch>=2.2` by itself, pip would fetch a multi-GB CUDA build.
    log "installing $TORCH_PIN"
    "${pip[@]}" install -q "$TORCH_PIN"
    log "installing napari-advseg (editable) with [testing]; the first time takes a few minutes"
    "${pip[@]}" install -q -c <(echo "$TORCH_PIN") -e ".[testing]"
    log "installing ${NO_DEPS_PACKAGES[*]} without their dependencies (no timm, no torchvision)"
    "${pip[@]}" install -q --no-deps "${NO_DEPS_PACKAGES[@]}"
    fingerprint >"$STAMP"
    log "done: $("$PY" -c 'import torch, napari; print("torch", torch.__version__, "napari", napari.__version__)')"
}

install_system_packages
create_venv
pip_install
