"""Artefact pins: sha256 and sha512 as each upstream publishes them, refusal without a pin, and
`edgerig artefacts pin --from MIRROR` (no root, no fleet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hosts_support import KEADM_KEY, TOKEN, Mirror
from typer.testing import CliRunner

from infra import versions
from infra.hosts import artefacts, pinning
from infra.hosts.artefacts import ArtefactError, fetch, keadm
from infra.model import Testbed
from infra.versions import Pin

KEADM_AMD64 = keadm(versions.KUBEEDGE_VERSION, "amd64")


def _testbed(mirror_url: str, kubeedge: bool = True, **artefact_settings: Any) -> Testbed:
    nodes = [
        {"name": "m0", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.10"},
        {"name": "e0", "realm": "edge", "role": "edge", "provider": "static", "address": "192.0.2.20"},
    ]
    return Testbed.model_validate(
        {
            "name": "t",
            "nodes": nodes,
            "k3s": {"token": TOKEN},
            "kubeedge": {"enabled": kubeedge},
            "vei": {"enabled": False},
            "artefacts": {"base_url": mirror_url, **artefact_settings},
        }
    )


def test_keadm_is_pinned_by_the_sha512_kubeedge_publishes() -> None:
    assert KEADM_AMD64.algorithm == "sha512"
    assert KEADM_AMD64.checksum_file == f"checksum_keadm-{versions.KUBEEDGE_VERSION}-linux-amd64.tar.gz.txt"
    k3s = artefacts.k3s_binary(versions.K3S_VERSION, "arm64")
    assert (k3s.algorithm, k3s.checksum_file, k3s.filename) == ("sha256", "sha256sum-arm64.txt", "k3s-arm64")


def test_good_sha512_passes(mirror: Mirror, tmp_path: Path) -> None:
    pin = mirror.pins[KEADM_KEY]
    assert pin.algorithm == "sha512" and len(pin.digest) == 128
    got = fetch(_testbed(mirror.url), KEADM_AMD64, pins=mirror.pins, cache_dir=tmp_path)
    assert got.path.read_bytes().startswith(b"#!/bin/sh\necho 'fake keadm")
    assert got.sha256 == hashlib.sha256(got.path.read_bytes()).hexdigest()  # what the hosts check


def test_wrong_sha512_installs_nothing(mirror: Mirror, tmp_path: Path) -> None:
    wrong = {**mirror.pins, KEADM_KEY: Pin("sha512", "0" * 128, "test")}
    with pytest.raises(ArtefactError, match=r"sha512 mismatch .*keadm.*Nothing was installed"):
        fetch(_testbed(mirror.url), KEADM_AMD64, pins=wrong, cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_missing_sha512_names_the_value_and_where_it_is_published(mirror: Mirror, tmp_path: Path) -> None:
    without = {k: v for k, v in mirror.pins.items() if k != KEADM_KEY}
    with pytest.raises(ArtefactError) as err:
        fetch(_testbed(mirror.url), KEADM_AMD64, pins=without, cache_dir=tmp_path)
    message = str(err.value)
    assert f"{KEADM_KEY}: add its sha512 from {KEADM_AMD64.checksum_file}" in message
    assert "https://github.com/kubeedge/kubeedge/releases/tag/v1.20.0" in message
    assert "edgerig artefacts pin --from MIRROR" in message
    assert not list(tmp_path.rglob("*.tar.gz"))


def test_every_missing_pin_is_named_before_anything_is_fetched(mirror: Mirror) -> None:
    tb = _testbed(
        mirror.url,
        air_gapped=True,
        chart_repository="http://charts.lab",
        registry_mirrors={
            r: "http://registry.lab" for r in ("docker.io", "ghcr.io", "quay.io", "registry.k8s.io")
        },
    )
    with pytest.raises(ArtefactError) as err:
        artefacts.check_pins(tb, pins={})
    message = str(err.value)
    for needed in (
        "k3s-io/k3s/v1.30.6+k3s1/k3s:",
        "k3s-io/k3s/v1.30.6+k3s1/k3s-airgap-images-amd64.tar.zst: add its sha256 from sha256sum-amd64.txt",
        "keadm-v1.20.0-linux-amd64.tar.gz: add its sha512",
        "docker.io/kubeedge/cloudcore:v1.20.0: add its sha256 manifest digest, published by the registry "
        "docker.io",
        "docker.io/kubeedge/installation-package:v1.20.0",
        "docker.io/kubeedge/pause:3.6",
        "docker.io/kubeedge/edgemesh-agent:v1.17.0",
    ):
        assert needed in message, needed
    # A pin of the wrong algorithm is no pin: K3s publishes sha256, not sha512.
    k3s_key = f"k3s-io/k3s/{versions.K3S_VERSION}/k3s"
    wrong_kind = {**mirror.pins, k3s_key: Pin("sha512", "a" * 128, "test")}
    with pytest.raises(ArtefactError, match=r"k3s-io/k3s/v1\.30\.6\+k3s1/k3s: add its sha256"):
        artefacts.check_pins(_testbed(mirror.url, kubeedge=False), pins=wrong_kind)


def test_shipped_pins_match_the_catalogue() -> None:
    """The pins shipped with the repo load, use the algorithm each upstream publishes, and name a source."""
    by_key = {i.key: i for i in artefacts.catalogue()}
    assert versions.ARTEFACT_PINS, "infra/artefact_pins.yaml is empty"
    for key, pin in versions.ARTEFACT_PINS.items():
        assert key in by_key, f"{key} is pinned but nothing installs it"
        assert pin.algorithm == by_key[key].algorithm and len(pin.source) > 20
    with pytest.raises(ValueError, match="sha512 digest is 128 lower-case hex digits"):
        Pin("sha512", "ab" * 32, "x")


def test_published_digest_reads_both_checksum_formats() -> None:
    sha256 = "a" * 64
    assert pinning.published_digest(f"{'b' * 64}  k3s-arm64\n{sha256}  k3s\n", "k3s", "sha256") == sha256
    assert pinning.published_digest(f"{'c' * 128}\n", "keadm.tar.gz", "sha512") == "c" * 128
    assert pinning.published_digest(f"{sha256}  other\n", "k3s", "sha256") is None


@pytest.fixture()
def pins_file(tmp_path: Path) -> Path:
    path = tmp_path / "artefact_pins.yaml"
    shutil.copy(versions.ARTEFACT_PINS_FILE, path)
    return path


def test_pin_from_mirror_checks_each_file_against_its_checksum_file(mirror: Mirror, pins_file: Path) -> None:
    k3s_key = f"k3s-io/k3s/{versions.K3S_VERSION}/k3s"
    conflicting = {k3s_key: versions.ARTEFACT_PINS[k3s_key]}  # the real pin; the mirror's k3s is a fake
    report = pinning.pin_from_mirror(mirror.url, pins_file=pins_file)
    assert set(report.failed) == set(conflicting) | {f"{k3s_key}-arm64"}
    assert "the pin stays as it is" in report.failed[k3s_key]
    assert pins_file.read_text() == versions.ARTEFACT_PINS_FILE.read_text()  # nothing written on a conflict
    # Without the conflicting pins every release file of the pinned versions is pinned from the mirror.
    pins_file.write_text("# header kept\n")
    report = pinning.pin_from_mirror(mirror.url, pins_file=pins_file)
    assert not report.failed
    written = versions.load_pins(pins_file)
    for key, pin in written.items():
        assert (pin.algorithm, pin.digest) == (mirror.pins[key].algorithm, mirror.pins[key].digest), key
        assert pin.source.startswith(artefacts_checksum_file(key))
    assert KEADM_KEY in written and pins_file.read_text().startswith("# header kept\n")
    assert all("no registry given" in why for why in report.absent.values()) and len(report.absent) == 5
    again = pinning.pin_from_mirror(mirror.url, pins_file=pins_file)
    assert not again.pinned and set(again.kept) == set(written)


def artefacts_checksum_file(key: str) -> str:
    (item,) = [i for i in artefacts.catalogue() if i.key == key]
    assert isinstance(item, artefacts.ReleaseFile)
    return item.checksum_file


def test_pin_refuses_a_file_that_disagrees_with_its_checksum_file(mirror: Mirror, tmp_path: Path) -> None:
    copy = tmp_path / "mirror"
    shutil.copytree(mirror.root, copy)
    tarball = copy / "kubeedge/kubeedge/releases/download/v1.20.0/keadm-v1.20.0-linux-arm64.tar.gz"
    tarball.write_bytes(tarball.read_bytes() + b"tampered")
    pins_file = tmp_path / "pins.yaml"
    report = pinning.pin_from_mirror(str(copy), pins_file=pins_file)  # a directory works as a mirror too
    key = "kubeedge/kubeedge/v1.20.0/keadm-v1.20.0-linux-arm64.tar.gz"
    assert "the mirror serves a damaged or different file" in report.failed[key]
    assert not pins_file.exists()


class _Registry(http.server.BaseHTTPRequestHandler):
    """A registry's manifest endpoint (test fixture), publishing Docker-Content-Digest."""

    manifests: dict[str, bytes] = {}
    lie: bool = False

    def do_GET(self) -> None:
        body = self.manifests.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        digest = hashlib.sha256(b"other" if self.lie else body).hexdigest()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        self.send_header("Docker-Content-Digest", f"sha256:{digest}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def registry() -> Iterator[tuple[str, type[_Registry]]]:
    handler = type("Registry", (_Registry,), {"manifests": {}, "lie": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_image_digests_come_from_the_registry_manifest(
    registry: tuple[str, type[_Registry]], tmp_path: Path
) -> None:
    url, handler = registry
    image = artefacts.EDGEMESH_AGENT
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    handler.manifests[f"/v2/{image.repository}/manifests/{image.tag}"] = body
    pins_file = tmp_path / "pins.yaml"
    report = pinning.pin_from_mirror(
        "http://127.0.0.1:9", {"docker.io": url}, items=[image], pins_file=pins_file
    )
    assert report.pinned[image.key].digest == hashlib.sha256(body).hexdigest()
    assert versions.load_pins(pins_file)[image.key].source.startswith(
        f"manifest of {image.reference} on {url}"
    )
    handler.lie = True
    lied = pinning.pin_from_mirror(
        "http://127.0.0.1:9", {"docker.io": url}, items=[image], pins_file=tmp_path / "other.yaml"
    )
    assert "but its manifest hashes to" in lied.failed[image.key]


def test_pin_and_check_commands(mirror: Mirror, tmp_path: Path) -> None:
    from experiments.cli import app

    pins_file = tmp_path / "pins.yaml"
    pins_file.write_text("# pins\n")
    result = CliRunner().invoke(
        app, ["artefacts", "pin", "--from", mirror.url, "--pins-file", str(pins_file)]
    )
    assert result.exit_code == 0, result.output
    assert f"pinned  {KEADM_KEY}  sha512:{mirror.pins[KEADM_KEY].digest}" in result.output
    assert "missing docker.io/kubeedge/cloudcore:v1.20.0: no registry given" in result.output
    assert yaml.safe_load(pins_file.read_text())[KEADM_KEY]["algorithm"] == "sha512"
    bad = CliRunner().invoke(app, ["artefacts", "pin", "--from", mirror.url, "--registry", "docker.io"])
    assert bad.exit_code != 0 and "write REGISTRY=URL" in bad.output
    check = CliRunner().invoke(app, ["artefacts", "check"])
    assert check.exit_code == 1 and f"missing  {KEADM_KEY}" in check.output
