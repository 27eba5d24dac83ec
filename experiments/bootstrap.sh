#!/usr/bin/env bash
# Creates/updates the project virtualenv (.venv) with the pinned dependencies.
#   experiments/bootstrap.sh          runtime dependencies
#   experiments/bootstrap.sh --dev    plus test, lint and type-check tools, and (as root) the Debian
#                                     packages the tests use: mosquitto, debootstrap, iproute2, ...
# Re-running is cheap: it does nothing when pyproject.toml has not changed since the last install.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1
python=${PYTHON:-python3}

if (( dev )) && [[ $(id -u) == 0 ]]; then
  # Debian packages the test suite runs for real (broker, test-host tooling, a headless browser for the
  # campaign report). Installed only when missing.
  want=(mosquitto debootstrap iproute2 openssh-client procps psmisc iptables openssl chromium)
  missing=()
  for p in "${want[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # the broker is started by the tests on a loopback port, not as a system service
    systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
fi

hash=$(sha256sum pyproject.toml | cut -c1-64)
installed() { [[ -x .venv/bin/python && -f .venv/.installed-$1 && $(cat ".venv/.installed-$1") == "$hash" ]]; }
if installed dev || { (( ! dev )) && installed run; }; then
  exit 0
fi
echo "bootstrap: installing Python dependencies into .venv (first run takes a few minutes)" >&2
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "pip==26.3"
if (( dev )); then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$hash" > .venv/.installed-dev
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
  echo "$hash" > .venv/.installed-run
fi
