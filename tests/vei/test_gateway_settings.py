"""Typed settings: environment (prefix VEI_), flags over environment, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError
from testkit import ROOT

from workloads.vei.gateway import build_parser, settings_from_args
from workloads.vei.settings import MIB, GatewaySettings, SinkSettings


def test_defaults() -> None:
    s = GatewaySettings()
    assert (s.listen, s.nats_urls, s.metrics_listen, s.clouds) == (
        "127.0.0.1:50051", ["nats://127.0.0.1:4222"], "", ["local"])
    assert s.max_image_bytes == 4 * MIB and s.grace_s == 5.0
    assert (s.nats_ping_interval_s, s.nats_max_outstanding_pings) == (1.0, 2)
    assert s.registry == "memory"  # a standalone gateway, like the original: no JetStream


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEI_LISTEN", "0.0.0.0:6000")
    monkeypatch.setenv("VEI_NATS_URLS", "nats://a:4222, nats://b:4222")
    monkeypatch.setenv("VEI_CLOUDS", "local,m=mqtt://h:1883/t")
    monkeypatch.setenv("VEI_METRICS_LISTEN", "0.0.0.0:9100")
    monkeypatch.setenv("VEI_MAX_IMAGE_BYTES", "1000")
    monkeypatch.setenv("VEI_REGISTRY", "kv")
    s = GatewaySettings()
    assert s.registry == "kv"
    assert s.listen == "0.0.0.0:6000" and s.nats_urls == ["nats://a:4222", "nats://b:4222"]
    assert s.clouds == ["local", "m=mqtt://h:1883/t"] and s.metrics_listen == "0.0.0.0:9100"
    assert s.max_image_bytes == 1000
    monkeypatch.setenv("VEI_NATS_URLS", '["nats://c:4222"]')  # a JSON list works too
    assert SinkSettings().nats_urls == ["nats://c:4222"]


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEI_LISTEN", "0.0.0.0:6000")
    monkeypatch.setenv("VEI_CLOUDS", "local")
    monkeypatch.setenv("VEI_REGISTRY", "kv")
    args = build_parser().parse_args(["--listen", "127.0.0.1:7000", "--nats-url", "nats://x:1,nats://y:2",
                                      "--nats-url", "nats://z:3", "--cloud", "a=local", "--cloud", "local",
                                      "--registry", "memory"])
    s = settings_from_args(args)
    assert s.listen == "127.0.0.1:7000" and s.registry == "memory"
    assert s.nats_urls == ["nats://x:1", "nats://y:2", "nats://z:3"]
    assert s.clouds == ["a=local", "local"]


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("listen", "50051", "must be HOST:PORT"),
    ("metrics_listen", "localhost", "must be HOST:PORT"),
    ("nats_urls", "127.0.0.1:4222", "has no scheme; write nats://127.0.0.1:4222"),
    ("max_image_bytes", "0", "greater than 0"),
    ("registry", "bogus", "'memory' or 'kv'"),
    ("registry", "KV", "'memory' or 'kv'"),
])
def test_bad_settings_are_explained(field: str, value: str, needle: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"VEI_{field.upper()}", value)
    with pytest.raises(ValidationError, match=needle):
        GatewaySettings()


def test_cli_reports_bad_settings_with_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "workloads.vei.gateway", "--listen", "nowhere"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid settings" in proc.stderr and "must be HOST:PORT" in proc.stderr


@pytest.mark.parametrize(("argv", "env"), [(["--registry", "bogus"], {}), ([], {"VEI_REGISTRY": "bogus"})],
                         ids=["flag", "environment"])
def test_cli_names_the_registries_on_a_bad_one(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "workloads.vei.gateway", *argv], cwd=ROOT,
                          env={**os.environ, "VEI_REGISTRY": "memory", **env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "invalid settings: VEI_REGISTRY: Input should be 'memory' or 'kv'" in proc.stderr
