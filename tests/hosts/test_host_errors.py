"""Failures name the host, the step and the tool's message; nothing is left half-installed."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts_support import Mirror, fleet_testbed, needs_root

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api, pyinfra_runner, run_dir
from infra.hosts.artefacts import VerifiedFile, fetch, k3s_binary
from infra.hosts.errors import HostStepError
from infra.hosts.inventory import targets_from_nodes
from infra.hosts.plan import HostPlan

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
ROLES = {"vm0": ("cloud", "server"), "pi0": ("edge", "agent")}


@pytest.fixture(scope="module")
def small(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("errfleet") / "state"
    fleet = fleet_mod.up(list(ROLES), {"pi0"}, state_dir=state)
    try:
        yield {
            "fleet": fleet,
            "testbed": fleet_testbed(fleet, mirror, ROLES),
            "root": lambda n: state / "hosts" / n / "root",
        }
    finally:
        fleet_mod.down(state)


def _install(
    small: dict[str, Any], mirror: Mirror, testbed: Any, victim: str, cache: Path,
    progress: Callable[[str, str], None] | None = None,
) -> api.InstallResult:
    return api.install(
        testbed, nodes=[victim], known_hosts=str(small["fleet"].known_hosts), artefact_pins=mirror.pins,
        artefact_cache=cache, progress=progress,
    )


@pytest.mark.parametrize("victim", ["vm0", "pi0"])  # ansible-runner and pyinfra
def test_unreachable_host_is_named(
    small: dict[str, Any], mirror: Mirror, tmp_path: Path, victim: str
) -> None:
    data = small["testbed"].model_dump()
    for node in data["nodes"]:
        if node["name"] == victim:
            node["address"] = "10.232.0.250"  # inside our own subnet, no host behind it
    testbed = type(small["testbed"]).model_validate(data)
    with pytest.raises(HostStepError) as err:
        _install(small, mirror, testbed, victim, tmp_path)
    assert err.value.host == victim and "connect" in err.value.step
    assert victim in str(err.value)


def test_corrupted_upload_is_rejected_on_the_host(
    small: dict[str, Any], mirror: Mirror, tmp_path: Path
) -> None:
    testbed = small["testbed"]
    good = fetch(testbed, k3s_binary(testbed.k3s.version, "amd64"), pins=mirror.pins, cache_dir=tmp_path)
    bad = VerifiedFile(good.artefact, good.path, "f" * 64)  # what the host expects differs from what arrives
    node = testbed.node("pi0")
    plan = HostPlan(node=node, tool="pyinfra")
    plan.concern("k3s").binaries.append((bad, "/usr/local/bin/k3s"))
    targets = targets_from_nodes(testbed, known_hosts=str(small["fleet"].known_hosts))
    written = run_dir.write(tmp_path / "run", testbed, [plan], targets)
    with pytest.raises(
        HostStepError, match=r"(?s)pi0.*Verify and install /usr/local/bin/k3s.*sha256 mismatch"
    ):
        pyinfra_runner.run(written, ["pi0"], targets, stage="install")
    bindir = small["root"]("pi0") / "usr/local/bin"
    assert not (bindir / "k3s").exists() and not list(bindir.glob("*.edgerig-new"))


@pytest.mark.parametrize("victim", ["vm0", "pi0"])  # ansible-runner and pyinfra
def test_arch_mismatch_is_caught_from_facts(
    small: dict[str, Any], mirror: Mirror, tmp_path: Path, victim: str
) -> None:
    data = small["testbed"].model_dump()
    for node in data["nodes"]:
        node["arch"] = "arm64" if node["name"] == victim else node["arch"]
    testbed = type(small["testbed"]).model_validate(data)
    with pytest.raises(HostStepError) as err:
        _install(small, mirror, testbed, victim, tmp_path)
    assert err.value.host == victim and "rchitecture" in err.value.step
    assert "the model says arch arm64 but the host reports x86_64" in str(err.value)
    assert not (small["root"](victim) / "usr/local/bin/k3s").exists()


def _files_containing(root: Path, needles: tuple[str, ...]) -> list[str]:
    found = []
    for path in root.rglob("*") if root.exists() else []:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n.encode() in data for n in needles):
                found.append(str(path))
    return found


@pytest.mark.parametrize("victim", ["vm0", "pi0"])  # ansible-runner and pyinfra
def test_a_failing_secret_step_logs_no_secret_anywhere(
    small: dict[str, Any],
    mirror: Mirror,
    tmp_path: Path,
    victim: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The token file's step fails on one host (its path is taken by a directory): the token appears in
    no output - progress, the error, ansible-runner's artifacts and events, pyinfra's log, stdout and
    stderr - and in no temporary file, here or on the host."""
    import logging
    import tempfile
    import types

    from infra.hosts import ansible, render

    base = small["testbed"]
    marker = "test-only-never-logged-7e3f9a"
    testbed = type(base).model_validate({**base.model_dump(), "k3s": {"token": marker}})
    secrets = (testbed.k3s.token.get_secret_value(), render.agent_secret(testbed))
    # Where the secret's source file lands when Ansible's copy meets a directory: its basename.
    plan = api.plans_for(testbed, [testbed.node(victim)], api.verified_files(testbed, [testbed.node(victim)],
                         mirror.pins, tmp_path / "cache"), addresses={}, extra_tls_san=None,
                         kubeedge_token=None, boot_delay=None, pins=mirror.pins)
    src = next(f for f in run_dir.plan_vars(plan[0], tmp_path / "probe")["k3s_files"] if f["secret"])["src"]
    blocker = small["root"](victim) / render.K3S_TOKEN_FILE.lstrip("/")
    (blocker / Path(src).name).mkdir(parents=True)
    (blocker / Path(src).name / "keep").write_text("not a secret\n")
    # Short: ansible's SSH control sockets live in it (a socket path has at most 107 bytes).
    kept = Path(tempfile.mkdtemp(prefix="erk-", dir="/tmp"))

    @contextlib.contextmanager
    def kept_dir(prefix: str = "") -> Iterator[str]:
        path = kept / prefix
        path.mkdir(parents=True)
        yield str(path)

    # ansible-runner's private data dir (artifacts, events) is kept for inspection; every other
    # temporary file of this process and its children goes to a directory of this test's own.
    monkeypatch.setattr(ansible, "tempfile", types.SimpleNamespace(TemporaryDirectory=kept_dir))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    caplog.set_level(logging.DEBUG)
    progress: list[str] = []
    try:
        with pytest.raises(HostStepError) as err:
            _install(small, mirror, testbed, victim, tmp_path / "cache", lambda *step: progress.extend(step))
        assert err.value.host == victim and ("token" in err.value.step or "Secret" in err.value.step)
        out = capfd.readouterr()
        texts = [str(err.value), *progress, out.out, out.err, caplog.text]
        assert not [t for t in texts if any(s in t for s in secrets)]
        if victim == "vm0":
            assert any((kept / "edgerig-ansible-").rglob("job_events/*.json"))  # the artifacts were kept
        assert _files_containing(kept, secrets) == []
        assert list(scratch.iterdir()) == []  # every temporary directory was removed
        host = small["root"](victim)
        assert _files_containing(host / "tmp", secrets) == []
        assert _files_containing(host / "home", secrets) == []
        assert _files_containing(host / "root", secrets) == []
        written = [p for p in _files_containing(host / "etc", secrets)]
        for path in written:  # only the secrets' own root-only files may hold them
            assert path.endswith(render.K3S_AGENT_TOKEN_FILE) and (Path(path).stat().st_mode & 0o077) == 0
    finally:
        subprocess.run(["rm", "-rf", str(kept), str(small["root"](victim) / "etc/rancher")], check=True)
