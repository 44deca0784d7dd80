#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the project's main job: for now the
# headless evaluation `advseg evaluate`. Extra arguments go to it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

exec .venv/bin/advseg evaluate "$@"
