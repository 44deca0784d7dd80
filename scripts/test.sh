#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the test suite on a virtual screen.
#
#   scripts/test.sh                   every test not marked slow (what CI runs, through .ci/run)
#   scripts/test.sh --all             every test, the slow ones too
#   scripts/test.sh -m slow           only the slow ones (any -m expression replaces the default filter)
#   scripts/test.sh tests/test_x.py   other arguments go to pytest (default: -q -ra), still without slow
#
# Tests marked slow (@pytest.mark.slow) are the long training runs; the rest keep the suite to a few
# minutes on two cores. The exit code is pytest's, so "no tests collected" (5) fails like any other error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

all=0
marker=0
args=()
for arg in "$@"; do
    case "$arg" in
        --all) all=1 ;;
        -m* | --markexpr | --markexpr=*) marker=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done
if ((${#args[@]} == 0)); then
    args=(-q -ra)
fi
if ((all == 0 && marker == 0)); then
    args=(-m "not slow" "${args[@]}")
fi

bash scripts/setup.sh

export MPLBACKEND=Agg

if command -v xvfb-run >/dev/null 2>&1; then
    exec xvfb-run -a -s "-screen 0 1400x1000x24" .venv/bin/python -m pytest "${args[@]}"
fi

echo "[test] xvfb-run not found: running with QT_QPA_PLATFORM=offscreen" \
     "(GUI tests may fail or skip; run scripts/setup.sh as root to get Xvfb)" >&2
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "${args[@]}"
