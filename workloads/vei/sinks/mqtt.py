"""MQTT sink (paho-mqtt 2.x): QoS 1 publish, accepted once the broker's PUBACK arrives.

paho runs its network loop in its own thread; PUBACKs are handed to the event loop with
call_soon_threadsafe, so waiting for them never blocks the gateway. Broker credentials, if any,
come from the gateway settings (VEI_MQTT_USERNAME / VEI_MQTT_PASSWORD or VEI_MQTT_PASSWORD_FILE),
never from the sink spec. `mqtts://` connects with TLS, verifying the broker against the spec's
`ca=` file or the system's CAs.

A broker that refuses the connection (bad credentials, not authorised) or a TLS handshake that fails
is remembered, so a result that cannot be delivered says why instead of only "no PUBACK".
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from workloads.vei.proto import vei_pb2
from workloads.vei.sinks.base import CloudSink, SinkError, result_record
from workloads.vei.sinks.spec import MqttTarget

_AUTH_REASONS = ("Bad user name or password", "Not authorized")


class MqttSink(CloudSink):
    kind = "mqtt"

    def __init__(self, name: str, target: MqttTarget, qos: int, timeout_s: float, max_inflight: int,
                 username: str = "", password: str | None = None) -> None:
        super().__init__(name)
        self.host, self.port, self.topic, self.qos = target.host, target.port, target.topic, qos
        self.tls = target.tls
        self._timeout = timeout_s
        self._problem = ""  # why the broker is not connected, once a connection attempt failed
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"vei-gateway-{uuid.uuid4().hex[:12]}",
                                   protocol=mqtt.MQTTv311)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(max_inflight * 4)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        if target.tls:
            # Verifies the broker's certificate and host name; ca_certs=None means the system's CAs.
            self._client.tls_set(ca_certs=target.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if username:
            self._client.username_pw_set(username, password)
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

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if not reason.is_failure:
            self._problem = ""
            return
        text = str(reason)
        if text in _AUTH_REASONS:
            text += ": authentication failed; check VEI_MQTT_USERNAME and VEI_MQTT_PASSWORD(_FILE)"
        self._problem = f"the broker refused the connection ({text})"

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._problem = ("cannot connect" + (" (TLS handshake or certificate verification failed?)"
                                             if self.tls else ""))

    def is_connected(self) -> bool:
        return bool(self._client.is_connected())

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._lock:
            fut = self._waiting.pop(mid, None)
            if fut is None:
                self._early.add(mid)
                return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, fut)

    async def accepting(self) -> bool:
        return self.is_connected()

    async def deliver(self, result: vei_pb2.PubCloudParams) -> None:
        payload = json.dumps(result_record(result), separators=(",", ":"))
        info = self._client.publish(self.topic, payload, qos=self.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise SinkError(f"MQTT publish to {self.host}:{self.port} failed: {mqtt.error_string(info.rc)}")
        if self.qos == 0:
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                raise SinkError(f"MQTT broker {self.host}:{self.port} is not connected"
                                + (f": {self._problem}" if self._problem else ""))
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
            why = f"; {self._problem}" if self._problem else "; is it running and reachable?"
            raise SinkError(f"MQTT broker {self.host}:{self.port} did not acknowledge (PUBACK) within "
                            f"{self._timeout} s{why}") from exc

    def describe(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}/{self.topic} (QoS {self.qos})"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
