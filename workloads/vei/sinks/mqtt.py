"""MQTT sink (paho-mqtt 2.x): QoS 1 publish, accepted once the broker's PUBACK arrives.

paho runs its network loop in its own thread; PUBACKs are handed to the event loop with
call_soon_threadsafe, so waiting for them never blocks the gateway. Broker credentials, if any,
come from VEI_MQTT_USERNAME / VEI_MQTT_PASSWORD, never from the sink spec.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from workloads.vei.proto import vei_pb2
from workloads.vei.sinks.base import CloudSink, SinkError, result_record


class MqttSink(CloudSink):
    kind = "mqtt"

    def __init__(self, name: str, host: str, port: int, topic: str, qos: int, timeout_s: float,
                 max_inflight: int) -> None:
        super().__init__(name)
        self.host, self.port, self.topic, self.qos = host, port, topic, qos
        self._timeout = timeout_s
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"vei-gateway-{uuid.uuid4().hex[:12]}",
                                   protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(max_inflight * 4)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_publish = self._on_publish
        user = os.environ.get("VEI_MQTT_USERNAME")
        if user:
            self._client.username_pw_set(user, os.environ.get("VEI_MQTT_PASSWORD"))
        self._lock = threading.Lock()
        self._waiting: dict[int, asyncio.Future[None]] = {}
        # PUBACKs that arrived before deliver() registered its future (the paho thread is fast).
        self._early: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # connect_async + loop_start: the paho thread connects and reconnects on its own, so a
        # broker that is down at start-up only fails deliveries until it is back.
        self._client.connect_async(self.host, self.port, keepalive=10)
        self._client.loop_start()

    async def close(self) -> None:
        await asyncio.to_thread(self._shutdown)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(SinkError("MQTT sink closed before the broker acknowledged"))
        self._waiting.clear()

    def _shutdown(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._lock:
            fut = self._waiting.pop(mid, None)
            if fut is None:
                self._early.add(mid)
                return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, fut)

    async def deliver(self, result: vei_pb2.PubCloudParams) -> None:
        payload = json.dumps(result_record(result), separators=(",", ":"))
        info = self._client.publish(self.topic, payload, qos=self.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise SinkError(f"MQTT publish to {self.host}:{self.port} failed: {mqtt.error_string(info.rc)}")
        if self.qos == 0:
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                raise SinkError(f"MQTT broker {self.host}:{self.port} is not connected")
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                return
            self._waiting[info.mid] = fut
        try:
            await asyncio.wait_for(fut, self._timeout)
        except TimeoutError as exc:
            with self._lock:
                self._waiting.pop(info.mid, None)
            raise SinkError(f"MQTT broker {self.host}:{self.port} did not acknowledge (PUBACK) within "
                            f"{self._timeout} s; is it running and reachable?") from exc

    def describe(self) -> str:
        return f"mqtt://{self.host}:{self.port}/{self.topic} (QoS {self.qos})"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
