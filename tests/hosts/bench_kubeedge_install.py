"""Wall time of the KubeEdge layout's host configuration on the local test fleet (run directly as
root, under both locks; not pytest):

    sudo flock /tmp/edgerig-heavy.lock flock /tmp/edgerig-netns.lock \
        .venv/bin/python tests/hosts/bench_kubeedge_install.py --repeat 3

The layout and its settings are those of tests/hosts/test_kubeedge_fleet.py: a cloud server
configured through Ansible (ansible-runner) and a Pi-like EdgeCore host through pyinfra, air-gapped,
every file from a local HTTP mirror with the GitHub release layout, verified against its pin (keadm
by sha512; the K3s binary and airgap images by sha256; the files are test stand-ins of a few bytes,
because the fleet cannot run the real ones). Each repeat, on one fleet:

- `first`: `api.install` on freshly reset hosts with an empty artefact cache (download, verify,
  render, deliver, every step);
- `second`: the same call again; it must report 0 changes on both hosts;
- then `api.reset`, so the next repeat starts from the pre-install state.

The floor, measured in the same run: one `ssh HOST true` per host (connection set-up, what every tool
pays at least once per host), median of 10.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hosts_support import KUBEEDGE_ROLES, Mirror, air_gapped_kubeedge_testbed

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api


def _ssh_floor(fleet: Any, samples: int = 10) -> dict[str, float]:
    out = {}
    for h in fleet.hosts:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            subprocess.run(
                [
                    "ssh", "-i", str(fleet.key_path), "-o", f"UserKnownHostsFile={fleet.known_hosts}",
                    "-o", "BatchMode=yes", f"root@{h.address}", "true",
                ],
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - start)
        out[h.name] = statistics.median(times)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the test fleet)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgerig-bench-") as tmp:
        work = Path(tmp)
        mirror = Mirror(work / "mirror")
        state = work / "fleet"
        fleet = fleet_mod.up(list(KUBEEDGE_ROLES), {"edge0"}, state_dir=state)
        try:
            testbed = air_gapped_kubeedge_testbed(fleet, mirror)
            floor = _ssh_floor(fleet)
            for i in range(args.repeat):
                kw: dict[str, Any] = {
                    "known_hosts": str(fleet.known_hosts),
                    "artefact_pins": mirror.pins,
                    "artefact_cache": work / f"cache-{i}",
                }
                for phase in ("first", "second"):
                    start = time.perf_counter()
                    result = api.install(testbed, **kw)
                    took = time.perf_counter() - start
                    rows.append({"repeat": i, "phase": phase, "s": took, "changed": result.summary.changed})
                    changed = result.summary.changed
                    print(f"repeat {i} {phase:6s} {took:6.1f} s  changed {changed}", flush=True)
                api.reset(testbed, list(KUBEEDGE_ROLES), known_hosts=str(fleet.known_hosts))
        finally:
            fleet_mod.down(state)
            mirror.close()
    second_changes = [sum(r["changed"].values()) for r in rows if r["phase"] == "second"]
    summary = {
        "load_average_1min_before": load_before,
        "ssh_floor_s": floor,
        "first_median_s": statistics.median(r["s"] for r in rows if r["phase"] == "first"),
        "second_median_s": statistics.median(r["s"] for r in rows if r["phase"] == "second"),
        "second_run_changes": second_changes,
        "runs": rows,
    }
    print(json.dumps(summary, indent=2))
    return 0 if all(n == 0 for n in second_changes) else 1


if __name__ == "__main__":
    sys.exit(main())
