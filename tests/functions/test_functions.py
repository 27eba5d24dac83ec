"""The thesis functions, called the way the python3-http template's index.py calls them."""

from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace
from typing import Any

import pytest

from workloads.functions.dd import handler as dd
from workloads.functions.gzip_compression import handler as gzip_compression
from workloads.functions.http_template import Context
from workloads.functions.nodeinfo import handler as nodeinfo
from workloads.functions.shasum import handler as shasum


def event(body: bytes = b"", query: dict[str, str] | None = None) -> Any:
    return SimpleNamespace(body=body, headers={}, method="POST", query=query or {}, path="/")


def test_nodeinfo_reports_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTNAME", raising=False)
    out = nodeinfo.handle(event(), Context())
    assert out["statusCode"] == 200
    assert out["body"]["cpus"] == os.cpu_count()
    assert out["body"]["hostname"] == os.uname().nodename
    # in a pod (and for each local replica) HOSTNAME names the pod: that is the host it reports
    monkeypatch.setenv("HOSTNAME", "nodeinfo-7f9c-x2")
    assert nodeinfo.handle(event(), Context())["body"]["hostname"] == "nodeinfo-7f9c-x2"
    assert len(out["body"]["loadavg"]) == 3


def test_shasum_hashes_the_body() -> None:
    body = os.urandom(1024 * 1024)
    out = shasum.handle(event(body), None)
    assert out["statusCode"] == 200
    assert out["body"] == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}


def test_shasum_rejects_oversized_body() -> None:
    out = shasum.handle(event(b"x" * (shasum.MAX_BODY + 1)), None)
    assert out["statusCode"] == 413
    assert "limit" in out["body"]["error"]


def test_gzip_compresses_random_data() -> None:
    out = gzip_compression.handle(event(query={"bytes": "100000"}), None)
    assert out["statusCode"] == 200
    # random data does not compress; gzip adds a small header, so it can only grow slightly
    assert out["body"]["input_bytes"] == 100000
    assert 100000 <= out["body"]["compressed_bytes"] < 101000


def test_gzip_rejects_bad_sizes() -> None:
    assert gzip_compression.handle(event(query={"bytes": "ten"}), None)["statusCode"] == 400
    assert gzip_compression.handle(event(query={"bytes": "0"}), None)["statusCode"] == 400
    too_big = str(gzip_compression.MAX_BYTES + 1)
    bad = gzip_compression.handle(event(query={"bytes": too_big}), None)
    assert bad["statusCode"] == 400 and too_big in bad["body"]["error"]


def test_dd_writes_ten_blocks() -> None:
    out = dd.handle(event(), None)
    assert out["statusCode"] == 200, out
    assert out["body"]["bytes_written"] == dd.BLOCK_BYTES * dd.COUNT
