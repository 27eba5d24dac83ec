#!/usr/bin/env bash
# Creates/updates the project virtualenv (.venv) from the one lock file, requirements.lock (every
# package pinned with its PyPI hashes; `edgerig images lock` regenerates it from pyproject.toml).
#   experiments/bootstrap.sh          the virtualenv
#   experiments/bootstrap.sh --dev    the same, and (as root) the Debian packages the tests use:
#                                     mosquitto, debootstrap, iproute2, nftables, buildah, podman, qemu-user-static...
# Re-running is cheap: it does nothing when requirements.lock and pyproject.toml have not changed.
# pip's output goes to .venv/bootstrap.log; it is shown only when the install fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1
python=${PYTHON:-python3}

if (( dev )) && [[ $(id -u) == 0 ]]; then
  # Debian packages the test suite runs for real (broker, test-host tooling, image build and run, a
  # headless browser for the campaign report, Prometheus for the resources experiment's stack path).
  # Installed only when missing.
  want=(mosquitto debootstrap iproute2 openssh-client procps psmisc iptables nftables openssl chromium
        buildah podman runc skopeo containerd docker-registry qemu-user-static binfmt-support git
        prometheus)
  missing=()
  for p in "${want[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # the broker and Prometheus are started by the tests on loopback ports, not as system services
    systemctl disable --now mosquitto prometheus >/dev/null 2>&1 || true
  fi
  # arm64 images are built and run here through qemu-user: register it with binfmt_misc.
  if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  fi
  if [[ -e /proc/sys/fs/binfmt_misc/status ]] && ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || echo "bootstrap: could not enable qemu-aarch64 (arm64 image tests will fail)" >&2
  fi
fi

hash=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-64)
if [[ -x .venv/bin/python && -f .venv/.installed && $(cat .venv/.installed) == "$hash" ]]; then
  exit 0
fi
echo "bootstrap: installing Python dependencies into .venv from requirements.lock (first run takes a few minutes)" >&2
started=$SECONDS
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
log=.venv/bootstrap.log
pip=(.venv/bin/python -m pip --disable-pip-version-check --no-input)
# The lock holds pip and setuptools too, so even the build backend of the editable install is hashed.
# `pip check` catches a lock that misses a dependency pyproject.toml names (run `edgerig images lock`).
if ! { "${pip[@]}" install --require-hashes --no-deps -r requirements.lock &&
       "${pip[@]}" install --no-deps --no-build-isolation -e . && "${pip[@]}" check ; } >"$log" 2>&1; then
  # This machine's pip config may add local package folders that do not exist ("Location ... is
  # ignored"): noise, not the failure.
  grep -v "^WARNING: Location '.*' is ignored" "$log" | tail -n 40 >&2
  echo "bootstrap: pip failed; full output in $log" >&2
  exit 1
fi
echo "$hash" > .venv/.installed
echo "bootstrap: done in $(( SECONDS - started )) s" >&2
