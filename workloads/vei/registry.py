"""Cameras and applications, kept in JetStream KV buckets shared by all gateway replicas.

Writes never block an RPC: `note()` queues the name and a background task writes it, retrying
while JetStream is unavailable (e.g. during a NATS node failover). Reads (List*, DeleteCamera)
do wait, bounded by a timeout, and raise `RegistryUnavailable` with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from enum import Enum

from nats.aio.client import Client
from nats.js import api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from workloads.vei import subjects

log = logging.getLogger(__name__)
_RETRY_S = 0.5


class Kind(Enum):
    CAMERA = subjects.CAMERAS_BUCKET
    APPLICATION = subjects.APPLICATIONS_BUCKET


class RegistryUnavailable(RuntimeError):
    pass


class Registry:
    def __init__(self, nc: Client, replicas: int, timeout_s: float) -> None:
        self._js = nc.jetstream(timeout=timeout_s)
        self._replicas = replicas
        self._timeout = timeout_s
        self._buckets: dict[Kind, KeyValue] = {}
        self._pending: dict[Kind, set[str]] = {kind: set() for kind in Kind}
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._failing = False
        self._closing = False
        self._owner = json.dumps({"gateway": f"{socket.gethostname()}:{os.getpid()}"})

    def start(self) -> None:
        # After opening the buckets the writer sleeps until a name is noted: an idle gateway has no
        # registry timer at all.
        self._writer = asyncio.create_task(self._write_loop(), name="vei-registry-writer")

    async def close(self) -> None:
        """Flush what is pending (briefly), then stop the writer."""
        if self._writer is None:
            return
        deadline = time.monotonic() + self._timeout
        while any(self._pending.values()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # short, bounded wait at shutdown only
        # The flag as well as the cancellation: Python 3.11's wait_for can swallow a cancellation that
        # arrives as the awaited request completes (a bucket opened just as the gateway stops), and
        # the writer must then end at its next check instead of waiting for a name forever.
        self._closing = True
        self._wake.set()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    def note(self, kind: Kind, name: str) -> None:
        """Register `name` soon, without waiting (safe to call from any RPC handler)."""
        self._pending[kind].add(name)
        self._wake.set()

    async def names(self, kind: Kind) -> list[str]:
        kv = await self._bucket(kind)
        try:
            keys = await asyncio.wait_for(kv.keys(), self._timeout * 3)
        except NoKeysError:
            return []
        except Exception as exc:
            raise self._unavailable(kind, exc) from exc
        return sorted(set(keys))

    async def contains(self, kind: Kind, name: str) -> bool:
        kv = await self._bucket(kind)
        try:
            await asyncio.wait_for(kv.get(name), self._timeout)
        except KeyNotFoundError:
            return False
        except Exception as exc:
            raise self._unavailable(kind, exc) from exc
        return True

    async def remove(self, kind: Kind, name: str) -> bool:
        """Deletes `name`; False when it was not registered."""
        if not await self.contains(kind, name):
            return False
        self._pending[kind].discard(name)
        kv = await self._bucket(kind)
        try:
            await asyncio.wait_for(kv.purge(name), self._timeout)
        except Exception as exc:
            raise self._unavailable(kind, exc) from exc
        return True

    async def _bucket(self, kind: Kind) -> KeyValue:
        kv = self._buckets.get(kind)
        if kv is not None:
            return kv
        try:
            kv = await asyncio.wait_for(self._open_or_create(kind), self._timeout * 3)
        except Exception as exc:
            raise self._unavailable(kind, exc) from exc
        self._buckets[kind] = kv
        return kv

    async def _open_or_create(self, kind: Kind) -> KeyValue:
        bucket = kind.value
        try:
            return await self._js.key_value(bucket)
        except BucketNotFoundError:
            pass
        try:
            return await self._js.create_key_value(
                api.KeyValueConfig(bucket=bucket, history=1, replicas=self._replicas,
                                   storage=api.StorageType.FILE))
        except Exception:
            # Another replica may have created it a moment ago (possibly with other settings).
            return await self._js.key_value(bucket)

    def _unavailable(self, kind: Kind, exc: BaseException) -> RegistryUnavailable:
        reason = str(exc) or type(exc).__name__
        return RegistryUnavailable(
            f"the {kind.name.lower()} registry (JetStream KV bucket {kind.value!r}) is unavailable: "
            f"{reason}; NATS must run with JetStream (-js) and be reachable")

    async def _write_loop(self) -> None:
        # The buckets are opened (or created) at start-up, not on the first frame: the first JetStream
        # stream starts nats-server's 100 ms access-time ticker, a fixed cost of the idle system that
        # would otherwise begin with the first camera stream, and the first frame would wait for it.
        for kind in Kind:
            if self._closing:
                return
            with contextlib.suppress(RegistryUnavailable):  # retried by the first write
                await self._bucket(kind)
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            failed = False
            for kind, names in self._pending.items():
                for name in list(names):
                    try:
                        kv = await self._bucket(kind)
                        await asyncio.wait_for(kv.put(name, self._owner.encode()), self._timeout)
                    except Exception as exc:
                        # Once per outage, not every retry: JetStream may be electing a leader.
                        level = logging.DEBUG if self._failing else logging.WARNING
                        log.log(level, "registry write of %s %r failed, retrying every %.1f s: %s",
                                kind.name.lower(), name, _RETRY_S, exc)
                        self._failing = failed = True
                        break
                    names.discard(name)
                    if self._failing:
                        log.info("registry writes work again")
                        self._failing = False
            if failed:
                await asyncio.sleep(_RETRY_S)
                self._wake.set()
