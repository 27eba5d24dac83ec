"""The cameras and applications a gateway knows, for ListCameras, ListApplications and DeleteCamera.

Two implementations behind one interface (`Registry`), chosen by VEI_REGISTRY through `open_registry`:

- `memory` (the default): the names live in this gateway process only, as the original Go VEI kept
  its camera list; a gateway lists what it has seen itself and forgets it when it restarts. No
  JetStream is used, so the gateway also runs against a nats-server without `-js`. This is the
  default because any JetStream stream starts nats-server's global 100 ms access-time ticker: an
  idle nats-server spent 0.001 cores with no stream and 0.004-0.0055 cores with the two registry
  buckets (file or memory storage alike, measured), a fixed cost the original VEI never had.
- `kv`: JetStream KV buckets shared by every replica, for more than one gateway (the Kubernetes
  manifests and the multi-gateway testbeds ask for it). Writes never block an RPC: `note()` queues
  the name and a background task writes it, retrying while JetStream is unavailable (e.g. during a
  NATS node failover). Reads (List*, DeleteCamera) do wait, bounded by a timeout, and raise
  `RegistryUnavailable` with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from enum import Enum
from typing import TYPE_CHECKING

from nats.aio.client import Client
from nats.js import api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from workloads.vei import subjects

if TYPE_CHECKING:
    from workloads.vei.settings import GatewaySettings

log = logging.getLogger(__name__)
_RETRY_S = 0.5


class Kind(Enum):
    CAMERA = subjects.CAMERAS_BUCKET
    APPLICATION = subjects.APPLICATIONS_BUCKET


class RegistryUnavailable(RuntimeError):
    """A `kv` registry cannot be read right now (a `memory` registry never raises it)."""


class Registry(ABC):
    """What the gateway service needs from a registry, whichever kind it is."""

    @abstractmethod
    def start(self) -> None:
        """Begin background work, if any; called once, inside the running event loop."""

    @abstractmethod
    async def close(self) -> None:
        """Finish what is pending (bounded) and stop."""

    @abstractmethod
    def note(self, kind: Kind, name: str) -> None:
        """Register `name` without waiting (safe to call from any RPC handler)."""

    @abstractmethod
    async def names(self, kind: Kind) -> list[str]:
        """Every registered name of `kind`, sorted."""

    @abstractmethod
    async def contains(self, kind: Kind, name: str) -> bool: ...

    @abstractmethod
    async def remove(self, kind: Kind, name: str) -> bool:
        """Deletes `name`; False when it was not registered."""


def open_registry(settings: GatewaySettings, nc: Client) -> Registry:
    """The registry `settings.registry` asks for, started."""
    registry: Registry
    if settings.registry == "kv":
        replicas = settings.kv_replicas or min(3, len(settings.nats_urls))
        registry = KvRegistry(nc, replicas=replicas, timeout_s=settings.kv_timeout_s)
    else:
        registry = MemoryRegistry()
    registry.start()
    return registry


class MemoryRegistry(Registry):
    """This gateway's own names. Everything runs on the event loop, so plain sets need no lock, and
    a name noted by an RPC is listed by the next one."""

    def __init__(self) -> None:
        self._names: dict[Kind, set[str]] = {kind: set() for kind in Kind}

    def start(self) -> None:
        pass  # no timer and no task: an idle gateway with this registry wakes for nothing

    async def close(self) -> None:
        pass

    def note(self, kind: Kind, name: str) -> None:
        self._names[kind].add(name)

    async def names(self, kind: Kind) -> list[str]:
        return sorted(self._names[kind])

    async def contains(self, kind: Kind, name: str) -> bool:
        return name in self._names[kind]

    async def remove(self, kind: Kind, name: str) -> bool:
        if name not in self._names[kind]:
            return False
        self._names[kind].discard(name)
        return True


class KvRegistry(Registry):
    """The names in JetStream KV buckets shared by every gateway replica on the same NATS."""

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
