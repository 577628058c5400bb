# Sourced by the run_*.sh scripts: create (or reuse) .venv and install pinned dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PYTORCH_HMM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.pytorch_hmm_installed"
REQ_HASH="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$REQ_HASH" ]; then
  # CPU torch from the local wheel first, so nothing pulls a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$ROOT/requirements/constraints.txt" -e "$ROOT[all,dev]"
  echo "$REQ_HASH" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
