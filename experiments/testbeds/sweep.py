"""Remove what crashed runs left behind, and check that nothing is left.

Journals (experiments/testbeds/journal.py) name what each testbed made; those whose owner died are
swept, each by its kind's sweeper. Emulated-network names (`erf-*`) belong to nothing else, so any
that no live testbed holds go too. A manually started test fleet (`edgerig fleet up`) has no journal
and is never touched: it is removed only by `edgerig fleet down`.
"""

from __future__ import annotations

import contextlib
import os

from experiments.testbeds import journal, netns
from experiments.testbeds import stack as _stack  # noqa: F401
from experiments.testbeds.emulated import CGROUP as EMULATED_CGROUP
from experiments.testbeds.emulated import NETWORK as EMULATED_NETWORK

# Importing the kinds registers their sweepers.
from experiments.testbeds.fleet import testbed as _fleet  # noqa: F401
from experiments.testbeds.functions import CpuCgroups, remove_cgroups


def sweep() -> list[str]:
    """Sweep every crashed testbed; returns what was removed."""
    removed = journal.sweep_stale()
    if os.geteuid() == 0 and not journal.live_journals("emulated"):
        with contextlib.suppress(journal.BusyError), journal.exclusive("emulated"):
            removed += netns.sweep(EMULATED_NETWORK)
            removed += remove_cgroups(CpuCgroups(EMULATED_CGROUP).path)
    return removed


def leftovers() -> list[str]:
    """What a crashed testbed could have left and is still there (empty = clean)."""
    found = [f"journal of a crashed {j.kind} testbed: {j.path}" for j in journal.stale_journals()]
    if os.geteuid() == 0 and not journal.live_journals("emulated"):
        found += netns.leftovers(EMULATED_NETWORK)
        if CpuCgroups(EMULATED_CGROUP).path.exists():
            found.append(f"cgroup {CpuCgroups(EMULATED_CGROUP).path}")
    for j in journal.stale_journals():
        found += [f"process {int(pid)}" for pid, started in j.processes
                  if journal.same_process(int(pid), started)]
    return found
