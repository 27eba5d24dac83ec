"""Client processes of bench_gateway.py (run by it; never collected by pytest).

    python tests/vei/bench_clients.py subscribe --gateway H:P --camera-id bench --frames N --out F
    python tests/vei/bench_clients.py publish   --gateway H:P --camera-id bench --frames N --fps F

Both speak only the original VEIv1_0 API with the original's fields: `PublishImage` with cameraID,
image and timestamp; one `SubscribeImage` with cameraID. The frame's sequence number and creation
time travel in the original `timestamp` string ("SEQ:UNIX_NS"), so latency is measured with no
edgerig field at all, identically against either gateway.

They are separate processes because the orchestrator must not load gRPC (it forks children), and
because a camera and a subscriber sharing one event loop would delay each other at 2000 fps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from workloads.vei.proto import vei_pb2, vei_pb2_grpc

OPTIONS = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]


async def subscribe(args: argparse.Namespace) -> None:
    """Receives until `frames` arrived or nothing came for `idle_s`; writes SEQ,CREATED,RECEIVED lines."""
    got: list[tuple[int, int, int]] = []
    async with grpc.aio.insecure_channel(args.gateway, options=OPTIONS) as channel:
        request = vei_pb2.SubImageParams(cameraID=args.camera_id)
        call = vei_pb2_grpc.VEIv1_0Stub(channel).SubscribeImage(request)
        print("subscribing", flush=True)
        stream = call.__aiter__()
        while len(got) < args.frames:
            try:
                image = await asyncio.wait_for(stream.__anext__(), args.idle_s if got else 600)
            except (TimeoutError, StopAsyncIteration):
                break
            now = time.time_ns()
            seq, _, created = image.timestamp.partition(":")
            if seq.isdigit():
                got.append((int(seq), int(created), now))
        call.cancel()
    text = "".join(f"{s},{c},{r}\n" for s, c, r in got)
    await asyncio.to_thread(Path(args.out).write_text, text)


async def publish(args: argparse.Namespace) -> None:
    """Connects, says `ready`, waits for `go` on stdin, then streams open-loop at `fps`."""
    image = os.urandom(args.frame_bytes)
    async with grpc.aio.insecure_channel(args.gateway, options=OPTIONS) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        loop = asyncio.get_running_loop()

        async def frames() -> object:
            t0 = loop.time()
            for seq in range(args.frames):
                delay = t0 + seq / args.fps - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield vei_pb2.PubImageParams(cameraID=args.camera_id, image=image,
                                             timestamp=f"{seq}:{time.time_ns()}")

        reply = await vei_pb2_grpc.VEIv1_0Stub(channel).PublishImage(frames())
    print(json.dumps({"errorMsg": reply.errorMsg}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=("subscribe", "publish"))
    p.add_argument("--gateway", required=True)
    p.add_argument("--camera-id", default="bench")
    p.add_argument("--frames", type=int, required=True)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--frame-bytes", type=int, default=24 * 1024)
    p.add_argument("--idle-s", type=float, default=3.0)
    p.add_argument("--out", default="")
    args = p.parse_args()
    asyncio.run(subscribe(args) if args.role == "subscribe" else publish(args))


if __name__ == "__main__":
    main()
