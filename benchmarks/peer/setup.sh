#!/usr/bin/env bash
# Create (or reuse) the peer-comparison venv: IBM ART 1.20.1 next to miaudit, OUTSIDE the repo
# and apart from miaudit's own .venv, so the benchmark dependency never changes miaudit's
# environment. Idempotent: a venv that already imports ART 1.20.1 and miaudit is left alone.
#
#   bash benchmarks/peer/setup.sh            # venv at $MIAUDIT_PEER_VENV (default /tmp/miaudit-peer-venv)
#
# ART 1.20.1 imports `packaging` without declaring it, so it is installed explicitly.
# Every pip call is constrained by the repository's constraints.txt (torch==2.13.0, the CPU
# build: never a CUDA torch from the registry).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MIAUDIT_PEER_VENV:-/tmp/miaudit-peer-venv}"
PY="${PYTHON:-python3.11}"
ART_VERSION="1.20.1"

check() {
    "$VENV/bin/python" - "$ART_VERSION" <<'PY' >/dev/null 2>&1
import sys
import art, miaudit, torch
assert art.__version__ == sys.argv[1], art.__version__
PY
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "peer venv ready: $VENV"
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt")
"${PIP[@]}" "adversarial-robustness-toolbox==$ART_VERSION" "torch==2.13.0" safetensors packaging
# miaudit itself, editable from this checkout, with its runtime dependencies (no extras).
"${PIP[@]}" -e "$ROOT"
check || { echo "peer venv at $VENV does not import art==$ART_VERSION, miaudit and torch" >&2; exit 1; }
echo "peer venv ready: $VENV"
