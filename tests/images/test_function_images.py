"""A function image answers the python3-http contract from inside a container."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request

import pytest
from images_support import Built
from podman_cli import Podman
from testkit import free_port, wait_until

# timeout: the session build runs in the first test's setup (~5 min on a machine with no cache)
pytestmark = [pytest.mark.images, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1500)]


def _get(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _serve(podman: Podman, built: Built, image: str, name: str) -> str:
    image_id = podman.load(built.archive(image), built.record.images[image].tag)
    cmd = json.loads(podman("image", "inspect", image_id).stdout)[0]["Config"]["Cmd"]
    port = free_port()
    # the image's own command, on a free loopback port instead of 8080 (host networking)
    podman.start(name, image_id, [*cmd, "--listen", f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    def healthy() -> bool:
        try:
            return _get(f"{base}/_/health", timeout=2)[0] == 200
        except OSError:
            return False

    try:
        wait_until(healthy, 60, f"{image}'s health endpoint", interval_s=0.2)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; log:\n{podman.logs(name)}") from None
    return base


def test_shasum_image_answers_the_http_contract(built: Built, podman: Podman) -> None:
    try:
        base = _serve(podman, built, "fn-shasum", "fn-shasum-test")
        body = os.urandom(1024 * 1024)
        status, reply = _get(base + "/", data=body)
        assert status == 200
        assert json.loads(reply) == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
        assert podman("exec", "fn-shasum-test", "python", "-c",
                      "import os; print(os.path.exists('/tmp/.lock'))").stdout.strip() == "True"
    finally:
        podman.remove("fn-shasum-test")


def test_dd_image_runs_dd_as_the_function_user(built: Built, podman: Podman) -> None:
    try:
        base = _serve(podman, built, "fn-dd", "fn-dd-test")
        status, reply = _get(base + "/")
        assert status == 200, reply
        assert json.loads(reply)["bytes_written"] == 128 * 10
    finally:
        podman.remove("fn-dd-test")
