"""How VEI processes get their environment: the gRPC settings in every process and container, and a
caller's own GRPC_EXPERIMENTS kept for processes on this machine only."""

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
