"""Gateway readiness probe, run as its own short-lived process:

    python -m experiments.testbeds.probe --timeout 30 127.0.0.1:50051 10.231.0.13:50051

exits 0 once every endpoint answers grpc.health.v1 Check("") with SERVING, 1 on timeout.

Why a process: an experiment's orchestrator forks many children, and a process that has loaded
gRPC can hang in gRPC's fork handler when it forks while gRPC is shutting its threads down (seen
here: `Popen` blocked for minutes in the prefork handler after a health-check channel was closed).
So the orchestrator never imports gRPC itself: experiments.testbeds.readiness runs this probe for it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(channel: grpc.Channel, timeout_s: float = 0.5) -> bool:
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                          timeout=timeout_s)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_serving(endpoints: Sequence[str], timeout_s: float) -> list[str]:
    """Endpoints still not SERVING when the timeout ran out (empty = all ready)."""
    channels = {e: grpc.insecure_channel(e) for e in endpoints}
    pending = list(endpoints)
    deadline = time.monotonic() + timeout_s
    try:
        while pending and time.monotonic() < deadline:
            pending = [e for e in pending if not serving(channels[e])]
            if pending:
                time.sleep(0.05)
    finally:
        for channel in channels.values():
            channel.close()
    return pending


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.testbeds.probe", description=__doc__)
    parser.add_argument("endpoints", nargs="+", help="HOST:PORT of each gateway")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for all of them")
    args = parser.parse_args(argv)
    pending = wait_serving(args.endpoints, args.timeout)
    if pending:
        print(f"not SERVING after {args.timeout:.0f} s: {', '.join(pending)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
