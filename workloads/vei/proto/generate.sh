#!/usr/bin/env bash
# Regenerates the committed Python stubs from vei.proto. tests/test_proto_stubs.py fails when they
# are stale, so run this after every change to the .proto.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
cd "$root"
export PATH="$(dirname "$py"):$PATH"
"$py" -m grpc_tools.protoc -I . \
  --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. \
  workloads/vei/proto/vei.proto
