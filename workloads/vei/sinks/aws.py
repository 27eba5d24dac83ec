"""AWS IoT Core sink: boto3 `iot-data` publish, run in a small thread pool.

Credentials come only from the standard boto3 chain (environment, profile, instance role),
never from the sink spec or the repository. `endpoint` points it at an emulator or at the
account's ATS data endpoint.
"""

from __future__ import annotations

import asyncio
import functools
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from workloads.vei.proto import vei_pb2
from workloads.vei.sinks.base import CloudSink, SinkError, result_record


class AwsIotSink(CloudSink):
    kind = "aws"

    def __init__(self, name: str, region: str, topic: str, endpoint: str | None, qos: int,
                 timeout_s: float, threads: int) -> None:
        super().__init__(name)
        self.region, self.topic, self.endpoint, self.qos = region, topic, endpoint, qos
        self._timeout = timeout_s
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._client: Any = None
        self._has_credentials = False

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"vei-sink-{self.name}")
        config = Config(connect_timeout=self._timeout, read_timeout=self._timeout,
                        retries={"max_attempts": 2, "mode": "standard"},
                        max_pool_connections=self._threads)
        self._client = boto3.session.Session().client(
            "iot-data", region_name=self.region, endpoint_url=self.endpoint, config=config)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def accepting(self) -> bool:
        # Without credentials every publish fails; found once at start-up (the chain may do network
        # look-ups, e.g. the instance metadata service), refreshed if they appear later.
        if not self._has_credentials and self._pool is not None:
            self._has_credentials = await asyncio.get_running_loop().run_in_executor(
                self._pool, lambda: boto3.session.Session().get_credentials() is not None)
        return self._has_credentials

    async def deliver(self, result: vei_pb2.PubCloudParams) -> None:
        if self._pool is None:
            raise SinkError("AWS sink is not started")
        payload = json.dumps(result_record(result), separators=(",", ":")).encode()
        call = functools.partial(self._client.publish, topic=self.topic, qos=self.qos, payload=payload)
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except NoCredentialsError as exc:
            raise SinkError("no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(or AWS_PROFILE) in the gateway's environment") from exc
        except ClientError as exc:
            raise SinkError(f"AWS IoT publish to {self.topic!r} was refused: {exc}") from exc
        except BotoCoreError as exc:
            raise SinkError(f"AWS IoT publish to {self.topic!r} failed: {exc}") from exc

    def describe(self) -> str:
        where = self.endpoint or f"AWS IoT in {self.region}"
        return f"aws iot-data {where} topic {self.topic!r}"
