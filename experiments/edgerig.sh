#!/usr/bin/env bash
# Runs the edgerig CLI from a fresh checkout: creates .venv with the pinned dependencies on first use
# (or when pyproject.toml changed), then hands all arguments to `edgerig`.
#   ./experiments/edgerig.sh run latency
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/experiments/bootstrap.sh"
exec "$root/.venv/bin/edgerig" "$@"
