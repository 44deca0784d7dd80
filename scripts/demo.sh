#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the main job: napari with the shipped
# sample (phantom CT, its labels, the target U-Net and the trained attack)
# loaded and the "Adversarial attack" dock open, ready to slide latent codes.
# Without a display (no $DISPLAY / $WAYLAND_DISPLAY) it runs the headless
# evaluation instead (`advseg evaluate`, the sample's Table-1 rows) and says so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

if [[ -n "${DISPLAY:-}" || -n "${WAYLAND_DISPLAY:-}" ]]; then
    exec .venv/bin/python -m napari_advseg.widgets.demo "$@"
fi
echo "[demo] no display: running the headless evaluation instead of napari" \
     "(for a picture: xvfb-run -a .venv/bin/python scripts/screenshot.py)" >&2
exec .venv/bin/advseg evaluate "$@"
