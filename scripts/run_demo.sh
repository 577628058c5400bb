#!/usr/bin/env bash
# The main job: a demo on the bundled real speech in data/ (creates .venv on first use).
source "$(dirname "$0")/_env.sh"
python examples/demo.py "$@"
