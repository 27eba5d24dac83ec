"""The committed gRPC stubs must match vei.proto: a stale stub silently breaks wire compatibility."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from testkit import ROOT

PROTO_DIR = ROOT / "workloads" / "vei" / "proto"
STUBS = ("vei_pb2.py", "vei_pb2.pyi", "vei_pb2_grpc.py", "vei_pb2_grpc.pyi")


def test_committed_stubs_match_proto(tmp_path: Path) -> None:
    out = tmp_path / "workloads" / "vei" / "proto"
    out.mkdir(parents=True)
    shutil.copy(PROTO_DIR / "vei.proto", out / "vei.proto")
    bindir = str(Path(sys.executable).parent)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--grpc_python_out=.",
         "--mypy_out=.", "--mypy_grpc_out=.", "workloads/vei/proto/vei.proto"],
        cwd=tmp_path, check=True, env={"PATH": f"{bindir}:/usr/bin:/bin"},
    )
    stale = [name for name in STUBS if not filecmp.cmp(out / name, PROTO_DIR / name, shallow=False)]
    assert not stale, f"stubs out of date: {stale}; run workloads/vei/proto/generate.sh and commit the result"


def test_original_field_numbers_are_unchanged() -> None:
    """Original VEI clients encode these numbers; renumbering any of them breaks them on the wire."""
    from workloads.vei.proto import vei_pb2

    expected = {
        "PubImageParams": {"cameraID": 1, "image": 2, "timestamp": 3},
        "SubImageParams": {"cameraID": 1},
        "ImageData": {"image": 1, "timestamp": 2, "error": 3},
        "CameraID": {"cameraID": 1},
        "PubVisionParams": {"visionAppName": 1, "visionOutput": 2, "timestamp": 3},
        "SubVisionParams": {"visionAppName": 1},
        "VisionOutput": {"visionOutput": 1, "timestamp": 2, "error": 3},
        "PubCloudParams": {"analyticsName": 1, "analyticalOutput": 2, "timestamp": 3, "cloudProvider": 4},
        "ErrorResponse": {"errorMsg": 1},
        "Cameras": {"availableCams": 1},
        "Applications": {"availApps": 1},
        "Clouds": {"availClouds": 1},
    }
    for message, fields in expected.items():
        descriptor = vei_pb2.DESCRIPTOR.message_types_by_name[message]
        for field, number in fields.items():
            assert descriptor.fields_by_name[field].number == number, f"{message}.{field}"
    service = vei_pb2.DESCRIPTOR.services_by_name["VEIv1_0"]
    assert vei_pb2.DESCRIPTOR.package == "VEIv1_0"
    assert {m.name for m in service.methods} == {
        "PublishImage", "SubscribeImage", "DeleteCamera", "PublishVisionOutput", "SubscribeVisionOutput",
        "PublishToCloud", "ListCameras", "ListApplications", "ListClouds",
    }
    streaming = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert streaming["PublishImage"] == (True, False)
    assert streaming["SubscribeImage"] == (False, True)
    assert streaming["PublishToCloud"] == (True, False)
    assert streaming["ListClouds"] == (False, False)
