"""The local sink process: records every accepted cloud result as one JSON line.

    python -m workloads.vei.sink --nats-url nats://127.0.0.1:4222 --out results/sink.jsonl

Gateways configured with `--cloud local` send each result on `vei.v1.sink.local`. The sink writes
the line, flushes it, and only then answers, so an acknowledgement means "on disk":

- a result whose reply subject is a camera's ack subject (`vei.v1.ack.<camera>`) is answered with a
  serialized FrameAck there, which the gateway holding that camera's stream passes on as is;
- any other reply subject (a plain NATS request) gets b"ok", b"dup" or an error text.

Results are de-duplicated on (cameraID, frameId): a resent frame is acknowledged (so the camera stops
resending) but not written twice. An empty request is a readiness probe, answered with b"ready". On
SIGTERM/SIGINT it drains NATS and writes `<out>.stats.json` (accepted results, duplicates).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from pydantic import ValidationError

from workloads.vei import nats_conn, subjects
from workloads.vei.proto import vei_pb2
from workloads.vei.settings import SinkSettings, explain
from workloads.vei.sinks.local import ACCEPTED, DUPLICATE, READY
from workloads.vei.sinks.recorder import ResultRecorder, stats_path

__all__ = ["ResultRecorder", "main", "run_sink", "stats_path"]

log = logging.getLogger("vei.sink")


async def run_sink(settings: SinkSettings, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Serves until `stop` is set; usable in-process by tests and experiments."""
    recorder = ResultRecorder(Path(settings.out), settings.dedup_window)
    nc = await nats_conn.connect(settings, name="vei-sink")

    async def on_result(msg: Msg) -> None:
        arrived = time.time_ns()
        reply = msg.reply
        if not msg.data:
            if reply:
                await nc.publish(reply, READY)
            return
        try:
            result = vei_pb2.PubCloudParams.FromString(msg.data)
        except DecodeError as exc:
            log.warning("malformed PubCloudParams: %s", exc)
            if not reply.startswith(subjects.ACK_PREFIX):  # an ack subject only takes FrameAcks
                await nc.publish(reply, f"malformed PubCloudParams: {exc}".encode())
            return
        error, written = "", False
        try:
            written = recorder.record(result, arrived)
        except OSError as exc:
            error = f"sink cannot write {settings.out}: {exc}"
        if not reply:
            return
        if reply.startswith(subjects.ACK_PREFIX):
            ack = vei_pb2.FrameAck(frameId=result.frameId, cameraID=result.cameraID, error=error)
            await nc.publish(reply, ack.SerializeToString())
        else:
            await nc.publish(reply, error.encode() or (ACCEPTED if written else DUPLICATE))

    try:
        await nc.subscribe(subjects.LOCAL_SINK, queue=subjects.LOCAL_SINK_QUEUE, cb=on_result)
        await nc.flush()
        log.info("vei sink ready: %s -> %s", subjects.LOCAL_SINK, settings.out)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await nats_conn.close(nc)
        recorder.close()
        log.info("vei sink stopped: %d accepted, %d duplicates", recorder.accepted, recorder.duplicates)


async def _main(settings: SinkSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_sink(settings, stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workloads.vei.sink",
                                description="Local VEI cloud sink: one JSON line per accepted result. "
                                            "Settings also come from VEI_NATS_URLS / VEI_OUT.")
    p.add_argument("--nats-url", action="append", dest="nats_urls", metavar="URL[,URL...]",
                   help="NATS server URL(s); give every cluster node")
    p.add_argument("--out", help="JSONL file to append results to (default vei-sink.jsonl)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    overrides: dict[str, Any] = {}
    if args.nats_urls:
        overrides["nats_urls"] = [u.strip() for item in args.nats_urls for u in item.split(",") if u.strip()]
    if args.out:
        overrides["out"] = args.out
    try:
        settings = SinkSettings(**overrides)
    except ValidationError as exc:
        print(f"vei sink: invalid settings: {explain(exc)}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(settings))
    except (ConnectionError, OSError) as exc:
        print(f"vei sink: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
