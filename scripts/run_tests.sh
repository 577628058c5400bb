#!/usr/bin/env bash
# Run the whole test suite (creates .venv on first use). Extra args go to pytest.
source "$(dirname "$0")/_env.sh"
ruff check pytorch_hmm tests benchmarks examples
python -m pytest -q "$@"
