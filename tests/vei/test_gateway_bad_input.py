"""Bad input fails only its own call, with a status or errorMsg naming the problem and the fix;
the gateway keeps serving everyone else (issue 2, "Bad input")."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from vei_support import frame, frames, metric, stubs, subscribed, take

from workloads.vei.proto import vei_pb2

GARBAGE = b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"  # field 1 with an impossible length


async def still_serving(address: str) -> None:
    """Another camera and subscriber still work after a bad call."""
    async with grpc.aio.insecure_channel(address) as ch:
        vei, _ = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="healthy"))
        await subscribed(sub)
        assert (await vei.PublishImage(frames([frame("healthy", 1, size=100)]))).errorMsg == ""
        assert [f.frameId for f in await take(sub, 1)] == ["healthy-1"]
        sub.cancel()


@pytest.mark.parametrize(("camera", "needle"), [
    ("", "cameraID is empty"),
    ("cam.1", "'cam.1' is invalid"),
    ("cam*", "'cam*' is invalid"),
    ("x" * 65, "is invalid"),
    ("has space", "'has space' is invalid"),
])
async def test_invalid_camera_id_rejected_on_every_rpc(gateway: Any, camera: str, needle: str) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, reliable = stubs(ch)
        with pytest.raises(grpc.aio.AioRpcError) as publish:
            await vei.PublishImage(frames([frame(camera, 0)]))
        with pytest.raises(grpc.aio.AioRpcError) as acked:
            async for _ in reliable.PublishImageAcked(frames([frame(camera, 0)])):
                pass
        with pytest.raises(grpc.aio.AioRpcError) as subscribe:
            async for _ in vei.SubscribeImage(vei_pb2.SubImageParams(cameraID=camera)):
                pass
        deleted = await vei.DeleteCamera(vei_pb2.CameraID(cameraID=camera))
    for err in (publish.value, acked.value, subscribe.value):
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in (err.details() or "")
        assert "A-Z a-z 0-9 _ -" in (err.details() or "")
    assert needle in deleted.errorMsg
    await still_serving(gateway.address)


async def test_invalid_queue_group(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="ok", queueGroup="a b")):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "queueGroup 'a b' is invalid" in (err.value.details() or "")
    assert metric(gateway, "vei_errors_total", {"kind": "invalid_queue_group"}) == 1


async def test_image_over_configured_maximum(gateway_factory: Any) -> None:
    gw = await gateway_factory(max_image_bytes=1000)
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, reliable = stubs(ch)
        assert (await vei.PublishImage(frames([frame("cam", 0, size=1000)]))).errorMsg == ""
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await vei.PublishImage(frames([frame("cam", 1, size=10), frame("cam", 2, size=1001)]))
        with pytest.raises(grpc.aio.AioRpcError) as acked:
            async for _ in reliable.PublishImageAcked(frames([frame("cam", 3, size=1001)])):
                pass
    for e in (err.value, acked.value):
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "1001 bytes; the limit is 1000 bytes (VEI_MAX_IMAGE_BYTES)" in (e.details() or "")
    assert metric(gw, "vei_errors_total", {"kind": "image_too_large"}) == 2
    await still_serving(gw.address)


async def test_default_limit_is_4_mib_when_nats_allows_it(nats_server_factory: Any,
                                                          gateway_factory: Any) -> None:
    url = nats_server_factory(config="max_payload: 8MB\n")
    gw = await gateway_factory(nats_urls=[url])
    limit = 4 * 1024 * 1024
    big = [("grpc.max_receive_message_length", 16 * 1024 * 1024),
           ("grpc.max_send_message_length", 16 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(gw.address, options=big) as ch:
        vei, _ = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="big"))
        await subscribed(sub)
        assert (await vei.PublishImage(frames([frame("big", 0, size=limit)]))).errorMsg == ""
        assert len((await take(sub, 1))[0].image) == limit
        sub.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await vei.PublishImage(frames([frame("big", 1, size=limit + 1)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{limit + 1} bytes; the limit is {limit} bytes" in (err.value.details() or "")


async def test_limit_follows_nats_max_payload_and_says_so(gateway: Any) -> None:
    """The default nats-server accepts 1 MB messages; a 2 MB frame must fail clearly, not in NATS."""
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await vei.PublishImage(frames([frame("cam", 0, size=2 * 1024 * 1024)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NATS max_payload is 1048576" in (err.value.details() or "")
    await still_serving(gateway.address)


async def test_camera_switch_inside_acked_stream_is_rejected(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        _, reliable = stubs(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in reliable.PublishImageAcked(frames([frame("a", 0), frame("b", 1)])):
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "started with 'a' and then sent 'b'" in (err.value.details() or "")


async def test_invalid_application_name(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in vei.SubscribeVisionOutput(vei_pb2.SubVisionParams(visionAppName="no.dots")):
                pass
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await vei.PublishVisionOutput(frames([vei_pb2.PubVisionParams(visionAppName="no.dots")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "visionAppName 'no.dots' is invalid" in (err.value.details() or "")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "visionAppName 'no.dots' is invalid" in (bad.value.details() or "")
    await still_serving(gateway.address)


async def test_unknown_cloud_provider(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        reply = await vei.PublishToCloud(frames([
            vei_pb2.PubCloudParams(analyticsName="a", cloudProvider="azure", frameId="1", cameraID="c")]))
        assert reply.errorMsg == ("unknown cloud provider 'azure'; configured providers: local "
                                  "(gateway --cloud)")
        # `local` is configured but no sink process runs: nothing is listed that could not deliver.
        assert list((await vei.ListClouds(empty_pb2.Empty())).availClouds) == []
    await still_serving(gateway.address)


async def test_local_sink_not_running_is_reported(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        reply = await vei.PublishToCloud(frames([
            vei_pb2.PubCloudParams(analyticsName="a", cloudProvider="local", frameId="9", cameraID="c")]))
    assert "1 of 1 results were not accepted" in reply.errorMsg
    assert "no local sink is listening on vei.v1.sink.local" in reply.errorMsg


@pytest.mark.parametrize("method", [
    "/VEIv1_0.VEIv1_0/PublishImage", "/VEIv1_0.VEIv1_0/PublishVisionOutput",
    "/VEIv1_0.VEIv1_0/PublishToCloud"])
async def test_malformed_bytes_on_client_streams(gateway: Any, method: str) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        raw = ch.stream_unary(method)  # no serializers: the bytes go on the wire unchanged

        async def garbage() -> Any:
            yield GARBAGE

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await raw(garbage())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed VEIv1_0." in (err.value.details() or "")
    await still_serving(gateway.address)


async def test_malformed_bytes_on_unary_server_stream_and_bidi(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await ch.unary_unary("/VEIv1_0.VEIv1_0/DeleteCamera")(GARBAGE)
        with pytest.raises(grpc.aio.AioRpcError) as stream:
            async for _ in ch.unary_stream("/VEIv1_0.VEIv1_0/SubscribeImage")(GARBAGE):
                pass

        async def garbage() -> Any:
            yield GARBAGE

        with pytest.raises(grpc.aio.AioRpcError) as bidi:
            async for _ in ch.stream_stream("/VEIv1_0.VEIReliable/PublishImageAcked")(garbage()):
                pass
    for e in (unary.value, stream.value, bidi.value):
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed VEIv1_0." in (e.details() or "")
    await still_serving(gateway.address)


async def test_slow_subscriber_is_dropped_not_buffered_forever(gateway_factory: Any) -> None:
    gw = await gateway_factory(subscriber_queue=4)
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        slow = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="fast"))
        await subscribed(slow)
        # ~40 MB unread: more than gRPC's flow-control windows, so the gateway's queue must overflow.
        await vei.PublishImage(frames([frame("fast", i, size=512 * 1024) for i in range(80)]))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in slow:
                await asyncio.sleep(0)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "fell 4 messages behind" in (err.value.details() or "")
    assert metric(gw, "vei_errors_total", {"kind": "slow_subscriber"}) == 1
    await still_serving(gw.address)


async def test_frames_nats_cannot_take_are_acked_with_an_error(nats_server: str, nats_server_factory: Any,
                                                               gateway_factory: Any) -> None:
    """NATS is down longer than the reconnect buffer covers: each frame that cannot be published
    gets an immediate FrameAck with the reason, so the camera keeps it for a resend."""
    gw = await gateway_factory(nats_pending_bytes=60_000, ack_linger_s=0.5)
    nats_server_factory.stop(nats_server)
    async with grpc.aio.insecure_channel(gw.address) as ch:
        _, reliable = stubs(ch)
        sent = [frame("down", i) for i in range(10)]
        acks = [a async for a in reliable.PublishImageAcked(frames(sent))]
    failed = [a for a in acks if a.error]
    assert len(failed) >= 7  # at most two 24 KB frames fit into the 60 KB buffer
    assert all("could not publish the frame to NATS" in a.error and a.cameraID == "down" for a in failed)
    assert {a.frameId for a in failed} <= {f.frameId for f in sent}
    assert metric(gw, "vei_errors_total", {"kind": "nats_publish"}) == len(failed)
