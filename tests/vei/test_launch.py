"""How VEI processes get their environment: the gRPC settings in every process and container, and a
caller's own GRPC_EXPERIMENTS kept for processes on this machine only; the gateway's registry flag."""

from __future__ import annotations

import pytest

from workloads.vei import launch


def test_grpc_settings_reach_processes_and_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    spec = launch.gateway(listen="127.0.0.1:50051", nats_urls=["nats://127.0.0.1:4222"])
    assert spec.process_env()["GRPC_EXPERIMENTS"] == launch.GRPC_ENV["GRPC_EXPERIMENTS"]
    env = {e["name"]: e["value"] for e in spec.container()["env"]}
    assert env["GRPC_EXPERIMENTS"] == launch.GRPC_ENV["GRPC_EXPERIMENTS"] and env["PYTHONUNBUFFERED"] == "1"


def test_a_callers_grpc_experiments_wins_only_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_EXPERIMENTS", "")  # gRPC's own defaults, e.g. to measure them
    spec = launch.vision(gateway="127.0.0.1:50051", camera_id="cam")
    assert spec.process_env()["GRPC_EXPERIMENTS"] == ""
    env = {e["name"]: e["value"] for e in spec.container()["env"]}
    assert env["GRPC_EXPERIMENTS"] == launch.GRPC_ENV["GRPC_EXPERIMENTS"]


@pytest.mark.parametrize("registry", [None, "memory", "kv"])
def test_the_gateways_registry_reaches_its_flags(registry: str | None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads.vei.gateway import build_parser, settings_from_args

    monkeypatch.delenv("VEI_REGISTRY", raising=False)
    spec = launch.gateway(listen="127.0.0.1:50051", nats_urls=["nats://127.0.0.1:4222"], registry=registry)
    assert ("--registry" in spec.args) == (registry is not None)
    assert settings_from_args(build_parser().parse_args(spec.args)).registry == (registry or "memory")
