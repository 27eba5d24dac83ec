#!/usr/bin/env bash
# The whole test suite: installs what it needs, then lint (ruff), type check (mypy), and pytest.
# Extra arguments go to pytest, e.g.  tests/run.sh -k gateway -x
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
experiments/bootstrap.sh --dev
export PATH="$root/.venv/bin:$PATH"
echo "== ruff" && ruff check .
echo "== mypy" && mypy
echo "== pytest" && pytest -q -p no:cacheprovider "$@"
