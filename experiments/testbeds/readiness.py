"""Readiness checks for experiment orchestrators, which must not load gRPC themselves (see
experiments/testbeds/probe.py for why): the gRPC health check runs in a probe process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from experiments.testbeds.processes import Child
from workloads.vei import subjects


def probe_serving(endpoints: Sequence[str], timeout_s: float) -> list[str]:
    """Endpoints still not SERVING after `timeout_s` (empty = all ready), checked from a probe process."""
    probe = subprocess.run([sys.executable, "-m", "experiments.testbeds.probe", "--timeout", str(timeout_s),
                            *endpoints], capture_output=True, text=True, timeout=timeout_s + 30, check=False)
    if probe.returncode == 0:
        return []
    return [e for e in endpoints if e in probe.stderr] or list(endpoints)


def sink_answers(nats_urls: Sequence[str], timeout_s: float = 1.0, nkeys_seed: str | None = None) -> bool:
    """True when a local sink answers the readiness request (an empty message) on its subject;
    `nkeys_seed`: the seed file to log in with, where NATS takes only its users."""
    import asyncio

    import nats
    from nats.errors import Error as NatsError

    async def ask() -> bool:
        try:
            nc = await nats.connect(list(nats_urls), connect_timeout=timeout_s, max_reconnect_attempts=0,
                                    allow_reconnect=False, nkeys_seed=nkeys_seed)
        except (TimeoutError, OSError, NatsError):
            return False
        try:
            reply = await nc.request(subjects.LOCAL_SINK, b"", timeout=timeout_s)
            return bool(reply.data)
        except (TimeoutError, NatsError):
            return False
        finally:
            await nc.close()

    return asyncio.run(ask())


def wait_gateways_serving(children: Sequence[Child], endpoints: Sequence[str],
                          timeout_s: float = 30.0) -> None:
    """Block until every gateway answers Check("") with SERVING (their readiness contract), checked
    from a probe process so the caller never loads gRPC. On timeout the error carries the children's
    log tails, which is where the reason is."""
    probe = subprocess.run([sys.executable, "-m", "experiments.testbeds.probe", "--timeout", str(timeout_s),
                            *endpoints],
                           capture_output=True, text=True, timeout=timeout_s + 30, check=False)
    if probe.returncode != 0:
        logs = "\n".join(f"{c.name} ({'running' if c.alive() else f'exited {c.popen.returncode}'}):\n"
                         f"{c.log_tail()}" for c in children)
        raise TimeoutError(f"gateways not ready: {probe.stderr.strip() or probe.stdout.strip()}\n{logs}")
