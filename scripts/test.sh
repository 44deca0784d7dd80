#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the test suite on a virtual screen.
# Extra arguments go to pytest (default: -q -ra). The exit code is pytest's,
# so "no tests collected" (5) fails like any other error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

if (($# == 0)); then
    set -- -q -ra
fi

export MPLBACKEND=Agg

if command -v xvfb-run >/dev/null 2>&1; then
    exec xvfb-run -a -s "-screen 0 1400x1000x24" .venv/bin/python -m pytest "$@"
fi

echo "[test] xvfb-run not found: running with QT_QPA_PLATFORM=offscreen" \
     "(GUI tests may fail or skip; run scripts/setup.sh as root to get Xvfb)" >&2
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
