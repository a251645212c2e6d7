#!/usr/bin/env bash
# Set up (idempotent), lint (ruff), type-check (mypy) and run the whole test suite, slow end-to-end tests included.
#   scripts/test.sh [PYTEST ARGS...]     e.g. scripts/test.sh -m "not slow" for the fast subset
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 YOLO_OFFLINE=1 HF_HUB_OFFLINE=1
if [ $# -eq 0 ]; then  # the whole suite (CI): lint and types first (config in pyproject.toml)
  .venv/bin/ruff check .
  .venv/bin/mypy
fi
exec .venv/bin/python -m pytest -q -rfEs --durations=15 "$@"
