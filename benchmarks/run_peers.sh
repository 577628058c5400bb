#!/usr/bin/env bash
# Reproduce benchmarks/results/peers.{json,md}: build (or reuse) .venv-peers at the repository
# root with pytorch_hmm and every peer library pinned, then run benchmarks/compare_peers.py.
#
#   bash benchmarks/run_peers.sh [compare_peers.py options, e.g. --quick --only dtw]
#
# torch comes first, alone (torch==2.13.0, the CPU wheel), so that no later step pulls
# another torch build; then the package with its extras and the peers, under
# requirements/constraints.txt (the versions of the library's own environment) and
# requirements/peers.txt (the peers, and the dependencies constraints.txt does not pin).
# A stamp file records a hash of those inputs: a second run installs nothing.
# PYTHON=python3.11 picks the interpreter that creates the venv (default: python3).
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu fetches torch from that index (where
# the configured one serves a CUDA build of torch==2.13.0, as PyPI does on Linux).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-peers"
STAMP="$VENV/.peers-installed"
TORCH_PIN="torch==2.13.0"

inputs_hash() {
    { echo "$TORCH_PIN"; cat requirements/constraints.txt requirements/peers.txt pyproject.toml; } \
        | sha256sum | cut -d' ' -f1
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "run_peers: creating $VENV" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
fi
HASH="$(inputs_hash)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$HASH" ]; then
    echo "run_peers: installing into $VENV" >&2
    "$VENV/bin/python" -m pip install --upgrade-strategy only-if-needed \
        ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_PIN"
    "$VENV/bin/python" -m pip install \
        "$TORCH_PIN" \
        -c requirements/constraints.txt \
        -e ".[all,dev]" \
        -r requirements/peers.txt
    "$VENV/bin/python" -c "import torch, sys; v = torch.__version__; \
sys.exit(0 if v.startswith('2.13.0') and torch.version.cuda is None else 'torch ' + v)"
    echo "$HASH" > "$STAMP"
else
    echo "run_peers: $VENV up to date (stamp $STAMP)" >&2
fi

exec "$VENV/bin/python" benchmarks/compare_peers.py "$@"
