# Sourced by the run_*.sh scripts: create (or reuse) .venv and install pinned dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PYTORCH_HMM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.pytorch_hmm_installed"
# TORCH_SPEC: the torch requirement (default the CPU wheel this machine's pip finds locally);
# TORCH_INDEX_URL: where to get it (e.g. https://download.pytorch.org/whl/cpu on a machine
# whose PyPI would give the CUDA build)
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
REQ_HASH="$( { echo "$TORCH_SPEC ${TORCH_INDEX_URL:-}"; cat "$ROOT/pyproject.toml" \
  "$ROOT/requirements/constraints.txt"; } | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$REQ_HASH" ]; then
  # torch first and alone, so nothing later pulls another (multi-GB CUDA) build
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$ROOT/requirements/constraints.txt" -e "$ROOT[all,dev]"
  echo "$REQ_HASH" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
