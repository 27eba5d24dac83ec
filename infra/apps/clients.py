"""The VEI clients on Kubernetes (pure dicts): one emulated vision app and one camera per camera
index, and the local sink that records every result for experiments."""

from __future__ import annotations

from typing import Any

from infra.apps.manifests import client_gateway_target, deployment
from infra.model import Testbed
from infra.platform.components import nats_urls
from workloads.vei import launch


def vision_deployments(testbed: Testbed) -> list[dict[str, Any]]:
    """One emulated vision app per camera, as in the thesis (one camera, one application)."""
    vei = testbed.vei
    cloud = vei.clouds[0].name if vei.clouds else "local"
    out = []
    for i in range(vei.cameras):
        spec = launch.vision(gateway=client_gateway_target(testbed), camera_id=f"cam-{i}",
                             app_name=f"vision-{i}",
                             processing_ms=vei.vision_processing_ms, cloud=cloud)
        container = {
            **spec.container("vision"),
            "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "1", "memory": "256Mi"},
            },
        }
        out.append(deployment(testbed, f"vei-vision-{i}", 1, container, spread=False, gateway_client=True))
    return out


def camera_deployments(testbed: Testbed) -> list[dict[str, Any]]:
    vei = testbed.vei
    if vei.clients == "operator":
        return []  # `edgerig run` streams from the operator's machine
    out = []
    for i in range(vei.cameras):
        spec = launch.camera(gateway=client_gateway_target(testbed), camera_id=f"cam-{i}", fps=vei.fps,
                             frame_bytes=vei.frame_bytes)
        container = {
            **spec.container("camera"),
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
        }
        out.append(deployment(testbed, f"vei-camera-{i}", 1, container, spread=False, gateway_client=True))
    return out


def sink_deployment(testbed: Testbed) -> dict[str, Any] | None:
    """The local sink records every result (experiments read it); only when a local sink is configured."""
    if testbed.vei.clients == "operator" or not any(c.kind == "local" for c in testbed.vei.clouds):
        return None
    spec = launch.sink(nats_urls=nats_urls(testbed), out="/data/vei-sink.jsonl")
    container = {
        **spec.container("sink"),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    dep = deployment(testbed, "vei-sink", 1, container, spread=False)
    dep["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    return dep
