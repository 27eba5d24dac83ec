"""The floor: one bare NATS publish -> subscribe hop with the same payload, at the same rate.

nats-py on both ends (two connections, like the gateway and a subscriber), open-loop, against the run's
own nats-server. The pipeline's latency is reported as a ratio to this, which cancels out how busy or
fast the machine was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time

import nats
from nats.aio.msg import Msg

from infra.platform.nats_users import FLOOR_PREFIX

_HEADER = struct.Struct("!QQ")  # sequence number, send time (perf_counter_ns)


async def measure_floor(nats_url: str, samples: int, fps: float, payload_bytes: int,
                        timeout_s: float = 10.0, nkeys_seed: str | None = None) -> list[float]:
    """Latencies in ms of `samples` messages; messages that never arrive are simply missing.
    `nkeys_seed`: the seed file both ends log in with, where NATS takes only its users."""
    payload = bytearray(os.urandom(max(payload_bytes, _HEADER.size)))
    received: dict[int, float] = {}
    all_in = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        now = time.perf_counter_ns()
        seq, sent = _HEADER.unpack_from(msg.data)
        received[seq] = (now - sent) / 1e6
        if len(received) >= samples:
            all_in.set()

    sub_nc = await nats.connect(nats_url, name="floor-sub", nkeys_seed=nkeys_seed)
    pub_nc = await nats.connect(nats_url, name="floor-pub", nkeys_seed=nkeys_seed)
    subject = f"{FLOOR_PREFIX}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        await sub_nc.subscribe(subject, cb=on_msg)
        await sub_nc.flush()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for seq in range(samples):
            delay = t0 + seq / fps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            _HEADER.pack_into(payload, 0, seq, time.perf_counter_ns())
            await pub_nc.publish(subject, bytes(payload))
        await pub_nc.flush()
        with contextlib.suppress(TimeoutError):  # late or lost messages are reported, not fatal
            await asyncio.wait_for(all_in.wait(), timeout_s)
    finally:
        await pub_nc.close()
        await sub_nc.close()
    return [received[k] for k in sorted(received)]
